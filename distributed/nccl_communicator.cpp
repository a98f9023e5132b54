// The NCCL backend of Communicator. Uses the CUDA runtime API directly (streams, events, raw device pointers) so
// it compiles against the CPU-only Debian LibTorch as well as a CUDA LibTorch 2.x.
//
// Ordering: each collective waits (cudaStreamWaitEvent) for work already queued on the legacy default stream —
// the stream LibTorch computes on unless told otherwise — runs on the communicator's own stream, and records a
// completion event. Work::wait() makes the default stream wait on that event and, on the host, polls the event and
// ncclCommGetAsyncError until the deadline; on timeout or asynchronous error it aborts the NCCL communicator
// (ncclCommAbort) and then the job, naming collective, tag, rank and host.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

#include "common/error.h"
#include "distributed/checks.h"
#include "distributed/nccl_communicator.h"
#include "distributed/runtime.h"

namespace segkd::dist {

bool nccl_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kLong: return ncclInt64;
    case torch::kInt: return ncclInt32;
    case torch::kChar: return ncclInt8;
    case torch::kByte:
    case torch::kBool: return ncclUint8;
    default: break;
  }
  throw DistributedError(str_cat("NCCL communicator: unsupported dtype ", c10::toString(t)));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAverage: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator;

/// A collective queued on the communicator's stream.
class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator* comm, std::string what, torch::Tensor target, torch::Tensor buf);
  ~NcclWork() override {
    if (done_event_ != nullptr) cudaEventDestroy(done_event_);
  }
  bool test() override;
  void wait() override;
  cudaEvent_t event() const { return done_event_; }

 private:
  NcclCommunicator* comm_;
  std::string what_;
  torch::Tensor target_, buf_;  // keeps buffers alive until the collective finished
  Clock::time_point issued_;
  cudaEvent_t done_event_ = nullptr;
  bool finished_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(double timeout_s, torch::Device device) : Communicator(timeout_s), device_(device) {
    MPI_Comm world = world_comm();
    SEGKD_MPI_CHECK(MPI_Comm_rank(world, &rank_));
    SEGKD_MPI_CHECK(MPI_Comm_size(world, &size_));
    device_index_ = device.has_index() ? device.index() : topology().local_rank % std::max(1, cuda_device_count());
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_index_));
    SEGKD_CUDA_CHECK(cudaSetDevice(device_index_));
    ncclUniqueId id;
    if (rank_ == 0) SEGKD_NCCL_CHECK(ncclGetUniqueId(&id));
    SEGKD_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, world));
    SEGKD_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    SEGKD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SEGKD_CUDA_CHECK(cudaEventCreateWithFlags(&ready_event_, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (ready_event_ != nullptr) cudaEventDestroy(ready_event_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override { all_reduce_async(t, op, "")->wait(); }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op, const std::string& tag) override {
    if (op == ReduceOp::kAverage && !t.is_floating_point())
      throw DistributedError(str_cat("all_reduce average needs a floating-point tensor, got ",
                                     c10::toString(t.scalar_type())));
    auto buf = on_device(t);
    auto work = enqueue(str_cat("all_reduce", tag.empty() ? "" : " [" + tag + "]", " (", t.numel(), " x ",
                                c10::toString(t.scalar_type()), ", ", to_string(op), ")"),
                        t, buf, [&](cudaStream_t s) {
                          return ncclAllReduce(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()),
                                               nccl_type(buf.scalar_type()), nccl_op(op), comm_, s);
                        });
    return work;
  }

  void broadcast(torch::Tensor& t, int root) override {
    if (root < 0 || root >= size_)
      throw DistributedError(str_cat("broadcast root ", root, " is not a rank of a ", size_, "-rank communicator"));
    auto buf = on_device(t);
    enqueue(str_cat("broadcast (", t.numel(), " x ", c10::toString(t.scalar_type()), ")"), t, buf,
            [&](cudaStream_t s) {
              return ncclBroadcast(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()),
                                   nccl_type(buf.scalar_type()), root, comm_, s);
            })
        ->wait();
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    auto buf = t.to(device_).contiguous();
    auto out = torch::empty({size_, t.numel()}, buf.options());
    enqueue(str_cat("all_gather (", t.numel(), " x ", c10::toString(t.scalar_type()), ")"), torch::Tensor(), out,
            [&](cudaStream_t s) {
              return ncclAllGather(buf.data_ptr(), out.data_ptr(), static_cast<size_t>(buf.numel()),
                                   nccl_type(buf.scalar_type()), comm_, s);
            })
        ->wait();
    std::vector<torch::Tensor> result;
    for (int r = 0; r < size_; ++r) result.push_back(out[r].view(t.sizes()).to(t.device()));
    return result;
  }

  void barrier() override {
    auto one = torch::ones({1}, torch::TensorOptions().device(device_));
    all_reduce(one, ReduceOp::kSum);
  }

  std::shared_ptr<Communicator> duplicate() override {
    return std::make_shared<NcclCommunicator>(timeout_s(), device_);
  }

  cudaStream_t stream() const { return stream_; }

  /// Asynchronous NCCL error, or ncclSuccess.
  ncclResult_t async_error() {
    ncclResult_t err = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &err) != ncclSuccess) return ncclSystemError;
    return err;
  }

  [[noreturn]] void fail(const std::string& what, const std::string& reason) {
    ncclCommAbort(comm_);  // frees peers stuck in this communicator's kernels
    comm_ = nullptr;
    abort_job(3, str_cat("watchdog: collective ", what, " on rank ", rank_, " (", topology().host, "): ", reason));
  }

 private:
  /// The CUDA, contiguous tensor the collective runs on (staged when `t` is on the host or strided).
  torch::Tensor on_device(const torch::Tensor& t) {
    if (t.device() == device_ && t.is_contiguous()) return t;
    return t.to(device_).contiguous();
  }

  template <typename Launch>
  std::shared_ptr<NcclWork> enqueue(const std::string& what, const torch::Tensor& target, const torch::Tensor& buf,
                                    Launch launch) {
    SEGKD_CUDA_CHECK(cudaSetDevice(device_index_));
    // Order after the compute already queued on the default stream (which produced `buf`).
    SEGKD_CUDA_CHECK(cudaEventRecord(ready_event_, cudaStreamLegacy));
    SEGKD_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_event_, 0));
    SEGKD_NCCL_CHECK(launch(stream_));
    return std::make_shared<NcclWork>(this, what, target, buf);
  }

  torch::Device device_;
  int device_index_ = 0;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_event_ = nullptr;
};

NcclWork::NcclWork(NcclCommunicator* comm, std::string what, torch::Tensor target, torch::Tensor buf)
    : comm_(comm), what_(std::move(what)), target_(std::move(target)), buf_(std::move(buf)), issued_(Clock::now()) {
  SEGKD_CUDA_CHECK(cudaEventCreateWithFlags(&done_event_, cudaEventDisableTiming));
  SEGKD_CUDA_CHECK(cudaEventRecord(done_event_, comm_->stream()));
}

bool NcclWork::test() {
  if (finished_) return true;
  cudaError_t rc = cudaEventQuery(done_event_);
  if (rc == cudaErrorNotReady) return false;
  SEGKD_CUDA_CHECK(rc);
  return true;
}

void NcclWork::wait() {
  if (finished_) return;
  auto deadline = issued_ + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(comm_->timeout_s()));
  while (!test()) {
    ncclResult_t err = comm_->async_error();
    if (err != ncclSuccess && err != ncclInProgress)
      comm_->fail(what_, str_cat("asynchronous NCCL error: ", ncclGetErrorString(err)));
    if (Clock::now() > deadline)
      comm_->fail(what_, str_cat("did not finish within ", comm_->timeout_s(),
                                 " s (distributed.timeout_s); a peer skipped it, died or diverged"));
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  // Later compute on the default stream sees the result; staged tensors are copied back.
  SEGKD_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, done_event_, 0));
  if (target_.defined() && !target_.is_same(buf_)) {
    torch::NoGradGuard no_grad;
    target_.copy_(buf_);
  }
  finished_ = true;
}

}  // namespace

namespace detail {
std::shared_ptr<Communicator> make_nccl_communicator(double timeout_s, torch::Device device) {
  if (cuda_device_count() == 0)
    throw ConfigError("distributed.backend = \"nccl\": no CUDA device is usable on this rank");
  return std::make_shared<NcclCommunicator>(timeout_s, device);
}
}  // namespace detail

}  // namespace segkd::dist
