// Benchmarks of segkd_distributed (run under mpiexec):
//   bench_distributed allreduce [MAX_MB]   all-reduce bandwidth through Communicator (blocking and async) vs raw
//                                          MPI_Allreduce on the same bytes, 1 MB .. MAX_MB (64), with the ratio.
//   bench_distributed reducer [SIZE] [STEPS] [BUCKET_MB]
//                                          exposed (non-overlapped) communication of GradReducer as a fraction of
//                                          backward, in the backward of a PSPNet-R18-D8-shaped network (deep stem,
//                                          dilated BasicBlock stages, pyramid pooling head, SyncBatchNorm) on
//                                          SIZE×SIZE inputs (default 128), one image per rank.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/norm.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/sync_batchnorm.h"
#include "distributed/runtime.h"

namespace {

using namespace segkd::dist;
using Clock = std::chrono::steady_clock;
namespace nn = torch::nn;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Slowest rank's value: a collective is as slow as its slowest participant.
double max_over_ranks(double v, MPI_Comm comm) {
  double out = v;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, comm);
  return out;
}

int bench_allreduce(int max_mb) {
  segkd::dist::DistributedOptions cfg;
  cfg.backend = "mpi";
  auto comm = make_communicator(cfg, torch::kCPU);
  MPI_Comm raw;
  MPI_Comm_dup(world_comm(), &raw);
  const int n = comm->size(), rank = comm->rank();
  if (rank == 0) {
    std::printf("all-reduce (sum, float32) over %d ranks; busbw = bytes/time * 2(n-1)/n\n", n);
    std::printf("%8s %6s %12s %12s %12s %8s %8s\n", "MB", "rounds", "raw GB/s", "comm GB/s", "async GB/s",
                "ratio", "async");
  }
  // Raw, blocking and async are timed in interleaved rounds and the median kept, so a load spike on a shared
  // machine hits all three alike instead of whichever happened to run then.
  for (int mb = 1; mb <= max_mb; mb *= 2) {
    const int64_t numel = static_cast<int64_t>(mb) * 1024 * 1024 / 4;
    const int rounds = std::max(7, 128 / mb);
    auto t = torch::ones({numel});
    auto time_once = [&](auto&& body) {
      MPI_Barrier(raw);
      auto t0 = Clock::now();
      body();
      return max_over_ranks(seconds_since(t0), raw);
    };
    auto raw_body = [&] {
      MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(numel), MPI_FLOAT, MPI_SUM, raw);
    };
    auto comm_body = [&] { comm->all_reduce(t, ReduceOp::kSum); };
    auto async_body = [&] { comm->all_reduce_async(t, ReduceOp::kSum, "bench")->wait(); };
    raw_body();  // warm-up
    comm_body();
    std::vector<double> tr, tc, ta;
    for (int r = 0; r < rounds; ++r) {
      t.fill_(1);  // keep values finite
      // Alternate which goes first so a systematic order effect cancels in the medians.
      if (r % 2 == 0) {
        tr.push_back(time_once(raw_body));
        tc.push_back(time_once(comm_body));
      } else {
        tc.push_back(time_once(comm_body));
        tr.push_back(time_once(raw_body));
      }
      ta.push_back(time_once(async_body));
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    double t_raw = median(tr), t_comm = median(tc), t_async = median(ta);
    double bytes = static_cast<double>(numel) * 4, factor = 2.0 * (n - 1) / n;
    auto bw = [&](double s) { return bytes / s * factor / 1e9; };
    if (rank == 0)
      std::printf("%8d %6d %12.3f %12.3f %12.3f %8.3f %8.3f\n", mb, rounds, bw(t_raw), bw(t_comm), bw(t_async),
                  t_raw / t_comm, t_raw / t_async);
  }
  MPI_Comm_free(&raw);
  return 0;
}

// ---- a PSPNet-R18-D8-shaped network (same layer shapes as mmseg's pspnet_r18-d8, no pretrained weights) ----

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t dilation = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(dilation * (k / 2)).dilation(dilation)
                        .bias(false));
}

struct BlockImpl : nn::Module {
  BlockImpl(int64_t in, int64_t out, int64_t stride, int64_t dilation) {
    conv1 = register_module("conv1", conv(in, out, 3, stride, dilation));
    bn1 = register_module("bn1", segkd::Norm2d(out));
    conv2 = register_module("conv2", conv(out, out, 3, 1, dilation));
    bn2 = register_module("bn2", segkd::Norm2d(out));
    if (stride != 1 || in != out) {
      down = register_module("downsample", nn::Sequential(conv(in, out, 1, stride), segkd::Norm2d(out)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = torch::relu(bn1(conv1(x)));
    y = bn2(conv2(y));
    return torch::relu(y + (down ? down->forward(x) : x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  segkd::Norm2d bn1{nullptr}, bn2{nullptr};
  nn::Sequential down{nullptr};
};
TORCH_MODULE(Block);

struct PspLikeImpl : nn::Module {
  explicit PspLikeImpl(int64_t classes) {
    stem = register_module("stem", nn::Sequential(conv(3, 32, 3, 2), segkd::Norm2d(32), nn::ReLU(),
                                                  conv(32, 32, 3), segkd::Norm2d(32), nn::ReLU(),
                                                  conv(32, 64, 3), segkd::Norm2d(64), nn::ReLU()));
    const int64_t ch[4] = {64, 128, 256, 512}, stride[4] = {1, 2, 1, 1}, dil[4] = {1, 1, 2, 4};
    int64_t in = 64;
    for (int s = 0; s < 4; ++s) {
      nn::Sequential layer;
      layer->push_back(Block(in, ch[s], stride[s], std::max<int64_t>(1, dil[s] / 2)));
      layer->push_back(Block(ch[s], ch[s], 1, dil[s]));
      layers.push_back(register_module("layer" + std::to_string(s + 1), layer));
      in = ch[s];
    }
    for (int k = 0; k < 4; ++k)
      ppm.push_back(register_module("ppm" + std::to_string(k),
                                    nn::Sequential(conv(512, 128, 1), segkd::Norm2d(128), nn::ReLU())));
    bottleneck = register_module("bottleneck",
                                 nn::Sequential(conv(512 + 4 * 128, 128, 3), segkd::Norm2d(128), nn::ReLU()));
    conv_seg = register_module("conv_seg", nn::Conv2d(nn::Conv2dOptions(128, classes, 1)));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto size = x.sizes().slice(2).vec();
    x = torch::max_pool2d(stem->forward(x), 3, 2, 1);
    for (auto& l : layers) x = l->forward(x);
    std::vector<torch::Tensor> cat{x};
    const int64_t scales[4] = {1, 2, 3, 6};
    auto hw = x.sizes().slice(2).vec();
    for (int k = 0; k < 4; ++k) {
      auto p = ppm[k]->forward(torch::adaptive_avg_pool2d(x, {scales[k], scales[k]}));
      cat.push_back(nn::functional::interpolate(
          p, nn::functional::InterpolateFuncOptions().size(hw).mode(torch::kBilinear).align_corners(false)));
    }
    auto y = conv_seg(bottleneck->forward(torch::cat(cat, 1)));
    return nn::functional::interpolate(
        y, nn::functional::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
  }
  nn::Sequential stem{nullptr}, bottleneck{nullptr};
  std::vector<nn::Sequential> layers, ppm;
  nn::Conv2d conv_seg{nullptr};
};
TORCH_MODULE(PspLike);

int bench_reducer(int64_t size, int steps, double bucket_mb) {
  segkd::dist::DistributedOptions cfg;
  cfg.backend = "mpi";
  cfg.bucket_mb = bucket_mb;
  auto comm = make_communicator(cfg, torch::kCPU);
  const int rank = comm->rank();
  torch::manual_seed(0);
  PspLike net(19);
  broadcast_module(*net, *comm);
  convert_sync_batchnorm(*net, comm);
  int64_t params = 0;
  for (auto& p : net->parameters()) params += p.numel();
  GradReducer reducer(comm, net->parameters(), cfg);
  // Counts bucket starts, so the count right after backward returns is the number that overlapped backward.
  struct StartCounter : GradReducerListener {
    std::atomic<int> started{0};
    void bucket_started(size_t /*bucket*/) override { ++started; }
  };
  auto counter = std::make_shared<StartCounter>();
  reducer.set_listener(counter);

  auto x = torch::randn({1, 3, size, size});
  auto y = torch::randint(0, 19, {1, size, size}, torch::kLong);
  auto loss_fn = [&] { return nn::functional::cross_entropy(net->forward(x), y); };

  // Communication alone: every bucket's bytes all-reduced back to back, nothing to overlap with.
  std::vector<torch::Tensor> flats;
  for (size_t b = 0; b < reducer.num_buckets(); ++b) flats.push_back(torch::ones({reducer.bucket_bytes(b) / 4}));
  double t_comm = 0, t_local_bwd = 0, t_bwd = 0, t_finish = 0;
  int started_before_end = 0;
  for (int step = -1; step < steps; ++step) {  // step -1 warms up
    comm->barrier();
    auto t0 = Clock::now();
    for (auto& f : flats) comm->all_reduce(f, ReduceOp::kAverage);
    double c = seconds_since(t0);

    // Backward without the reducer (hooks idle in an accumulation micro-batch) for reference.
    net->zero_grad();
    reducer.prepare(/*sync=*/false);
    auto l0 = loss_fn();
    comm->barrier();
    t0 = Clock::now();
    l0.backward();
    double b0 = seconds_since(t0);

    net->zero_grad();
    reducer.prepare(/*sync=*/true);
    auto l1 = loss_fn();
    comm->barrier();
    counter->started = 0;
    t0 = Clock::now();
    l1.backward();
    const int started_in_backward = counter->started;
    double b1 = seconds_since(t0);
    t0 = Clock::now();
    reducer.finish();
    double f1 = seconds_since(t0);
    if (step >= 0) {
      t_comm += c;
      t_local_bwd += b0;
      t_bwd += b1;
      t_finish += f1;
      started_before_end += started_in_backward;
    }
  }
  MPI_Comm w = world_comm();
  t_comm = max_over_ranks(t_comm / steps, w);
  t_local_bwd = max_over_ranks(t_local_bwd / steps, w);
  t_bwd = max_over_ranks(t_bwd / steps, w);
  t_finish = max_over_ranks(t_finish / steps, w);
  if (rank == 0) {
    std::printf("PSPNet-R18-D8-shaped net: %lld parameters, %zu buckets (first %.2f MB, then %.1f MB), input 1x3x%lldx%lld "
                "per rank, %d ranks, SyncBatchNorm\n",
                static_cast<long long>(params), reducer.num_buckets(), cfg.first_bucket_mb, cfg.bucket_mb,
                static_cast<long long>(size), static_cast<long long>(size), comm->size());
    std::printf("backward without reducer        %8.1f ms\n", 1e3 * t_local_bwd);
    std::printf("backward with reducer hooks     %8.1f ms\n", 1e3 * t_bwd);
    std::printf("finish() (exposed communication) %7.1f ms = %.1f%% of backward\n", 1e3 * t_finish,
                100 * t_finish / t_bwd);
    std::printf("all buckets all-reduced alone   %8.1f ms (communication to hide); hidden: %.1f%%\n", 1e3 * t_comm,
                100 * std::max(0.0, 1 - t_finish / t_comm));
    std::printf("buckets started before backward ended: %.1f of %zu per step\n",
                static_cast<double>(started_before_end) / steps, reducer.num_buckets());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  init(&argc, &argv);
  std::string mode = argc > 1 ? argv[1] : "allreduce";
  int rc = run_guarded([&] {
    if (mode == "allreduce") return bench_allreduce(argc > 2 ? std::atoi(argv[2]) : 64);
    if (mode == "reducer")
      return bench_reducer(argc > 2 ? std::atoll(argv[2]) : 128, argc > 3 ? std::atoi(argv[3]) : 3,
                           argc > 4 ? std::atof(argv[4]) : 25.0);
    throw segkd::ConfigError("bench_distributed: unknown mode '" + mode + "' (allreduce | reducer)");
  });
  finalize();
  return rc;
}
