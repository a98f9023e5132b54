#pragma once
/// TeacherRunner: the frozen teacher's forward pass, optionally concurrent with the student's.
///
/// Concurrent mode runs the teacher on a persistent worker thread, in inference mode: on CPU with its own intra-op
/// thread count, on CUDA on a second stream (TeacherStream), so the two forwards overlap on the device. Its outputs
/// are cloned out of inference mode so KD terms can save them for backward. Only the outputs the KD
/// terms asked for are computed (e.g. no auxiliary head; no decode head when only backbone features are used).
/// Concurrency pays only where there are idle cores for it (see README "Teacher concurrency"); with one core per
/// rank it time-slices and gains nothing, so `teacher.concurrent = false` runs it inline.
#include <torch/torch.h>

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "common/model_output.h"
#include "models/segmentor.h"
#include "train/precision.h"
#include "train/teacher_stream.h"

namespace segkd::train {

class TeacherRunner {
 public:
  /// `threads`: intra-op threads of the worker (concurrent mode). `precision`: autocast of the teacher's forward on
  /// CUDA (its outputs are handed out in fp32 either way).
  TeacherRunner(models::Segmentor teacher, OutputRequest request, bool concurrent, int threads,
                Precision precision = Precision::kFp32, torch::Device device = torch::kCPU);
  ~TeacherRunner();
  TeacherRunner(const TeacherRunner&) = delete;
  TeacherRunner& operator=(const TeacherRunner&) = delete;

  /// Starts the teacher on `images` (returns at once in concurrent mode).
  void start(const torch::Tensor& images);
  /// The teacher's outputs for the last start(); rethrows a worker exception.
  ModelOutput wait();

 private:
  ModelOutput run(const torch::Tensor& images);
  void loop();

  models::Segmentor teacher_;
  OutputRequest request_;
  bool concurrent_;
  int threads_;
  Precision precision_;
  torch::Device device_;
  std::unique_ptr<TeacherStream> stream_;  ///< concurrent mode on CUDA
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  torch::Tensor pending_;
  bool has_job_ = false, has_result_ = false, stop_ = false;
  ModelOutput result_;
  std::exception_ptr error_;
};

}  // namespace segkd::train
