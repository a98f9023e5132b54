// distributed/options.h: DistributedOptions on its own — defaults, chained setters, validate() naming the key.
#include <gtest/gtest.h>

#include "common/error.h"
#include "distributed/options.h"
#include "tests/testing/testing.h"

namespace segkd::dist {
namespace {

TEST(DistributedOptions, DefaultsAndChainedSettersValidate) {
  EXPECT_NO_THROW(DistributedOptions().validate());
  DistributedOptions o = DistributedOptions().set_backend("mpi").set_bucket_mb(8).set_timeout_s(30);
  EXPECT_EQ(o.backend, "mpi");
  EXPECT_DOUBLE_EQ(o.bucket_mb, 8);
  EXPECT_NO_THROW(o.validate());
}

TEST(DistributedOptions, BadValuesAreRefusedNamingTheKey) {
  SEGKD_EXPECT_THROW_MSG(DistributedOptions().set_backend("gloo").validate(),
                         "distributed.backend = \"gloo\": must be one of auto|mpi|nccl");
  SEGKD_EXPECT_THROW_MSG(DistributedOptions().set_bucket_mb(0).validate(), "distributed.bucket_mb = 0.0: must be > 0");
  SEGKD_EXPECT_THROW_MSG(DistributedOptions().set_first_bucket_mb(-1).validate(), "distributed.first_bucket_mb");
  SEGKD_EXPECT_THROW_MSG(DistributedOptions().set_timeout_s(0).validate(), "distributed.timeout_s");
}

}  // namespace
}  // namespace segkd::dist
