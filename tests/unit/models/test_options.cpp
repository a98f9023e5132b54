// models/options.h: ModelOptions on its own — defaults, chained setters, validate() naming the key.
#include <gtest/gtest.h>

#include "common/error.h"
#include "models/options.h"
#include "tests/testing/testing.h"

namespace segkd::models {
namespace {

TEST(ModelOptions, DefaultsAndChainedSettersValidate) {
  EXPECT_NO_THROW(ModelOptions().validate());
  ModelOptions o = ModelOptions().set_arch("deeplabv3").set_backbone("resnet50_v1c").set_output_stride(16);
  EXPECT_EQ(o.arch, "deeplabv3");
  EXPECT_EQ(o.backbone, "resnet50_v1c");
  EXPECT_EQ(o.output_stride, 16);
  EXPECT_NO_THROW(o.validate("teacher"));
  EXPECT_NO_THROW(ModelOptions().set_precision("int8").validate("teacher"));
}

TEST(ModelOptions, BadValuesAreRefusedNamingTheKey) {
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_arch("unet").validate(), "student.arch = \"unet\": must be one of");
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_backbone("resnet152").validate("teacher"), "teacher.backbone");
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_dropout(1.0).validate(), "student.dropout = 1.0: must be in [0, 1)");
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_output_stride(4).validate(), "student.output_stride = 4: must be 8 or 16");
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_precision("int4").validate("teacher"), "teacher.precision");
  SEGKD_EXPECT_THROW_MSG(ModelOptions().set_calibration_batches(0).validate("teacher"),
                         "teacher.calibration_batches = 0: must be >= 1");
  EXPECT_THROW(ModelOptions().set_output_stride(32).validate(), ConfigError);
}

}  // namespace
}  // namespace segkd::models
