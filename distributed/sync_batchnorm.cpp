// SyncBatchNorm for segkd::Norm2d over any Communicator (PyTorch's own SyncBatchNorm is GPU-only).
#include "distributed/sync_batchnorm.h"

#include <cstdint>

#include "common/error.h"

namespace segkd::dist {
namespace {

/// Shape [1, C, 1, ...] to broadcast a per-channel vector against an N×C×… input.
std::vector<int64_t> channel_shape(const torch::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = x.size(1);
  return shape;
}

std::vector<int64_t> reduce_dims(const torch::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

/// y = (x − mean)·invstd·weight + bias with the global statistics as constants; backward all-reduces Σdy and
/// Σdy·(x − mean) so the input gradient accounts for every rank's use of the shared statistics.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& mean,
                               const torch::Tensor& invstd, double total_count, Communicator* comm) {
    auto shape = channel_shape(x);
    auto scale = (invstd * weight).view(shape);
    auto y = (x - mean.view(shape)) * scale + bias.view(shape);
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["count"] = total_count;
    ctx->saved_data["comm"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(comm));
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    double count = ctx->saved_data["count"].toDouble();
    auto* comm = reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
    auto dy = grads[0].contiguous();
    auto shape = channel_shape(x);
    auto dims = reduce_dims(x);
    auto xmu = x - mean.view(shape);
    auto sum_dy = dy.sum(dims);
    auto sum_dy_xmu = (dy * xmu).sum(dims);
    // Local sums give this rank's weight/bias gradient (the reducer averages those); the global sums enter the
    // input gradient. Every rank runs this collective, whether or not its input needs a gradient.
    auto grad_weight = sum_dy_xmu * invstd;
    auto grad_bias = sum_dy.clone();
    auto packed = torch::cat({sum_dy, sum_dy_xmu}).to(torch::kDouble);
    comm->all_reduce(packed, ReduceOp::kSum);
    int64_t c = x.size(1);
    auto mean_dy = (packed.narrow(0, 0, c) / count).to(x.scalar_type()).view(shape);
    auto mean_dy_xmu = (packed.narrow(0, c, c) / count).to(x.scalar_type()).view(shape);
    auto is = invstd.view(shape);
    auto dx = (dy - mean_dy - xmu * is * is * mean_dy_xmu) * is * weight.view(shape);
    return {dx, grad_weight, grad_bias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

SyncNormFn make_sync_batchnorm_fn(std::shared_ptr<Communicator> comm) {
  SEGKD_CHECK(comm != nullptr, "make_sync_batchnorm_fn: communicator is null");
  return [comm](const torch::Tensor& x, Norm2dImpl& norm) -> torch::Tensor {
    if (x.dim() < 2 || x.size(1) != norm.channels())
      throw Error(str_cat("SyncBatchNorm: expected input [N, ", norm.channels(), ", ...], got ", x.sizes()));
    auto dims = reduce_dims(x);
    const int64_t c = x.size(1);
    torch::Tensor mean, var, invstd;
    double total = 0;
    {
      torch::NoGradGuard no_grad;
      auto xd = x.detach();
      // Sums in double: the global batch can be large and var = E[x²] − mean² cancels.
      auto stats = torch::cat({torch::sum(xd, dims, /*keepdim=*/false, torch::kDouble),
                               torch::sum(xd.square(), dims, /*keepdim=*/false, torch::kDouble),
                               torch::full({1}, static_cast<double>(xd.numel() / c), torch::kDouble)});
      if (stats.device() != x.device()) stats = stats.to(x.device());
      comm->all_reduce(stats, ReduceOp::kSum);
      total = stats[2 * c].item<double>();
      if (total <= 1)
        throw Error(str_cat("SyncBatchNorm: expected more than 1 value per channel over all ranks, got input ",
                            x.sizes(), " (global count ", total, ")"));
      auto mean_d = stats.narrow(0, 0, c) / total;
      auto var_d = (stats.narrow(0, c, c) / total - mean_d * mean_d).clamp_min(0);
      mean = mean_d.to(x.scalar_type());
      var = var_d.to(x.scalar_type());
      invstd = (var_d + norm.eps()).rsqrt().to(x.scalar_type());
      const double m = norm.momentum();
      norm.running_mean.mul_(1 - m).add_(mean_d.to(norm.running_mean.scalar_type()), m);
      norm.running_var.mul_(1 - m).add_((var_d * (total / (total - 1))).to(norm.running_var.scalar_type()), m);
      norm.num_batches_tracked.add_(1);
    }
    return SyncBatchNormFunction::apply(x, norm.weight, norm.bias, mean, invstd, total, comm.get());
  };
}

void convert_sync_batchnorm(torch::nn::Module& module, std::shared_ptr<Communicator> comm) {
  SEGKD_CHECK(comm != nullptr, "convert_sync_batchnorm: communicator is null");
  if (comm->size() == 1) return;
  auto fn = make_sync_batchnorm_fn(comm->duplicate());
  for_each_norm(module, [&fn](Norm2dImpl& norm) { norm.set_sync(fn); });
}

}  // namespace segkd::dist
