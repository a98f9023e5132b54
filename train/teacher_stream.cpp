#include "train/teacher_stream.h"

#include <c10/core/StreamGuard.h>

namespace segkd::train {

TeacherStream::TeacherStream(const torch::Device& device)
    : impl_(device.type()),
      device_(device),
      side_(impl_.getStreamFromGlobalPool(device, /*isHighPriority=*/false)),
      trainer_(impl_.getStream(device)),
      ready_(device.type()),
      done_(device.type()) {}

void TeacherStream::fork() {
  trainer_ = impl_.getStream(device_);
  ready_.record(trainer_);
}

ModelOutput TeacherStream::run(const std::function<ModelOutput()>& forward) {
  c10::StreamGuard guard(side_);  // also makes the stream's device current on this thread
  ready_.block(side_);
  ModelOutput out = forward();
  done_.record(side_);
  return out;
}

void TeacherStream::join(const ModelOutput& out) {
  done_.block(trainer_);
  for_each_tensor(out, [&](const torch::Tensor& t) { impl_.recordDataPtrOnStream(t.storage().data_ptr(), trainer_); });
}

}  // namespace segkd::train
