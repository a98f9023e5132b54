// Multi-rank tests of segkd_distributed, run as `mpiexec -n 2` and `-n 3`. Inputs depend on the rank; expected
// values have a closed form (e.g. the sum of rank+1 over N ranks is N(N+1)/2), or are computed by every rank
// itself on the full batch with a single-process reference.
#include <gtest/gtest.h>

#include <fstream>

#include "common/error.h"
#include "common/norm.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/sync_batchnorm.h"
#include "distributed/runtime.h"
#include "tests/testing/bucket_log.h"
#include "tests/testing/testing.h"

namespace segkd::dist {
namespace {

using segkd::testing::tensors_close;

DistributedOptions test_config() {
  DistributedOptions cfg;
  cfg.backend = "mpi";
  cfg.timeout_s = 20;  // a hang fails the test instead of the ctest timeout
  return cfg;
}

class MpiTest : public segkd::testing::Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    comm = make_communicator(test_config(), torch::kCPU);
    rank = comm->rank();
    n = comm->size();
  }
  std::shared_ptr<Communicator> comm;
  int rank = 0, n = 1;
};

TEST_F(MpiTest, TopologyMatchesCommunicator) {
  const Topology& t = topology();
  EXPECT_EQ(t.rank, rank);
  EXPECT_EQ(t.size, n);
  EXPECT_GE(n, 2);
  EXPECT_EQ(t.launcher, "mpirun");
  EXPECT_EQ(t.nodes, 1);  // ctest runs every rank on this machine
  EXPECT_EQ(t.local_size, n);
  EXPECT_EQ(t.local_rank, rank);
  EXPECT_EQ(error_context_rank(), rank);
}

// pattern[i] = i % 5 + 1, so every element of a tensor has a distinct closed form.
torch::Tensor pattern(int64_t size, torch::ScalarType dtype) {
  return torch::arange(size, torch::kLong).remainder(5).add(1).to(dtype);
}

TEST_F(MpiTest, AllReduceClosedFormsForDtypesAndSizes) {
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    for (int64_t size : {1, 7, 1000, 300007}) {
      SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << " size " << size);
      auto p = pattern(size, dtype);
      auto t = p * (rank + 1);
      comm->all_reduce(t, ReduceOp::kSum);
      EXPECT_TRUE(torch::equal(t, p * (n * (n + 1) / 2)));
      t = p * (rank + 1);
      comm->all_reduce(t, ReduceOp::kMax);
      EXPECT_TRUE(torch::equal(t, p * n));
      t = p * (rank + 1);
      comm->all_reduce(t, ReduceOp::kMin);
      EXPECT_TRUE(torch::equal(t, p));
      if (dtype != torch::kLong) {
        t = p * (rank + 1);
        comm->all_reduce(t, ReduceOp::kAverage);
        EXPECT_TRUE(tensors_close(t, p * ((n + 1) / 2.0)));
      }
    }
  }
}

TEST_F(MpiTest, AsyncAllReducesCompleteInAnyWaitOrder) {
  std::vector<torch::Tensor> ts;
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < 6; ++k) {
    ts.push_back(pattern(1000 + 37 * k, torch::kFloat) * (rank + 1) * (k + 1));
    works.push_back(comm->all_reduce_async(ts.back(), ReduceOp::kSum, "bucket " + std::to_string(k)));
  }
  for (int k = 5; k >= 0; --k) works[k]->wait();
  for (int k = 0; k < 6; ++k) {
    EXPECT_TRUE(works[k]->test());
    EXPECT_TRUE(torch::equal(ts[k], pattern(1000 + 37 * k, torch::kFloat) * (n * (n + 1) / 2) * (k + 1)));
  }
}

TEST_F(MpiTest, StagedTensorsNonContiguousAndHalf) {
  auto base = torch::arange(12, torch::kFloat).view({3, 4}) * (rank + 1);
  auto t = base.t();  // non-contiguous view: reduced through a staging copy, written back in place
  ASSERT_FALSE(t.is_contiguous());
  comm->all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(base, torch::arange(12, torch::kFloat).view({3, 4}) * (n * (n + 1) / 2)));
  auto h = torch::full({9}, rank + 1, torch::kHalf);
  comm->all_reduce(h, ReduceOp::kSum);
  EXPECT_TRUE(torch::equal(h, torch::full({9}, n * (n + 1) / 2, torch::kHalf)));
}

TEST_F(MpiTest, BroadcastFromEveryRoot) {
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    for (int root = 0; root < n; ++root) {
      auto t = (torch::arange(1001, torch::kLong) + 10000 * rank).to(dtype);
      comm->broadcast(t, root);
      EXPECT_TRUE(torch::equal(t, (torch::arange(1001, torch::kLong) + 10000 * root).to(dtype)))
          << "root " << root;
    }
  }
  auto f = torch::ones({2});
  SEGKD_EXPECT_THROW_MSG(comm->broadcast(f, n), "broadcast root");
}

TEST_F(MpiTest, AllGatherTensorsAndStrings) {
  for (auto dtype : {torch::kFloat, torch::kLong}) {
    auto t = (torch::arange(6, torch::kLong).view({2, 3}) + 100 * rank).to(dtype);
    auto all = comm->all_gather(t);
    ASSERT_EQ(static_cast<int>(all.size()), n);
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(all[r].sizes(), t.sizes());
      EXPECT_TRUE(torch::equal(all[r], (torch::arange(6, torch::kLong).view({2, 3}) + 100 * r).to(dtype)));
    }
  }
  auto s = comm->all_gather_string(std::string(static_cast<size_t>(rank) * 3, static_cast<char>('a' + rank)));
  ASSERT_EQ(static_cast<int>(s.size()), n);
  for (int r = 0; r < n; ++r)
    EXPECT_EQ(s[r], std::string(static_cast<size_t>(r) * 3, static_cast<char>('a' + r)));
}

TEST_F(MpiTest, BarrierOrdersSideEffects) {
  std::unique_ptr<segkd::testing::TempDir> dir;
  if (rank == 0) dir = std::make_unique<segkd::testing::TempDir>();
  std::string path = comm->all_gather_string(rank == 0 ? dir->file("mark") : "")[0];
  comm->barrier();
  if (rank == 0) segkd::testing::write_text(path, "written before the second barrier");
  comm->barrier();
  EXPECT_TRUE(std::ifstream(path).good()) << path;
  comm->barrier();  // rank 0 removes the directory only after everyone looked
}

TEST_F(MpiTest, DuplicateIsIndependentAndWorks) {
  auto dup = comm->duplicate();
  EXPECT_EQ(dup->size(), n);
  EXPECT_EQ(dup->rank(), rank);
  auto a = torch::full({4}, rank + 1.0);
  auto pending = comm->all_reduce_async(a, ReduceOp::kSum, "outer");
  auto b = torch::full({4}, 2.0 * (rank + 1));
  dup->all_reduce(b, ReduceOp::kSum);
  pending->wait();
  EXPECT_TRUE(torch::equal(a, torch::full({4}, n * (n + 1) / 2.0)));
  EXPECT_TRUE(torch::equal(b, torch::full({4}, n * (n + 1) * 1.0)));
}

// ---- GradReducer ----

struct NetImpl : torch::nn::Module {
  NetImpl() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    n1 = register_module("n1", Norm2d(8));
    c2 = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1).bias(false)));
    n2 = register_module("n2", Norm2d(8));
    fc = register_module("fc", torch::nn::Linear(8, 5));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(n1(c1(x)));
    x = torch::relu(n2(c2(x)));
    return fc(x.mean({2, 3}));
  }
  torch::nn::Conv2d c1{nullptr}, c2{nullptr};
  Norm2d n1{nullptr}, n2{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Net);

TEST_F(MpiTest, ReducerWithSyncBatchNormEqualsFullBatchGradients) {
  torch::manual_seed(7);
  Net ref;
  torch::manual_seed(7);
  Net net;
  convert_sync_batchnorm(*net, comm);
  int synced = 0;
  for_each_norm(*net, [&](Norm2dImpl& nm) { synced += nm.is_sync() ? 1 : 0; });
  EXPECT_EQ(synced, 2);

  DistributedOptions cfg = test_config();
  cfg.first_bucket_mb = 100.0 / (1024 * 1024);  // tiny buckets: several all-reduces overlap backward
  cfg.bucket_mb = 1500.0 / (1024 * 1024);
  GradReducer reducer(comm, net->parameters(), cfg);
  auto log = std::make_shared<segkd::testing::BucketLog>();
  reducer.set_listener(log);
  ASSERT_GE(reducer.num_buckets(), 3u);

  const int64_t per_rank = 2, batch = per_rank * n;
  for (int step = 0; step < 2; ++step) {
    torch::manual_seed(100 + step);  // same global batch on every rank
    auto x = torch::randn({batch, 3, 6, 6});
    auto y = torch::randint(0, 5, {batch}, torch::kLong);

    ref->zero_grad();
    torch::nn::functional::cross_entropy(ref(x), y).backward();

    net->zero_grad();
    log->clear();
    reducer.prepare(true);
    auto xs = x.narrow(0, rank * per_rank, per_rank), ys = y.narrow(0, rank * per_rank, per_rank);
    torch::nn::functional::cross_entropy(net(xs), ys).backward();
    log->mark("backward_end");
    reducer.finish();

    auto pr = ref->named_parameters(), pn = net->named_parameters();
    for (const auto& item : pr) {
      SCOPED_TRACE(item.key());
      ASSERT_TRUE(pn[item.key()].grad().defined());
      EXPECT_TRUE(tensors_close(pn[item.key()].grad(), item.value().grad(), 1e-4, 1e-5));
    }
    auto br = ref->named_buffers(), bn = net->named_buffers();
    for (const auto& item : br) {
      SCOPED_TRACE(item.key());
      EXPECT_TRUE(tensors_close(bn[item.key()].to(torch::kDouble), item.value().to(torch::kDouble), 1e-5, 1e-6));
    }

    // Event log: every bucket started (in bucket order) and finished once; at least one started before backward
    // returned, i.e. communication overlapped backward.
    const auto ev = log->events();
    int64_t end_seq = -1;
    std::vector<int> starts;
    int done = 0;
    int64_t first_start_seq = -1;
    for (size_t seq = 0; seq < ev.size(); ++seq) {
      const auto& e = ev[seq];
      if (e.what == "backward_end") end_seq = static_cast<int64_t>(seq);
      if (e.what == "start") {
        starts.push_back(e.bucket);
        if (first_start_seq < 0) first_start_seq = static_cast<int64_t>(seq);
      }
      if (e.what == "done") ++done;
    }
    ASSERT_GE(end_seq, 0);
    ASSERT_EQ(starts.size(), reducer.num_buckets());
    for (size_t b = 0; b < starts.size(); ++b) EXPECT_EQ(starts[b], static_cast<int>(b));
    EXPECT_EQ(done, static_cast<int>(reducer.num_buckets()));
    EXPECT_LT(first_start_seq, end_seq) << "no bucket started before backward ended";
  }
}

TEST_F(MpiTest, ReducerHandlesUnusedAndRankDependentParameters) {
  auto used = torch::ones({5}, torch::requires_grad());
  auto rank0_only = torch::ones({3}, torch::requires_grad());
  auto unused = torch::ones({4}, torch::requires_grad());
  auto dbl = torch::ones({2}, torch::TensorOptions(torch::kDouble).requires_grad(true));
  DistributedOptions cfg = test_config();
  cfg.first_bucket_mb = 1e-6;  // every parameter its own bucket
  cfg.bucket_mb = 1e-6;
  GradReducer reducer(comm, {used, rank0_only, unused, dbl}, cfg);
  ASSERT_EQ(reducer.num_buckets(), 4u);
  for (int step = 0; step < 2; ++step) {
    for (auto* p : {&used, &rank0_only, &unused, &dbl})
      if (p->grad().defined()) p->mutable_grad().zero_();
    reducer.prepare(true);
    auto loss = (used * (rank + 1)).sum() + (dbl * rank).sum().to(torch::kFloat);
    if (rank == 0) loss = loss + rank0_only.sum() * 3;
    loss.backward();
    reducer.finish();
    EXPECT_TRUE(tensors_close(used.grad(), torch::full({5}, (n + 1) / 2.0)));
    EXPECT_TRUE(tensors_close(rank0_only.grad(), torch::full({3}, 3.0 / n)));
    ASSERT_TRUE(unused.grad().defined()) << "unused parameters get a (zero) gradient on every rank";
    EXPECT_TRUE(torch::equal(unused.grad(), torch::zeros({4})));
    EXPECT_TRUE(tensors_close(dbl.grad(), torch::full({2}, (n - 1) / 2.0, torch::kDouble)));
  }
}

TEST_F(MpiTest, ReducerAccumulatesWithoutCommunicationUntilLastMicroBatch) {
  auto w = torch::ones({7}, torch::requires_grad());
  GradReducer reducer(comm, {w}, test_config());
  auto log = std::make_shared<segkd::testing::BucketLog>();
  reducer.set_listener(log);
  const int k = 3;
  for (int m = 0; m < k; ++m) {
    reducer.prepare(/*sync=*/m == k - 1);
    (w * static_cast<double>((rank + 1) * (m + 1))).sum().backward();
    if (m < k - 1) {
      reducer.finish();  // no-op on an accumulation micro-batch
      EXPECT_TRUE(log->events().empty()) << "micro-batch " << m << " communicated";
      // Still the local sum of this rank's micro-batches.
      EXPECT_TRUE(tensors_close(w.grad(), torch::full({7}, (rank + 1.0) * (m + 1) * (m + 2) / 2)));
    }
  }
  reducer.finish();
  EXPECT_TRUE(tensors_close(w.grad(), torch::full({7}, 6.0 * (n + 1) / 2)));
  EXPECT_FALSE(log->events().empty());
}

// A parameter used on one rank only, in a model whose SyncBatchNorm also communicates during backward: the
// bucket holding it starts during backward on rank 0 but only in finish() elsewhere. Normalisation collectives run
// on their own duplicate communicator, so the differing order cannot cross-match collectives (it would hang or
// corrupt); every rank ends with identical, averaged gradients.
TEST_F(MpiTest, RankDependentUsageWithSyncBatchNormStaysConsistent) {
  torch::manual_seed(21);
  Net net;
  torch::nn::Linear extra(5, 5);
  convert_sync_batchnorm(*net, comm);
  auto params = net->parameters();
  for (auto& p : extra->parameters()) params.push_back(p);
  DistributedOptions cfg = test_config();
  cfg.first_bucket_mb = 1e-6;
  cfg.bucket_mb = 1e-6;  // one parameter per bucket: the extra head's buckets come first
  GradReducer reducer(comm, params, cfg);
  torch::manual_seed(22 + rank);
  auto x = torch::randn({2, 3, 6, 6});
  reducer.prepare(true);
  auto out = net(x);
  if (rank == 0) out = extra(out);
  out.square().mean().backward();
  reducer.finish();
  for (const auto& p : params) {
    ASSERT_TRUE(p.grad().defined());
    auto all = comm->all_gather(p.grad());
    for (int r = 1; r < n; ++r) EXPECT_TRUE(torch::equal(all[r], all[0])) << "rank " << r << " differs";
  }
  EXPECT_GT(extra->weight.grad().abs().sum().item<double>(), 0) << "rank 0's gradient must reach every rank";
}

// ---- SyncBatchNorm against BatchNorm over the concatenated global batch ----

TEST_F(MpiTest, SyncBatchNormEqualsGlobalBatchNorm) {
  const int64_t per_rank = 3, c = 4;
  torch::manual_seed(11);
  auto x = torch::randn({per_rank * n, c, 5, 6}) * 1.5 + 0.5;
  auto g = torch::randn({per_rank * n, c, 5, 6});
  auto w = torch::rand({c}) + 0.5, b = torch::randn({c});
  Norm2d sync(c), ref(c);
  {
    torch::NoGradGuard ng;
    for (auto* m : {&sync, &ref}) {
      (*m)->weight.copy_(w);
      (*m)->bias.copy_(b);
    }
  }
  convert_sync_batchnorm(*sync, comm);
  ASSERT_TRUE(sync->is_sync());

  auto xr = x.clone().requires_grad_(true);
  auto xs = x.narrow(0, rank * per_rank, per_rank).clone().requires_grad_(true);
  auto yr = ref(xr);
  auto ys = sync(xs);
  EXPECT_TRUE(tensors_close(ys, yr.narrow(0, rank * per_rank, per_rank), 1e-5, 1e-5));
  EXPECT_TRUE(tensors_close(sync->running_mean, ref->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(tensors_close(sync->running_var, ref->running_var, 1e-5, 1e-6));

  (yr * g).sum().backward();
  (ys * g.narrow(0, rank * per_rank, per_rank)).sum().backward();
  EXPECT_TRUE(tensors_close(xs.grad(), xr.grad().narrow(0, rank * per_rank, per_rank), 1e-4, 1e-5));
  // Weight/bias gradients are per-rank partial sums; over all ranks they are the global ones.
  auto gw = sync->weight.grad().clone(), gb = sync->bias.grad().clone();
  comm->all_reduce(gw, ReduceOp::kSum);
  comm->all_reduce(gb, ReduceOp::kSum);
  EXPECT_TRUE(tensors_close(gw, ref->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(tensors_close(gb, ref->bias.grad(), 1e-4, 1e-5));
}

// ---- start-up agreement ----

TEST_F(MpiTest, BroadcastModuleMakesRanksIdentical) {
  torch::manual_seed(1000 + rank);  // different weights per rank
  Net net;
  {
    torch::NoGradGuard ng;
    net->n1->running_mean.fill_(rank);
  }
  auto before = comm->all_gather_string(module_checksum(*net));
  EXPECT_NE(before[0], before[1]);
  auto root_fc = comm->all_gather(net->fc->weight.detach())[0];
  broadcast_module(*net, *comm);
  auto after = comm->all_gather_string(module_checksum(*net));
  for (int r = 0; r < n; ++r) EXPECT_EQ(after[r], before[0]) << "rank " << r;
  EXPECT_TRUE(torch::equal(net->fc->weight, root_fc));
  EXPECT_TRUE(torch::equal(net->n1->running_mean, torch::zeros({8})));
  EXPECT_NO_THROW(check_agreement(*comm, "0123456789abcdef", *net));
}

TEST_F(MpiTest, MismatchedConfigHashThrowsOnEveryRank) {
  torch::manual_seed(3);
  Net net;
  std::string hash = rank == n - 1 ? "ffffeeeeddddcccc" : "a1b2c3d4e5f60718";
  try {
    check_agreement(*comm, hash, *net);
    ADD_FAILURE() << "no error on rank " << rank;
  } catch (const DistributedError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("config hash differs: rank 0 a1b2c3d4e5f60718, rank " + std::to_string(n - 1) +
                       " ffffeeeeddddcccc"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("parameter checksum"), std::string::npos) << msg;
  }
}

TEST_F(MpiTest, MismatchedWeightsThrowOnEveryRank) {
  torch::manual_seed(3);
  Net net;
  if (rank == 1) {
    torch::NoGradGuard ng;
    net->fc->bias[0].add_(1e-3);
  }
  try {
    check_agreement(*comm, "same", *net);
    ADD_FAILURE() << "no error on rank " << rank;
  } catch (const DistributedError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("parameter checksum differs: rank 0 "), std::string::npos) << msg;
    EXPECT_NE(msg.find(", rank 1 "), std::string::npos) << msg;
    if (n > 2) EXPECT_EQ(msg.find(", rank 2 "), std::string::npos) << "rank 2 agrees with rank 0: " << msg;
  }
}

}  // namespace
}  // namespace segkd::dist

int main(int argc, char** argv) {
  segkd::dist::init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  segkd::dist::finalize();
  return rc;
}
