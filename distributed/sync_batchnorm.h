#pragma once
/// SyncBatchNorm: batch normalisation whose statistics are those of the global batch over all ranks, for
/// segkd::Norm2d (common/norm.h) and any Communicator. PyTorch's own SyncBatchNorm runs on GPUs only; this one is
/// a custom autograd function over the communicator, so it works on CPU ranks (MPI) as well as with NCCL.
#include <torch/torch.h>

#include <memory>

#include "common/norm.h"
#include "distributed/communicator.h"

namespace segkd::dist {

/// Installs SyncBatchNorm into every segkd::Norm2d of `module` (common/norm.h: Norm2dImpl::set_sync): per-channel
/// sum, sum of squares and count all-reduced in forward, the two gradient sums in backward (custom autograd
/// function), running stats as BatchNorm over the global batch (unbiased var for running_var). No-op when size 1.
/// Collective call (it duplicates `comm` so normalisation collectives never interleave with the reducer's).
void convert_sync_batchnorm(torch::nn::Module& module, std::shared_ptr<Communicator> comm);

/// The synchronised statistics function convert_sync_batchnorm installs (exposed for tests; works at size 1).
/// Forward: mean = Σx / M, var = Σx² / M − mean² over the M = N·H·W·ranks values of each channel; y = (x − mean)
/// / sqrt(var + eps) · weight + bias. Backward: grad_input from the globally summed Σdy and Σdy·(x − mean);
/// grad_weight/grad_bias from this rank's sums (the reducer averages them like any other gradient).
SyncNormFn make_sync_batchnorm_fn(std::shared_ptr<Communicator> comm);

}  // namespace segkd::dist
