// Single-process tests of segkd_distributed: world size 1 (MPI singleton), bucket layout, the SyncBatchNorm math
// against torch::batch_norm, checksums and error handling. Multi-rank behaviour is in tests/mpi/distributed.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/env.h"
#include "common/error.h"
#include "common/norm.h"
#include "distributed/agreement.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/sync_batchnorm.h"
#include "distributed/runtime.h"
#include "tests/testing/bucket_log.h"
#include "tests/testing/testing.h"

namespace segkd::dist {
namespace {

using segkd::testing::tensors_close;

class MpiEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { finalize(); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

DistributedOptions mpi_config(double timeout_s = 30) {
  DistributedOptions cfg;
  cfg.backend = "mpi";
  cfg.timeout_s = timeout_s;
  return cfg;
}

class DistributedTest : public segkd::testing::Seeded {};

TEST_F(DistributedTest, InitWithoutLauncherIsASingleton) {
  const Topology& t = init(nullptr, nullptr);
  EXPECT_TRUE(initialized());
  EXPECT_EQ(t.rank, 0);
  EXPECT_EQ(t.size, 1);
  EXPECT_EQ(t.local_rank, 0);
  EXPECT_EQ(t.local_size, 1);
  EXPECT_EQ(t.nodes, 1);
  EXPECT_FALSE(t.host.empty());
  if (std::getenv(env::kOmpiRank) == nullptr && std::getenv(env::kSlurmProcId) == nullptr)
    EXPECT_EQ(t.launcher, "singleton");
  EXPECT_EQ(&init(nullptr, nullptr), &topology()) << "init must be idempotent";
  EXPECT_EQ(error_context_rank(), 0);
}

TEST_F(DistributedTest, RunGuardedReturnsBodyCodeAndReportsExceptions) {
  init(nullptr, nullptr);
  EXPECT_EQ(run_guarded([] { return 7; }), 7);
  ::testing::internal::CaptureStderr();
  int rc = run_guarded([]() -> int { throw ConfigError("bad key x.y in a.toml"); });
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("segkd: error on rank 0 ("), std::string::npos) << err;
  EXPECT_NE(err.find("bad key x.y in a.toml"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
}

TEST_F(DistributedTest, SizeOneCollectivesAreIdentity) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  ASSERT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->backend(), "mpi");
  EXPECT_DOUBLE_EQ(comm->timeout_s(), 30);
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    auto t = torch::arange(13, dtype);
    auto expected = t.clone();
    comm->all_reduce(t, ReduceOp::kSum);
    EXPECT_TRUE(torch::equal(t, expected));
    comm->all_reduce(t, ReduceOp::kMax);
    EXPECT_TRUE(torch::equal(t, expected));
    comm->broadcast(t, 0);
    EXPECT_TRUE(torch::equal(t, expected));
    auto g = comm->all_gather(t);
    ASSERT_EQ(g.size(), 1u);
    EXPECT_TRUE(torch::equal(g[0], expected));
  }
  auto f = torch::rand({4, 3});
  auto expected = f.clone();
  comm->all_reduce_async(f, ReduceOp::kAverage, "t")->wait();
  EXPECT_TRUE(tensors_close(f, expected));
  EXPECT_EQ(comm->all_gather_string("hello"), std::vector<std::string>{"hello"});
  EXPECT_EQ(comm->all_gather_string(""), std::vector<std::string>{""});
  comm->barrier();
}

TEST_F(DistributedTest, MisuseThrowsNamedErrors) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  auto ints = torch::arange(4, torch::kLong);
  SEGKD_EXPECT_THROW_MSG(comm->all_reduce(ints, ReduceOp::kAverage), "floating-point");
  auto f = torch::ones({2});
  SEGKD_EXPECT_THROW_MSG(comm->broadcast(f, 1), "broadcast root 1");
  auto cf = torch::ones({2}, torch::kComplexFloat);
  SEGKD_EXPECT_THROW_MSG(comm->all_reduce(cf, ReduceOp::kSum), "unsupported dtype");

  DistributedOptions bad = mpi_config();
  bad.backend = "gloo";
  EXPECT_THROW(make_communicator(bad, torch::kCPU), ConfigError);
  SEGKD_EXPECT_THROW_MSG(make_communicator(bad, torch::kCPU), "distributed.backend");
  bad.backend = "nccl";  // never usable here: no CUDA device (or not built)
  EXPECT_THROW(make_communicator(bad, torch::kCPU), ConfigError);
  bad = mpi_config(0);
  SEGKD_EXPECT_THROW_MSG(make_communicator(bad, torch::kCPU), "distributed.timeout_s");
}

TEST_F(DistributedTest, AutoBackendOnCpuIsMpi) {
  DistributedOptions cfg;
  EXPECT_EQ(make_communicator(cfg, torch::kCPU)->backend(), "mpi");
  if (cuda_device_count() == 0) EXPECT_TRUE(local_device().is_cpu());
  else EXPECT_EQ(local_device(), torch::Device(torch::kCUDA, 0));
}

TEST_F(DistributedTest, NcclSkipsWithoutDevice) {
  if (!nccl_built()) GTEST_SKIP() << "NCCL backend not built";
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: NCCL communicator not exercised";
  DistributedOptions cfg = mpi_config();
  cfg.backend = "nccl";
  auto comm = make_communicator(cfg, torch::Device(torch::kCUDA, 0));
  auto t = torch::ones({5}, torch::Device(torch::kCUDA, 0));
  comm->all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::ones({5})));
}

TEST_F(DistributedTest, BucketsFollowReverseOrderAndCaps) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  std::vector<torch::Tensor> params;
  for (int64_t n : {100, 200, 300, 400, 2000}) params.push_back(torch::zeros({n}, torch::requires_grad()));
  params.push_back(torch::zeros({10}));  // no grad: skipped
  constexpr double kMiB = 1024.0 * 1024.0;
  DistributedOptions cfg = mpi_config();
  cfg.first_bucket_mb = 2000 / kMiB;  // bytes: 400 800 1200 1600 8000
  cfg.bucket_mb = 2500 / kMiB;
  GradReducer reducer(comm, params, cfg);
  // Reverse order: p4 (8000 B, larger than any cap: alone), then p3 (1600) + p2 (1200) = 2800 > 2500 -> p3 alone,
  // p2 + p1 + p0 = 2400 <= 2500.
  ASSERT_EQ(reducer.num_buckets(), 3u);
  EXPECT_EQ(reducer.bucket_params(0), (std::vector<size_t>{4}));
  EXPECT_EQ(reducer.bucket_params(1), (std::vector<size_t>{3}));
  EXPECT_EQ(reducer.bucket_params(2), (std::vector<size_t>{2, 1, 0}));
  EXPECT_EQ(reducer.bucket_bytes(2), 2400);
  EXPECT_THROW(reducer.bucket_params(3), Error);

  cfg.first_bucket_mb = 2000 / kMiB;
  cfg.bucket_mb = 1e6;
  params.pop_back();
  params.erase(params.begin() + 4);
  GradReducer wide(comm, params, cfg);  // first bucket: p3 alone (1600 + 1200 > 2000); then all the rest
  ASSERT_EQ(wide.num_buckets(), 2u);
  EXPECT_EQ(wide.bucket_params(0), (std::vector<size_t>{3}));
  EXPECT_EQ(wide.bucket_params(1), (std::vector<size_t>{2, 1, 0}));

  auto dbl = torch::zeros({3}, torch::TensorOptions(torch::kDouble).requires_grad(true));
  GradReducer mixed(comm, {params[0], dbl, params[1]}, cfg);  // dtype change closes a bucket
  EXPECT_EQ(mixed.num_buckets(), 3u);

  cfg.bucket_mb = 0;
  EXPECT_THROW(GradReducer(comm, params, cfg), ConfigError);
}

TEST_F(DistributedTest, SizeOneReducerLeavesGradientsAlone) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  auto w = torch::randn({6}, torch::requires_grad());
  GradReducer reducer(comm, {w}, mpi_config());
  auto log = std::make_shared<segkd::testing::BucketLog>();
  reducer.set_listener(log);
  reducer.prepare(true);
  (w * w).sum().backward();
  log->mark("backward_end");
  reducer.finish();
  EXPECT_TRUE(tensors_close(w.grad(), 2 * w.detach()));
  ASSERT_EQ(log->events().size(), 1u);  // size 1: no bucket is ever reduced
  EXPECT_EQ(log->events()[0].what, "backward_end");
  SEGKD_EXPECT_THROW_MSG(reducer.finish(), "finish() called twice without prepare()");
  reducer.prepare(/*sync=*/false);
  EXPECT_NO_THROW(reducer.finish());
}

// SyncBatchNorm at world size 1 must be exactly BatchNorm: forward, running statistics and every gradient.
TEST_F(DistributedTest, SyncBatchNormMathMatchesBatchNorm) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  auto opts = torch::TensorOptions(torch::kDouble);
  Norm2d sync(4), ref(4);
  sync->to(torch::kDouble);
  ref->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    auto w = torch::rand({4}, opts) + 0.5, b = torch::randn({4}, opts);
    sync->weight.copy_(w);
    ref->weight.copy_(w);
    sync->bias.copy_(b);
    ref->bias.copy_(b);
  }
  sync->set_sync(make_sync_batchnorm_fn(comm));
  auto x = (torch::randn({3, 4, 5, 6}, opts) * 2 + 1).requires_grad_(true);
  auto xr = x.detach().clone().requires_grad_(true);
  auto g = torch::randn({3, 4, 5, 6}, opts);
  for (int step = 0; step < 2; ++step) {
    auto y = sync(x), yr = ref(xr);
    EXPECT_TRUE(tensors_close(y, yr, 1e-10, 1e-10));
    (y * g).sum().backward();
    (yr * g).sum().backward();
  }
  EXPECT_TRUE(tensors_close(sync->running_mean, ref->running_mean, 1e-10, 1e-12));
  EXPECT_TRUE(tensors_close(sync->running_var, ref->running_var, 1e-10, 1e-12));
  EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), 2);
  EXPECT_TRUE(tensors_close(x.grad(), xr.grad(), 1e-9, 1e-10));
  EXPECT_TRUE(tensors_close(sync->weight.grad(), ref->weight.grad(), 1e-9, 1e-10));
  EXPECT_TRUE(tensors_close(sync->bias.grad(), ref->bias.grad(), 1e-9, 1e-10));

  auto bad = torch::randn({2, 3, 4, 4}, opts);
  SEGKD_EXPECT_THROW_MSG(sync(bad), "SyncBatchNorm: expected input [N, 4");
  auto single = torch::randn({1, 4, 1, 1}, opts);
  SEGKD_EXPECT_THROW_MSG(sync(single), "more than 1 value per channel");
}

TEST_F(DistributedTest, ConvertIsNoOpAtSizeOne) {
  auto comm = make_communicator(mpi_config(), torch::kCPU);
  torch::nn::Sequential seq(torch::nn::Conv2d(3, 4, 1), Norm2d(4));
  convert_sync_batchnorm(*seq, comm);
  int norms = 0;
  for_each_norm(*seq, [&](Norm2dImpl& n) {
    ++norms;
    EXPECT_FALSE(n.is_sync());
  });
  EXPECT_EQ(norms, 1);
}

TEST_F(DistributedTest, ChecksumSeesEveryBitAndAgreementPassesAlone) {
  torch::nn::Sequential a(torch::nn::Linear(4, 3), Norm2d(3));
  torch::nn::Sequential b(torch::nn::Linear(4, 3), Norm2d(3));
  EXPECT_NE(module_checksum(*a), module_checksum(*b));  // different random init
  {
    torch::NoGradGuard g;
    auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  EXPECT_EQ(module_checksum(*a), module_checksum(*b));
  EXPECT_EQ(module_checksum(*a).size(), 16u);
  {
    torch::NoGradGuard g;
    auto rm = b->named_buffers()["1.running_mean"];
    rm.view(torch::kInt)[0].bitwise_xor_(1);  // flip the lowest bit of one buffer value
  }
  EXPECT_NE(module_checksum(*a), module_checksum(*b));

  auto comm = make_communicator(mpi_config(), torch::kCPU);
  EXPECT_NO_THROW(check_agreement(*comm, "abc", *a));
  EXPECT_NO_THROW(broadcast_module(*a, *comm));
}

TEST(CommandLineAgreement, NamesTheFirstDifferingArgument) {
  EXPECT_EQ(describe_argument_difference({"train", "a.toml"}, 0, {"train", "a.toml"}, 1), "");
  EXPECT_EQ(describe_argument_difference({"train", "a.toml"}, 0, {"eval", "a.toml"}, 2),
            "argument 1: 'train' on rank 0, 'eval' on rank 2");
  EXPECT_EQ(describe_argument_difference({"train", "a.toml", "--resume", "auto"}, 0, {"train", "a.toml"}, 1),
            "argument 3: '--resume' on rank 0, nothing on rank 1");
  EXPECT_EQ(describe_argument_difference({"train", "a.toml", "--set", "optimizer.lr=0.1"}, 0,
                                         {"train", "a.toml", "--set", "optimizer.lr=0.2"}, 1),
            "argument 4: 'optimizer.lr=0.1' on rank 0, 'optimizer.lr=0.2' on rank 1");
}

TEST(Device, OneRuleAsksLibTorchNotOnlyTheCudaRuntime) {
  // A GPU node with a CPU-only LibTorch: LibTorch says no, whatever the device count.
  EXPECT_TRUE(choose_device(/*torch_cuda_available=*/false, /*cuda_devices=*/4, /*local_rank=*/1).is_cpu());
  EXPECT_TRUE(choose_device(/*torch_cuda_available=*/true, /*cuda_devices=*/0, /*local_rank=*/0).is_cpu());
  EXPECT_EQ(choose_device(/*torch_cuda_available=*/true, /*cuda_devices=*/2, /*local_rank=*/3),
            torch::Device(torch::kCUDA, 1));
  EXPECT_EQ(choose_device(/*torch_cuda_available=*/true, /*cuda_devices=*/4, /*local_rank=*/0),
            torch::Device(torch::kCUDA, 0));
  // This machine: local_device() follows LibTorch's own answer.
  EXPECT_EQ(local_device().is_cuda(), torch::cuda::is_available());
}

}  // namespace
}  // namespace segkd::dist
