#pragma once
/// Norm2d: the 2-D batch-normalisation layer every segkd model uses.
///
/// It owns exactly BatchNorm2d's state (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`)
/// under the same names, so state_dict keys match PyTorch/mmsegmentation, but its batch-statistics computation is
/// swappable after construction:
///   - local (default): `torch::batch_norm` over this process's batch;
///   - synchronised: a `SyncFn` installed by distributed/ (`convert_sync_batchnorm`) that reduces statistics over
///     all ranks — models/ and distributed/ do not know each other, this slot is where they meet;
///   - folded: identity, after its affine transform was folded into the preceding convolution (teacher).
/// LibTorch's `replace_module` would not reach a parent's typed member, which is why the swap lives here.
#include <torch/torch.h>

#include <functional>

namespace segkd {

class Norm2dImpl;

/// Computes training-mode batch norm over the global batch and updates running statistics.
using SyncNormFn = std::function<torch::Tensor(const torch::Tensor& x, Norm2dImpl& norm)>;

class Norm2dImpl : public torch::nn::Module {
 public:
  explicit Norm2dImpl(int64_t channels, double eps = 1e-5, double momentum = 0.1);

  /// y = (x - mean) / sqrt(var + eps) * weight + bias, per channel; batch statistics in training mode.
  torch::Tensor forward(const torch::Tensor& x);

  /// Installs the synchronised statistics function (nullptr restores local statistics).
  void set_sync(SyncNormFn fn) { sync_ = std::move(fn); }
  bool is_sync() const { return static_cast<bool>(sync_); }
  /// Marks the layer as folded into its convolution: forward becomes the identity.
  void set_folded() { folded_ = true; }
  bool is_folded() const { return folded_; }

  int64_t channels() const { return channels_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }

  /// Per-channel (scale, shift) of the eval-mode transform: y = x * scale + shift.
  std::pair<torch::Tensor, torch::Tensor> eval_affine() const;

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  int64_t channels_;
  double eps_, momentum_;
  SyncNormFn sync_;
  bool folded_ = false;
};
TORCH_MODULE(Norm2d);

/// Calls `fn` on every Norm2d inside `module` (recursively).
void for_each_norm(torch::nn::Module& module, const std::function<void(Norm2dImpl&)>& fn);

}  // namespace segkd
