// Teacher forward alone: the BatchNorm-folded fp32 forward (what an fp32 teacher runs) against the int8 forward
// (teacher.precision = "int8"), for PSPNet-R101-D8 and PSPNet-R18-D8, logits only (what logit KD asks), 1 thread.
// The two sides alternate within every round, after warm-up, so drifts of the machine's speed hit both alike;
// prints min / median / max ms per forward and the ratio of medians (and of the per-round ratios).
//
// Usage: bench_teacher [ROUNDS=10] [BATCH=2] [SIZE=128] [CLASSES=19]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "models/int8.h"
#include "models/segmentor.h"

using namespace segkd;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  double min, median, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}

template <typename Fn>
double time_ms(Fn&& fn) {
  auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void bench(const std::string& backbone, int rounds, int64_t batch, int64_t size, int64_t classes) {
  models::ModelOptions mc;
  mc.backbone = backbone;
  mc.aux_head = false;
  torch::manual_seed(0);
  auto model = models::build_model(mc, classes);
  {
    torch::NoGradGuard no_grad;  // BatchNorm statistics of a trained model, not the identity of a fresh one
    for_each_norm(*model, [](Norm2dImpl& n) {
      n.running_mean.uniform_(-0.1, 0.1);
      n.running_var.uniform_(0.5, 1.5);
    });
  }
  models::prepare_teacher(model, /*fold_bn=*/true);
  models::Int8Segmentor int8(model);
  OutputRequest req;
  req.aux_logits = false;
  std::vector<torch::Tensor> calib;
  for (int i = 0; i < 4; ++i) int8.observe(torch::randn({batch, 3, size, size}));
  int8.set_ranges(int8.ranges());
  auto x = torch::randn({batch, 3, size, size});
  auto fp32 = [&] {
    c10::InferenceMode guard;
    return model->forward(x, req).logits;
  };
  auto q = [&] { return int8.forward(x, req).logits; };
  auto ref = fp32();
  auto err = ((q() - ref).norm() / ref.norm()).item<double>();
  for (int i = 0; i < 2; ++i) fp32(), q();  // warm-up
  std::vector<double> a, b, r;
  for (int i = 0; i < rounds; ++i) {
    const bool int8_first = i % 2 == 1;  // alternate the order so order effects cancel
    double ta = 0, tb = 0;
    if (int8_first) tb = time_ms(q);
    ta = time_ms(fp32);
    if (!int8_first) tb = time_ms(q);
    a.push_back(ta);
    b.push_back(tb);
    r.push_back(ta / tb);
  }
  auto sa = stats(a), sb = stats(b), sr = stats(r);
  std::printf("pspnet-%s-d8 %ldx3x%ldx%ld, %ld classes, %d rounds\n", backbone.c_str(), static_cast<long>(batch),
              static_cast<long>(size), static_cast<long>(size), static_cast<long>(classes), rounds);
  std::printf("  fp32 folded  ms  min %7.1f  median %7.1f  max %7.1f\n", sa.min, sa.median, sa.max);
  std::printf("  int8         ms  min %7.1f  median %7.1f  max %7.1f\n", sb.min, sb.median, sb.max);
  std::printf("  speed-up int8/fp32: %.2fx (median); per-round min %.2fx max %.2fx | logits rel. error %.4f\n",
              sa.median / sb.median, sr.min, sr.max, err);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 10;
  const int64_t batch = argc > 2 ? std::atoll(argv[2]) : 2;
  const int64_t size = argc > 3 ? std::atoll(argv[3]) : 128;
  const int64_t classes = argc > 4 ? std::atoll(argv[4]) : 19;
  at::set_num_threads(1);
  for (const char* backbone : {"resnet101_v1c", "resnet18_v1c"}) bench(backbone, rounds, batch, size, classes);
  return 0;
}
