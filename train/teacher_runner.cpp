#include "train/teacher_runner.h"


namespace segkd::train {

TeacherRunner::TeacherRunner(models::Segmentor teacher, OutputRequest request, bool concurrent, int threads,
                             Precision precision, torch::Device device)
    : teacher_(std::move(teacher)),
      request_(std::move(request)),
      concurrent_(concurrent),
      threads_(threads),
      precision_(precision),
      device_(device) {
  if (concurrent_ && device_.is_cuda()) stream_ = std::make_unique<TeacherStream>(device_);
  if (concurrent_) worker_ = std::thread([this] { loop(); });
}

TeacherRunner::~TeacherRunner() {
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
}

ModelOutput TeacherRunner::run(const torch::Tensor& images) {
  ModelOutput out;
  {
    c10::InferenceMode inference;
    AutocastRegion autocast(precision_, device_);
    out = teacher_->forward(images, request_);
  }
  // Inference tensors cannot be saved for backward; KD terms need to, so hand out normal (full-precision) copies.
  widen_outputs(out, /*copy=*/true);
  return out;
}

void TeacherRunner::loop() {
  at::set_num_threads(threads_);
  while (true) {
    torch::Tensor job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || has_job_; });
      if (stop_) return;
      job = pending_;
      has_job_ = false;
    }
    ModelOutput out;
    std::exception_ptr error;
    try {
      out = stream_ ? stream_->run([&] { return run(job); }) : run(job);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      result_ = std::move(out);
      error_ = error;
      has_result_ = true;
    }
    cv_.notify_all();
  }
}

void TeacherRunner::start(const torch::Tensor& images) {
  if (!concurrent_) {
    pending_ = images;
    return;
  }
  if (stream_) stream_->fork();
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = images;
    has_job_ = true;
    has_result_ = false;
  }
  cv_.notify_all();
}

ModelOutput TeacherRunner::wait() {
  if (!concurrent_) {
    auto out = run(pending_);
    pending_ = torch::Tensor();
    return out;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return has_result_; });
  has_result_ = false;
  if (error_) std::rethrow_exception(error_);
  if (stream_) stream_->join(result_);
  return std::move(result_);
}

}  // namespace segkd::train
