// int8 teacher calibration under MPI: every rank ends with the same activation ranges — the min of the ranks'
// minima and the max of their maxima — though each rank calibrated on different batches.
#include <gtest/gtest.h>

#include "distributed/communicator.h"
#include "distributed/runtime.h"
#include "models/int8.h"
#include "models/segmentor.h"
#include "tests/testing/testing.h"
#include "train/teacher.h"

namespace segkd {
namespace {

std::shared_ptr<dist::Communicator> mpi() {
  dist::DistributedOptions dc;
  dc.backend = "mpi";
  dc.timeout_s = 120;
  return dist::make_communicator(dc, torch::kCPU);
}

TEST(Int8Calibration, RangeReductionIsMinOfMinimaAndMaxOfMaxima) {
  auto comm = mpi();
  const int rank = comm->rank(), n = comm->size();
  // Rank r saw [-(r + 1), 2r] at point 0 and [r, 10 - r] at point 1.
  auto ranges = torch::tensor({-(rank + 1.0), 2.0 * rank, 1.0 * rank, 10.0 - rank}, torch::kDouble).view({2, 2});
  train::all_reduce_ranges(ranges, *comm);
  EXPECT_DOUBLE_EQ(ranges[0][0].item<double>(), -n);
  EXPECT_DOUBLE_EQ(ranges[0][1].item<double>(), 2.0 * (n - 1));
  EXPECT_DOUBLE_EQ(ranges[1][0].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(ranges[1][1].item<double>(), 10.0);
}

TEST(Int8Calibration, EveryRankQuantisesIdentically) {
  auto comm = mpi();
  const int rank = comm->rank();
  models::ModelOptions mc;
  torch::manual_seed(5);  // the same teacher weights on every rank
  auto model = models::build_model(mc, 4);
  models::prepare_teacher(model, /*fold_bn=*/true);
  models::Int8Segmentor q(model);
  torch::manual_seed(100 + rank);  // different calibration batches per rank
  q.observe(torch::randn({1, 3, 32, 32}) * (1 + rank));
  auto local = q.ranges();
  auto ranges = local.clone();
  train::all_reduce_ranges(ranges, *comm);
  q.set_ranges(ranges);
  // The reduced ranges contain this rank's own, and are bitwise equal on every rank.
  EXPECT_TRUE((ranges.select(1, 0) <= local.select(1, 0)).all().item<bool>());
  EXPECT_TRUE((ranges.select(1, 1) >= local.select(1, 1)).all().item<bool>());
  auto gathered = comm->all_gather(ranges);
  for (const auto& other : gathered) EXPECT_TRUE(torch::equal(other, ranges));
  // Hence the same int8 outputs everywhere for the same input.
  torch::manual_seed(7);
  auto out = q.forward(torch::randn({1, 3, 32, 32}), {}).logits.contiguous();
  for (const auto& other : comm->all_gather(out)) EXPECT_TRUE(torch::equal(other, out));
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
