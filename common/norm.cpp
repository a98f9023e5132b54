#include "common/norm.h"

namespace segkd {

Norm2dImpl::Norm2dImpl(int64_t channels, double eps, double momentum)
    : channels_(channels), eps_(eps), momentum_(momentum) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor Norm2dImpl::forward(const torch::Tensor& x) {
  if (folded_) return x;
  if (is_training()) {
    if (sync_) return sync_(x, *this);
    {
      torch::NoGradGuard no_grad;
      num_batches_tracked.add_(1);
    }
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/true, momentum_, eps_,
                             /*cudnn_enabled=*/true);
  }
  return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false, momentum_, eps_,
                           /*cudnn_enabled=*/true);
}

std::pair<torch::Tensor, torch::Tensor> Norm2dImpl::eval_affine() const {
  torch::NoGradGuard no_grad;
  auto scale = weight / torch::sqrt(running_var + eps_);
  auto shift = bias - running_mean * scale;
  return {scale, shift};
}

void for_each_norm(torch::nn::Module& module, const std::function<void(Norm2dImpl&)>& fn) {
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* norm = dynamic_cast<Norm2dImpl*>(child.get())) fn(*norm);
  }
}

}  // namespace segkd
