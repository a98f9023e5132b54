// N ranks × B/N samples with SyncBatchNorm and the GradReducer train exactly like one process on all B samples:
// the real PSPNet-R18, in double precision (in float, rounding flips near-zero ReLUs and the chaotic early
// iterations amplify that; see the e2e float test), over several SGD steps. Every rank computes the single-process
// reference itself on the full batch.
#include <gtest/gtest.h>

#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/sync_batchnorm.h"
#include "distributed/runtime.h"
#include "models/segmentor.h"
#include "tests/testing/testing.h"

namespace segkd {
namespace {

namespace F = torch::nn::functional;

torch::Tensor seg_loss(models::Segmentor& m, const torch::Tensor& x, const torch::Tensor& y) {
  auto out = m->forward(x);
  auto up = [&](const torch::Tensor& t) {
    return F::interpolate(t, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
  };
  return F::cross_entropy(up(out.logits), y) + 0.4 * F::cross_entropy(up(out.aux_logits), y);
}

TEST(TrainParity, RanksTimesBatchEqualsOneProcessFullBatch) {
  dist::DistributedOptions dc;
  dc.backend = "mpi";
  dc.timeout_s = 120;
  dc.bucket_mb = 4;  // several buckets
  auto comm = dist::make_communicator(dc, torch::kCPU);
  const int rank = comm->rank(), world = comm->size();
  const int64_t global = 6, per = global / world;
  ASSERT_EQ(global % world, 0);

  models::ModelOptions mc;
  mc.dropout = 0;
  auto make = [&] {
    torch::manual_seed(11);
    auto m = models::build_model(mc, 5);
    m->to(torch::kDouble);
    m->train();
    return m;
  };
  auto ref = make();
  auto net = make();
  dist::convert_sync_batchnorm(*net, comm);
  dist::GradReducer reducer(comm, net->parameters(), dc);
  torch::optim::SGD ref_opt(ref->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(5e-4));
  torch::optim::SGD net_opt(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(5e-4));

  for (int step = 0; step < 5; ++step) {
    torch::manual_seed(100 + step);  // same global batch on every rank
    auto x = torch::randn({global, 3, 40, 40}, torch::kDouble);
    auto y = torch::randint(0, 5, {global, 40, 40}, torch::kLong);

    ref_opt.zero_grad();
    auto ref_loss = seg_loss(ref, x, y);
    ref_loss.backward();

    net_opt.zero_grad();
    reducer.prepare(true);
    auto net_loss = seg_loss(net, x.narrow(0, rank * per, per), y.narrow(0, rank * per, per));
    net_loss.backward();
    reducer.finish();
    auto mean_loss = net_loss.detach().clone();
    comm->all_reduce(mean_loss, dist::ReduceOp::kAverage);

    EXPECT_NEAR(mean_loss.item<double>(), ref_loss.item<double>(), 1e-9) << "step " << step;
    auto rp = ref->named_parameters(), np = net->named_parameters();
    for (auto& kv : rp) {
      ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
      EXPECT_TRUE(testing::tensors_close(np[kv.key()].grad(), kv.value().grad(), 1e-7, 1e-12))
          << kv.key() << " at step " << step;
    }
    ref_opt.step();
    net_opt.step();
  }
  // Running statistics follow the global batch too.
  auto rb = ref->named_buffers(), nb = net->named_buffers();
  for (auto& kv : rb) {
    if (kv.key().find("running_") == std::string::npos) continue;
    EXPECT_TRUE(testing::tensors_close(nb[kv.key()], kv.value(), 1e-7, 1e-12)) << kv.key();
  }
}

}  // namespace
}  // namespace segkd

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  segkd::dist::init(&argc, &argv);
  at::set_num_threads(1);
  int rc = RUN_ALL_TESTS();
  segkd::dist::finalize();
  return rc;
}
