#include "distributed/grad_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <atomic>
#include <map>

#include "common/error.h"
#include "common/hash.h"

namespace segkd::dist {

struct GradReducer::Impl {
  struct Bucket {
    std::vector<size_t> params;
    torch::Tensor flat;
    int64_t bytes = 0;
    size_t pending = 0;
    bool launched = false;
    std::shared_ptr<Work> work;
  };
  struct Slot {
    torch::Tensor param;
    size_t bucket = 0;
    int64_t offset = 0;
    bool ready = false;
  };

  std::shared_ptr<Communicator> comm;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // keep hooks alive (docs/toolchain.md)
  std::mutex mutex;
  bool sync = true;
  bool finished = false;  // finish() ran; prepare() must come before the next backward
  size_t next_launch = 0;
  std::shared_ptr<GradReducerListener> listener;

  // Caller holds mutex.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      Bucket& b = buckets[next_launch];
      if (listener) listener->bucket_started(next_launch);
      b.launched = true;
      b.work = comm->all_reduce_async(b.flat, ReduceOp::kAverage, str_cat("gradient bucket ", next_launch));
      ++next_launch;
    }
  }

  // Caller holds mutex.
  void copy_in(size_t i, const torch::Tensor& grad) {
    Slot& s = slots[i];
    Bucket& b = buckets[s.bucket];
    auto dst = b.flat.narrow(0, s.offset, s.param.numel());
    if (grad.defined())
      dst.copy_(grad.reshape({-1}));
    else
      dst.zero_();
    s.ready = true;
    --b.pending;
  }

  void on_grad_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!sync || finished || comm->size() == 1) return;
    Slot& s = slots[i];
    if (s.ready) return;  // a second backward through the same graph in one step: the first copy stands
    copy_in(i, s.param.grad());
    if (buckets[s.bucket].pending == 0) launch_ready();
  }
};

namespace {

/// Fires after AccumulateGrad wrote the parameter's .grad.
class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::weak_ptr<GradReducer::Impl> impl, size_t index) : impl_(std::move(impl)), index_(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto impl = impl_.lock()) impl->on_grad_ready(index_);
    return outputs;
  }

 private:
  std::weak_ptr<GradReducer::Impl> impl_;
  size_t index_;
};

constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace

GradReducer::GradReducer(std::shared_ptr<Communicator> comm, std::vector<torch::Tensor> params,
                         const DistributedOptions& cfg)
    : impl_(std::make_shared<Impl>()) {
  if (!comm) throw ConfigError("GradReducer: communicator is null");
  cfg.validate();  // bucket sizes > 0, ... (distributed/options.cpp)
  impl_->comm = std::move(comm);
  for (auto& p : params) {
    if (!p.defined() || !p.requires_grad()) continue;
    if (!p.is_leaf()) throw ConfigError("GradReducer: parameters must be leaf tensors");
    for (const auto& s : impl_->slots)
      if (s.param.is_same(p)) throw ConfigError("GradReducer: the same parameter was passed twice");
    impl_->slots.push_back({p});
  }
  // Buckets in reverse registration order.
  std::vector<size_t> current;
  int64_t current_bytes = 0;
  auto close = [&] {
    if (current.empty()) return;
    Impl::Bucket b;
    b.params = current;
    b.bytes = current_bytes;
    const auto& first = impl_->slots[current.front()].param;
    int64_t numel = 0;
    for (size_t i : current) {
      impl_->slots[i].bucket = impl_->buckets.size();
      impl_->slots[i].offset = numel;
      numel += impl_->slots[i].param.numel();
    }
    b.flat = torch::zeros({numel}, first.options().requires_grad(false));
    impl_->buckets.push_back(std::move(b));
    current.clear();
    current_bytes = 0;
  };
  for (size_t k = impl_->slots.size(); k-- > 0;) {
    const auto& p = impl_->slots[k].param;
    double cap = (impl_->buckets.empty() ? cfg.first_bucket_mb : cfg.bucket_mb) * kMiB;
    int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
    if (!current.empty()) {
      const auto& head = impl_->slots[current.front()].param;
      bool other_kind = head.scalar_type() != p.scalar_type() || head.device() != p.device();
      if (other_kind || static_cast<double>(current_bytes + bytes) > cap) close();
    }
    current.push_back(k);
    current_bytes += bytes;
  }
  close();
  for (auto& b : impl_->buckets) b.pending = b.params.size();

  std::weak_ptr<Impl> weak = impl_;
  for (size_t i = 0; i < impl_->slots.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(impl_->slots[i].param);
    acc->add_post_hook(std::make_unique<ReadyHook>(weak, i));
    impl_->accumulators.push_back(std::move(acc));
  }
}

GradReducer::~GradReducer() {
  // Finish communication that is still in flight so no collective outlives its buffer.
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& b : impl_->buckets)
    if (b.work) b.work->wait();
}

void GradReducer::prepare(bool sync) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& b : impl_->buckets) {
    if (b.work) b.work->wait();  // finish() was skipped: do not reuse a buffer still being reduced
    b.work.reset();
    b.launched = false;
    b.pending = b.params.size();
  }
  for (auto& s : impl_->slots) s.ready = false;
  impl_->next_launch = 0;
  impl_->sync = sync;
  impl_->finished = false;
}

void GradReducer::finish() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  Impl& m = *impl_;
  if (m.finished)
    throw Error("GradReducer::finish() called twice without prepare(): call prepare() before each backward");
  if (!m.sync) return;
  m.finished = true;
  if (m.comm->size() == 1) return;
  // Parameters that received no gradient this step: same treatment on every rank, so every bucket is reduced
  // exactly once and in the same order everywhere.
  for (size_t i = 0; i < m.slots.size(); ++i)
    if (!m.slots[i].ready) m.copy_in(i, m.slots[i].param.grad());
  m.launch_ready();
  torch::NoGradGuard no_grad;
  for (size_t bi = 0; bi < m.buckets.size(); ++bi) {
    auto& b = m.buckets[bi];
    b.work->wait();
    b.work.reset();
    if (m.listener) m.listener->bucket_done(bi);
    for (size_t i : b.params) {
      auto& p = m.slots[i].param;
      auto reduced = b.flat.narrow(0, m.slots[i].offset, p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(reduced);
      else
        p.mutable_grad() = reduced.clone();
    }
  }
}

void GradReducer::set_listener(std::shared_ptr<GradReducerListener> listener) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->listener = std::move(listener);
}

size_t GradReducer::num_buckets() const { return impl_->buckets.size(); }

std::vector<size_t> GradReducer::bucket_params(size_t b) const {
  SEGKD_CHECK(b < impl_->buckets.size(), "bucket ", b, " out of range (", impl_->buckets.size(), " buckets)");
  return impl_->buckets[b].params;
}

int64_t GradReducer::bucket_bytes(size_t b) const {
  SEGKD_CHECK(b < impl_->buckets.size(), "bucket ", b, " out of range (", impl_->buckets.size(), " buckets)");
  return impl_->buckets[b].bytes;
}

// ---- start-up agreement ----

void broadcast_module(torch::nn::Module& module, Communicator& comm) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters(/*recurse=*/true)) tensors.push_back(p);
  for (auto& b : module.buffers(/*recurse=*/true)) tensors.push_back(b);
  // One flat broadcast per (dtype, device) instead of one per tensor.
  std::map<std::string, std::vector<torch::Tensor>> groups;
  for (auto& t : tensors)
    if (t.defined() && t.numel() > 0) groups[str_cat(c10::toString(t.scalar_type()), "/", t.device().str())].push_back(t);
  for (auto& [key, group] : groups) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : group) flat_parts.push_back(t.reshape({-1}));
    auto flat = torch::cat(flat_parts);
    comm.broadcast(flat, /*root=*/0);
    int64_t off = 0;
    for (auto& t : group) {
      t.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
}

std::string module_checksum(torch::nn::Module& module) {
  // FNV-1a over 64-bit words (fast on large tensors); names and shapes first so layout differences count too.
  Fnv1a64 h;
  auto mix_tensor = [&](const std::string& name, const torch::Tensor& t) {
    std::string head = str_cat(name, ":", c10::toString(t.scalar_type()), ":", t.sizes(), ";");
    h.update_words(head.data(), head.size());
    if (!t.defined() || t.numel() == 0) return;
    auto c = t.detach().to(torch::kCPU).contiguous();
    h.update_words(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true)) mix_tensor(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) mix_tensor(b.key(), b.value());
  return h.hex();
}

namespace {
/// "what differs: rank 0 X, rank 2 Y" listing rank 0 and every rank whose value differs from it; "" if none.
std::string describe_mismatch(const std::string& what, const std::vector<std::string>& values) {
  std::string out;
  for (size_t r = 1; r < values.size(); ++r)
    if (values[r] != values[0]) out += str_cat(", rank ", r, " ", values[r]);
  if (out.empty()) return "";
  return str_cat(what, " differs: rank 0 ", values[0], out);
}
}  // namespace

void check_agreement(Communicator& comm, const std::string& config_hash, torch::nn::Module& module) {
  auto hashes = comm.all_gather_string(config_hash);
  auto sums = comm.all_gather_string(module_checksum(module));
  std::string a = describe_mismatch("config hash", hashes);
  std::string b = describe_mismatch("parameter checksum", sums);
  if (a.empty() && b.empty()) return;
  std::string msg = a.empty() ? b : (b.empty() ? a : a + "; " + b);
  throw DistributedError(str_cat(msg, " (ranks must run the same config and start from the same weights; seen on rank ",
                                 comm.rank(), ")"));
}

}  // namespace segkd::dist
