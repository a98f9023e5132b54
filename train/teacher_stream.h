#pragma once
/// TeacherStream: the teacher's second stream on an accelerator (docs/design.md, step 2), so its kernels run while the
/// student's run on the trainer's current stream.
///
/// Written against c10's device-generic stream, event and guard interfaces, so the same code builds with the
/// CPU-only and the CUDA LibTorch and needs no CUDA headers: with a CUDA LibTorch the stream is one of the CUDA
/// stream pool's, the events are CUDA events and the allocator is CUDA's caching allocator.
///
/// Order of one step (trainer thread T, teacher worker W):
///   T: fork()  — the teacher's stream will wait for what T queued so far (the batch's host-to-device copy);
///   W: run(f)  — f runs with the side stream current on W, then its end is marked;
///   T: join(o) — T's stream waits for that mark, and o's memory is recorded as used on T's stream, so the caching
///                allocator does not give it back to the side stream while the student's loss still reads it.
#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/torch.h>

#include <functional>

#include "common/model_output.h"

namespace segkd::train {

class TeacherStream {
 public:
  /// A stream from `device`'s pool (its backend must support streams and events, as CUDA does).
  explicit TeacherStream(const torch::Device& device);

  /// Trainer thread: the next run() starts after the work queued so far on this thread's current stream.
  void fork();
  /// Teacher thread: runs `forward` on the side stream (current on this thread only for the call).
  ModelOutput run(const std::function<ModelOutput()>& forward);
  /// Trainer thread: its current stream waits for the last run(); `out`'s tensors are marked as used on it.
  void join(const ModelOutput& out);

  const c10::Stream& stream() const { return side_; }

 private:
  c10::impl::VirtualGuardImpl impl_;
  c10::Device device_;
  c10::Stream side_;
  c10::Stream trainer_;  ///< the trainer thread's current stream at the last fork()
  c10::Event ready_, done_;
};

}  // namespace segkd::train
