// bench_losses: cost of each loss term per iteration (forward + backward) at PSPNet-R18 (student) / PSPNet-R101
// (teacher) feature shapes, for a Cityscapes crop scaled to this machine, and its ratio to the CE task loss
// measured in the same run.
//
//   bench_losses [--scale S] [--batch N] [--iters K] [--threads T] [--peer 0|1]
//
// With --peer 1 (default) it then runs the PyTorch peer (bench_losses_peer.py: the reference implementations of
// tests/parity/losses under Debian's /usr/bin/python3) at the same shapes and prints both costs side by side.
//
// Default: 512×1024 crop scaled by 1/4 to 128×256, batch 2, output stride 8, 19 classes, 1 thread.
// Feature shapes (N, C, H, W): layer1 at stride 4, layer2..4 and the PSP bottleneck ("head") at stride 8;
// student R18 channels 64/128/256/512, head 128; teacher R101 channels 256/512/1024/2048, head 512.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "losses/objective.h"

namespace {

using segkd::ModelOutput;
using namespace segkd::losses;

struct Args {
  double scale = 0.25;
  int64_t batch = 2;
  int iters = 10;
  int threads = 1;
  bool peer = true;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_losses: %s needs a value\n", k.c_str());
      std::exit(2);
    }
    const char* v = argv[++i];
    if (k == "--scale") {
      a.scale = std::atof(v);
    } else if (k == "--batch") {
      a.batch = std::atoll(v);
    } else if (k == "--iters") {
      a.iters = std::atoi(v);
    } else if (k == "--threads") {
      a.threads = std::atoi(v);
    } else if (k == "--peer") {
      a.peer = std::atoi(v) != 0;
    } else {
      std::fprintf(stderr, "bench_losses: unknown option %s (known: --scale --batch --iters --threads --peer)\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

struct Net {
  std::map<std::string, int64_t> channels;
  std::map<std::string, int64_t> stride;
};

ModelOutput random_output(const Net& net, int64_t n, int64_t h, int64_t w, int64_t classes, bool student) {
  ModelOutput out;
  out.logits = torch::randn({n, classes, h / 8, w / 8}) * 2;
  for (const auto& [name, c] : net.channels) {
    int64_t s = net.stride.at(name);
    auto x = torch::randn({n, c, h / s, w / s});
    out.features[name] = student ? x.requires_grad_(true) : x;
  }
  if (student) out.logits.requires_grad_(true);
  return out;
}

/// Runs the PyTorch peer script and returns its "PEER <name>\t<ms>" lines as name -> ms (empty on failure).
std::map<std::string, double> run_peer(const Args& a) {
  std::map<std::string, double> out;
  std::string cmd = std::string("/usr/bin/python3 ") + SEGKD_LOSSES_PEER_SCRIPT + " --scale " + std::to_string(a.scale) +
                    " --batch " + std::to_string(a.batch) + " --iters " + std::to_string(a.iters) + " --threads " +
                    std::to_string(a.threads) + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    std::string l(line);
    auto tab = l.find('\t');
    if (l.rfind("PEER ", 0) == 0 && tab != std::string::npos) {
      out[l.substr(5, tab - 5)] = std::atof(l.c_str() + tab + 1);
    } else {
      std::fprintf(stderr, "peer: %s", l.c_str());
    }
  }
  int status = pclose(pipe);
  if (status != 0) std::fprintf(stderr, "bench_losses: the PyTorch peer exited with status %d\n", status);
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  at::set_num_threads(args.threads);
  torch::manual_seed(0);
  const int64_t h = static_cast<int64_t>(512 * args.scale), w = static_cast<int64_t>(1024 * args.scale);
  const int64_t classes = 19, ignore = 255;
  std::map<std::string, int64_t> strides{{"layer1", 4}, {"layer2", 8}, {"layer3", 8}, {"layer4", 8}, {"head", 8}};
  Net student{{{"layer1", 64}, {"layer2", 128}, {"layer3", 256}, {"layer4", 512}, {"head", 128}}, strides};
  Net teacher{{{"layer1", 256}, {"layer2", 512}, {"layer3", 1024}, {"layer4", 2048}, {"head", 512}}, strides};

  std::printf("bench_losses: crop %lldx%lld (512x1024 x %.3g), batch %lld, %d thread(s), %d iterations (median)\n",
              (long long)h, (long long)w, args.scale, (long long)args.batch, args.threads, args.iters);
  std::printf("  logits (N,C,H,W) = (%lld,%lld,%lld,%lld), label (%lld,%lld,%lld)\n", (long long)args.batch,
              (long long)classes, (long long)h / 8, (long long)w / 8, (long long)args.batch, (long long)h,
              (long long)w);
  for (const auto& [name, c] : student.channels) {
    std::printf("  %-6s student (%lld,%lld,%lld,%lld)  teacher (%lld,%lld,%lld,%lld)\n", name.c_str(),
                (long long)args.batch, (long long)c, (long long)(h / strides[name]), (long long)(w / strides[name]),
                (long long)args.batch, (long long)teacher.channels[name], (long long)(h / strides[name]),
                (long long)(w / strides[name]));
  }

  const std::vector<std::string> head{"head"};
  std::vector<std::pair<std::string, DistillOptions>> cases;
  cases.emplace_back("logit (tau 1)", LogitOptions());
  cases.emplace_back("logit (label res, mask)", LogitOptions().set_resolution("label").set_mask_ignore(true));
  cases.emplace_back("feature layer4 conv1x1", FeatureOptions());
  cases.emplace_back("feature head conv1x1_bn",
                     FeatureOptions().set_student(head).set_teacher(head).set_projector("conv1x1_bn"));
  cases.emplace_back("cwd logits (tau 4)", CwdOptions().set_tau(4));
  cases.emplace_back("cwd head feature", CwdOptions().set_on("feature").set_student(head).set_teacher(head).set_tau(4));
  cases.emplace_back("pairwise head (k 2)", PairwiseOptions().set_student(head).set_teacher(head));
  cases.emplace_back("ifvd head", IfvdOptions().set_student(head).set_teacher(head));
  const std::vector<std::string> layers{"layer1", "layer2", "layer3", "layer4"};
  cases.emplace_back("at layer1..4", AtOptions().set_student(layers).set_teacher(layers));
  cases.emplace_back("dist (tau 1)", DistOptions());

  auto label = torch::randint(classes, {args.batch, h, w}, torch::kLong);
  label.masked_fill_(torch::rand({args.batch, h, w}) < 0.1, ignore);
  auto t_out = random_output(teacher, args.batch, h, w, classes, /*student=*/false);

  // Times fn(student) forward + backward; a fresh student output each iteration so gradients do not accumulate.
  auto time_it = [&](const std::function<torch::Tensor(const ModelOutput&)>& fn) {
    std::vector<double> ms;
    for (int i = 0; i < args.iters + 2; ++i) {
      auto s_out = random_output(student, args.batch, h, w, classes, /*student=*/true);
      auto start = std::chrono::steady_clock::now();
      fn(s_out).backward();
      double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      if (i >= 2) ms.push_back(t);  // two warm-up iterations
    }
    return median(ms);
  };

  std::vector<std::pair<std::string, double>> results;
  double ce_ms = time_it([&](const ModelOutput& s) { return segmentation_ce(s.logits, label, ignore); });
  results.emplace_back("ce (task loss)", ce_ms);
  segkd::losses::Channels sc(student.channels.begin(), student.channels.end());
  segkd::losses::Channels tc(teacher.channels.begin(), teacher.channels.end());
  sc["logits"] = tc["logits"] = classes;
  for (const auto& [name, cfg] : cases) {
    auto term = make_term(cfg, 0, sc, tc, ignore);
    results.emplace_back(name, time_it([&](const ModelOutput& s) { return term->forward(s, t_out, label); }));
  }
  std::map<std::string, double> peer;
  if (args.peer) peer = run_peer(args);

  std::printf("\n%-26s %10s %8s %12s %10s\n", "term (forward+backward)", "segkd ms", "x CE", "PyTorch ms",
              "segkd/PT");
  for (const auto& [name, ms] : results) {
    std::printf("%-26s %10.3f %8.2f", name.c_str(), ms, ms / ce_ms);
    auto it = peer.find(name);
    if (it != peer.end()) {
      std::printf(" %12.3f %10.2f\n", it->second, ms / it->second);
    } else {
      std::printf(" %12s %10s\n", "-", "-");
    }
  }
  return 0;
}
