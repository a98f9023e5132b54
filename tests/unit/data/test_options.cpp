// data/options.h: DataOptions and AugmentOptions on their own — defaults, chained setters, validate() naming the key.
#include <gtest/gtest.h>

#include "common/error.h"
#include "data/options.h"
#include "tests/testing/testing.h"

namespace segkd::data {
namespace {

TEST(DataOptions, DefaultsAndChainedSettersValidate) {
  EXPECT_NO_THROW(DataOptions().validate());
  DataOptions o = DataOptions().set_train({"a.h5"}).set_crop({256, 512}).set_num_classes(5).set_workers(0);
  EXPECT_EQ(o.crop, (IntPair{256, 512}));
  EXPECT_EQ(o.train, std::vector<std::string>{"a.h5"});
  EXPECT_NO_THROW(o.validate());
}

TEST(DataOptions, BadValuesAreRefusedNamingTheKey) {
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_crop({500, 512}).validate(),
                         "data.crop = [500, 512]: each must be a positive multiple of 8");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_num_classes(0).validate(), "data.num_classes = 0: must be >= 1");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_ignore_index(300).validate(), "data.ignore_index = 300");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_scale_range({2.0, 0.5}).validate(), "data.scale_range");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_batch_per_rank(0).validate(), "data.batch_per_rank = 0: must be >= 1");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_prefetch(0).validate(), "data.prefetch");
  SEGKD_EXPECT_THROW_MSG(DataOptions().set_std({1.0, 0.0, 1.0}).validate(), "data.std");
}

TEST(AugmentOptions, TakesItsValuesFromDataAndValidates) {
  DataOptions d = DataOptions().set_crop({64, 32}).set_flip(false).set_ignore_index(7);
  AugmentOptions a = AugmentOptions::from(d);
  EXPECT_EQ(a.crop, (IntPair{64, 32}));
  EXPECT_FALSE(a.flip);
  EXPECT_EQ(a.ignore_index, 7);
  EXPECT_NO_THROW(a.validate());
  SEGKD_EXPECT_THROW_MSG(AugmentOptions().set_crop({0, 8}).validate(), "data.crop = [0, 8]: each must be > 0");
  SEGKD_EXPECT_THROW_MSG(AugmentOptions().set_std({1.0, 1.0, -1.0}).validate("aug"), "aug.std");
}

}  // namespace
}  // namespace segkd::data
