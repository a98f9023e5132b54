// The MPI backend of Communicator (backend selection and the backend-independent parts: communicator.cpp).
//
// Open MPI progresses non-blocking collectives only inside MPI calls, so each MpiCommunicator owns one progress
// thread that issues every MPI call on its communicator, in the order the collectives were requested. Callers only
// enqueue and wait on a condition variable with a deadline, which is what makes the watchdog possible for blocking
// collectives too. Asynchronous all-reduces (the gradient buckets started from backward hooks) are MPI_Iallreduce
// polled by that thread: slowly (a short condition-variable wait between MPI_Test calls) while nobody waits, so it
// leaves the CPU to backward, and back to back once a caller waits on one. Blocking collectives run as the
// blocking MPI call (Open MPI's tuned algorithm, raw MPI bandwidth): on the caller's thread when nothing else is
// queued — the progress thread then only watches the deadline, so no thread hand-off adds latency — otherwise
// queued behind the asynchronous ones on the progress thread.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "distributed/checks.h"
#include "distributed/communicator.h"
#include "distributed/runtime.h"

namespace segkd::dist {

namespace {

using Clock = std::chrono::steady_clock;
/// How often an idle progress thread checks the deadline of a blocking collective run by a caller.
constexpr std::chrono::milliseconds kWatchdogTick{100};

/// MPI datatype for a torch dtype; `for_reduce` false allows raw-bit types (half as 16-bit words).
MPI_Datatype mpi_type(torch::ScalarType t, bool for_reduce, bool* needs_float_staging) {
  *needs_float_staging = false;
  switch (t) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kShort: return MPI_INT16_T;
    case torch::kChar: return MPI_INT8_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kBool:
      if (for_reduce) break;
      return MPI_UINT8_T;
    case torch::kHalf:
    case torch::kBFloat16:
      if (for_reduce) {
        *needs_float_staging = true;
        return MPI_FLOAT;
      }
      return MPI_UINT16_T;
    default: break;
  }
  throw DistributedError(str_cat("MPI communicator: unsupported dtype ", c10::toString(t),
                                 for_reduce ? " for a reduction" : ""));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAverage: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

int checked_count(const torch::Tensor& t, const char* what) {
  if (t.numel() > std::numeric_limits<int>::max())
    throw DistributedError(str_cat("MPI communicator: ", what, " of ", t.numel(),
                                   " elements exceeds MPI's int count; split the tensor"));
  return static_cast<int>(t.numel());
}

enum class Kind { kAllReduce, kBroadcast, kAllGather, kBarrier };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kAllReduce: return "all_reduce";
    case Kind::kBroadcast: return "broadcast";
    case Kind::kAllGather: return "all_gather";
    case Kind::kBarrier: return "barrier";
  }
  return "?";
}

/// One requested collective and its completion state.
struct Op {
  Kind kind = Kind::kBarrier;
  bool blocking = true;
  torch::Tensor target;  // caller's tensor (all_reduce, broadcast: result lands here)
  torch::Tensor buf;     // CPU contiguous buffer MPI works on (== target when no staging is needed)
  torch::Tensor out;     // all_gather: [size, numel] receive buffer
  MPI_Datatype dtype = MPI_BYTE;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  std::string tag;
  Clock::time_point issued;
  MPI_Request request = MPI_REQUEST_NULL;

  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;

  std::string describe() const {
    std::string what = str_cat("collective ", kind_name(kind));
    if (!tag.empty()) what += str_cat(" [", tag, "]");
    if (target.defined())
      what += str_cat(" (", target.numel(), " x ", c10::toString(target.scalar_type()),
                      kind == Kind::kAllReduce ? str_cat(", ", to_string(op)) : std::string(), ")");
    return what;
  }
};

class MpiCommunicator;

class MpiWork : public Work {
 public:
  MpiWork(std::shared_ptr<Op> op, MpiCommunicator* comm) : op_(std::move(op)), comm_(comm) {}
  bool test() override {
    std::lock_guard<std::mutex> lock(op_->mutex);
    return op_->done;
  }
  void wait() override;

 private:
  std::shared_ptr<Op> op_;
  MpiCommunicator* comm_;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm parent, double timeout_s) : Communicator(timeout_s) {
    SEGKD_MPI_CHECK(MPI_Comm_dup(parent, &comm_));
    SEGKD_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    SEGKD_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    SEGKD_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    thread_ = std::thread([this] { progress_loop(); });
  }

  ~MpiCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override { run_blocking(make_reduce(t, op, "")); }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op, const std::string& tag) override {
    return std::make_shared<MpiWork>(enqueue(make_reduce(t, op, tag), /*blocking=*/false), this);
  }

  void broadcast(torch::Tensor& t, int root) override {
    if (root < 0 || root >= size_)
      throw DistributedError(str_cat("broadcast root ", root, " is not a rank of a ", size_, "-rank communicator"));
    auto o = std::make_shared<Op>();
    o->kind = Kind::kBroadcast;
    o->root = root;
    bool staging = false;
    o->dtype = mpi_type(t.scalar_type(), /*for_reduce=*/false, &staging);
    o->target = t;
    o->buf = (t.is_cpu() && t.is_contiguous()) ? t : t.to(torch::kCPU).contiguous();
    checked_count(o->buf, "broadcast");
    run_blocking(o);
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    auto o = std::make_shared<Op>();
    o->kind = Kind::kAllGather;
    bool staging = false;
    o->dtype = mpi_type(t.scalar_type(), /*for_reduce=*/false, &staging);
    o->target = t;
    o->buf = t.to(torch::kCPU).contiguous();
    checked_count(o->buf, "all_gather");
    o->out = torch::empty({size_, t.numel()}, o->buf.options());
    run_blocking(o);
    std::vector<torch::Tensor> result;
    result.reserve(size_);
    for (int r = 0; r < size_; ++r) result.push_back(o->out[r].view(t.sizes()).to(t.device()));
    return result;
  }

  void barrier() override {
    auto o = std::make_shared<Op>();
    o->kind = Kind::kBarrier;
    run_blocking(o);
  }

  std::shared_ptr<Communicator> duplicate() override {
    // MPI_Comm_dup is collective on comm_, so it must be ordered with the other collectives: run it on the
    // progress thread's side by first draining it through a barrier-free path (comm_ idle between calls).
    std::lock_guard<std::mutex> lock(dup_mutex_);
    wait_idle();
    return std::make_shared<MpiCommunicator>(comm_, timeout_s());
  }

  /// Called by MpiWork::wait on timeout: the watchdog.
  [[noreturn]] void watchdog(const Op& op) {
    abort_job(3, str_cat("watchdog: ", op.describe(), " on rank ", rank_, " (", topology().host,
                         ") did not finish within ", timeout_s(),
                         " s (distributed.timeout_s); a peer skipped it, died or diverged"));
  }

  void note_waiter() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++waiters_;
    }
    cv_.notify_all();
  }
  void drop_waiter() {
    std::lock_guard<std::mutex> lock(mutex_);
    --waiters_;
  }

 private:
  std::shared_ptr<Op> make_reduce(torch::Tensor& t, ReduceOp op, const std::string& tag) {
    if (op == ReduceOp::kAverage && !t.is_floating_point())
      throw DistributedError(str_cat("all_reduce average needs a floating-point tensor, got ",
                                     c10::toString(t.scalar_type())));
    auto o = std::make_shared<Op>();
    o->kind = Kind::kAllReduce;
    o->op = op;
    o->tag = tag;
    o->target = t;
    bool float_staging = false;
    o->dtype = mpi_type(t.scalar_type(), /*for_reduce=*/true, &float_staging);
    if (float_staging)
      o->buf = t.to(torch::kCPU, torch::kFloat).contiguous();
    else if (t.is_cpu() && t.is_contiguous())
      o->buf = t;
    else
      o->buf = t.to(torch::kCPU).contiguous();
    checked_count(o->buf, "all_reduce");
    return o;
  }

  /// A blocking collective: run directly on this thread when the progress thread is idle (it then watches the
  /// deadline), else queued behind the pending asynchronous collectives.
  void run_blocking(const std::shared_ptr<Op>& o) {
    o->blocking = true;
    o->issued = Clock::now();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!(queue_.empty() && active_count_ == 0 && direct_ == nullptr)) {
        lock.unlock();
        MpiWork(enqueue(o, true), this).wait();
        return;
      }
      direct_ = o.get();
    }
    std::exception_ptr error;
    try {
      start(*o);
    } catch (...) {
      error = std::current_exception();
    }
    complete(*o, error);
    bool queued;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      direct_ = nullptr;
      queued = !queue_.empty();
    }
    if (queued) cv_.notify_all();
    idle_cv_.notify_all();
    if (o->error) std::rethrow_exception(o->error);
  }

  std::shared_ptr<Op> enqueue(std::shared_ptr<Op> o, bool blocking) {
    o->blocking = blocking;
    o->issued = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(o);
    }
    cv_.notify_all();
    return o;
  }

  void wait_idle() {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && active_count_ == 0 && direct_ == nullptr; });
  }

  // ---- progress thread ----

  void start(Op& o) {
    void* buf = o.buf.defined() ? o.buf.data_ptr() : nullptr;
    switch (o.kind) {
      case Kind::kAllReduce:
        if (o.blocking)
          SEGKD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, static_cast<int>(o.buf.numel()), o.dtype,
                                        mpi_op(o.op), comm_));
        else
          SEGKD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, static_cast<int>(o.buf.numel()), o.dtype,
                                         mpi_op(o.op), comm_, &o.request));
        break;
      case Kind::kBroadcast:
        SEGKD_MPI_CHECK(MPI_Bcast(buf, static_cast<int>(o.buf.numel()), o.dtype, o.root, comm_));
        break;
      case Kind::kAllGather:
        SEGKD_MPI_CHECK(MPI_Allgather(buf, static_cast<int>(o.buf.numel()), o.dtype, o.out.data_ptr(),
                                      static_cast<int>(o.buf.numel()), o.dtype, comm_));
        break;
      case Kind::kBarrier:
        SEGKD_MPI_CHECK(MPI_Barrier(comm_));
        break;
    }
  }

  /// Copies staged results back and applies the average; then wakes the waiter.
  void complete(Op& o, std::exception_ptr error) {
    if (!error) {
      try {
        if (o.kind == Kind::kAllReduce || o.kind == Kind::kBroadcast) {
          torch::NoGradGuard no_grad;
          if (o.kind == Kind::kAllReduce && o.op == ReduceOp::kAverage) o.buf.div_(size_);
          if (!o.buf.is_same(o.target)) o.target.copy_(o.buf);
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(o.mutex);
      o.done = true;
      o.error = error;
    }
    o.cv.notify_all();
  }

  void progress_loop() {
    std::vector<std::shared_ptr<Op>> active;
    for (;;) {
      std::deque<std::shared_ptr<Op>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (active.empty()) {
          active_count_ = 0;
          idle_cv_.notify_all();
          // Idle. A caller may be running a blocking collective itself (direct_): it is not woken for that (a
          // wake-up per collective costs a context switch on a busy node), it checks the deadline every tick.
          for (;;) {
            if (direct_ == nullptr && (stop_ || !queue_.empty())) break;
            auto tick = std::chrono::duration_cast<Clock::duration>(kWatchdogTick);
            if (direct_ != nullptr) {
              auto deadline = direct_->issued + std::chrono::duration_cast<Clock::duration>(
                                                    std::chrono::duration<double>(timeout_s()));
              auto now = Clock::now();
              if (now >= deadline) watchdog(*direct_);
              tick = std::min(tick, deadline - now);
            }
            cv_.wait_for(lock, tick);
          }
          if (stop_ && queue_.empty()) return;
        } else if (waiters_ == 0 && queue_.empty()) {
          // Nobody is blocked on these: poll gently so backward keeps the CPU.
          cv_.wait_for(lock, std::chrono::microseconds(200), [this] { return !queue_.empty() || waiters_ > 0; });
        }
        batch.swap(queue_);
        active_count_ = active.size() + batch.size();
      }
      for (auto& o : batch) {
        try {
          if (o->blocking) {
            drain(active);  // keep issue order: earlier asynchronous collectives complete first
            start(*o);
            complete(*o, nullptr);
          } else {
            start(*o);
            active.push_back(o);
          }
        } catch (...) {
          complete(*o, std::current_exception());
        }
      }
      poll(active);
      check_deadlines(active);
    }
  }

  void poll(std::vector<std::shared_ptr<Op>>& active) {
    for (size_t i = 0; i < active.size();) {
      int flag = 0;
      int rc = MPI_Test(&active[i]->request, &flag, MPI_STATUS_IGNORE);
      std::exception_ptr error;
      if (rc != MPI_SUCCESS) {
        try {
          SEGKD_MPI_CHECK(rc);
        } catch (...) {
          error = std::current_exception();
        }
        flag = 1;
      }
      if (flag) {
        complete(*active[i], error);
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

  void drain(std::vector<std::shared_ptr<Op>>& active) {
    while (!active.empty()) {
      poll(active);
      check_deadlines(active);
    }
  }

  /// The watchdog for asynchronous collectives nobody is waiting on yet.
  void check_deadlines(const std::vector<std::shared_ptr<Op>>& active) {
    auto now = Clock::now();
    for (const auto& o : active)
      if (now - o->issued > std::chrono::duration<double>(timeout_s())) watchdog(*o);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<Op>> queue_;
  size_t active_count_ = 0;
  const Op* direct_ = nullptr;  // blocking collective running on a caller's thread
  int waiters_ = 0;
  bool stop_ = false;
  std::mutex dup_mutex_;
};

void MpiWork::wait() {
  comm_->note_waiter();
  auto deadline = op_->issued + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(comm_->timeout_s()));
  bool done;
  {
    std::unique_lock<std::mutex> lock(op_->mutex);
    done = op_->cv.wait_until(lock, deadline, [this] { return op_->done; });
  }
  comm_->drop_waiter();
  if (!done) comm_->watchdog(*op_);
  if (op_->error) std::rethrow_exception(op_->error);
}

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  if (!(timeout_s > 0))
    throw ConfigError(str_cat("distributed.timeout_s must be > 0, got ", timeout_s));
  if (!initialized()) init(nullptr, nullptr);
  return std::make_shared<MpiCommunicator>(world_comm(), timeout_s);
}

}  // namespace segkd::dist
