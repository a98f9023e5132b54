#pragma once
/// models/ options: one segmentation network (the `[student]` and `[teacher]` tables).
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_schema.h"

namespace segkd::models {

/// A segmentation network (student or teacher): `ModelOptions().set_arch("deeplabv3").set_backbone("resnet50_v1c")`.
struct ModelOptions {
  using Self = ModelOptions;
  SEGKD_OPTION(std::string, arch, "pspnet");            ///< pspnet | deeplabv3
  SEGKD_OPTION(std::string, backbone, "resnet18_v1c");  ///< resnet{18,34,50,101}_v1c | efficientnet_b0
  SEGKD_OPTION(std::string, pretrained);                ///< backbone-only ImageNet weights (.pth), optional
  SEGKD_OPTION(std::string, weights);                   ///< whole-model weights (.pth or segkd checkpoint), optional
  SEGKD_OPTION(bool, aux_head, true);
  SEGKD_OPTION(double, dropout, 0.1);                   ///< before conv_seg in each head
  SEGKD_OPTION(int64_t, output_stride, 8);              ///< 8 | 16
  SEGKD_OPTION(bool, sync_bn, true);                    ///< student only: SyncBatchNorm when world > 1
  // teacher only
  SEGKD_OPTION(bool, concurrent, false);  ///< teacher forward on a worker thread (and a second CUDA stream on GPU) (README)
  SEGKD_OPTION(bool, fold_bn, true);      ///< fold BatchNorm into the preceding convolution
  /// fp32 | int8 (CPU, quantised kernels) | fp16 | bf16 (CUDA autocast); "" = automatic: int8 on the CPU for a
  /// ResNetV1c teacher, run.precision on CUDA. The student always follows run.precision (train/ checks that).
  SEGKD_OPTION(std::string, precision);
  SEGKD_OPTION(int64_t, calibration_batches, 8);  ///< int8: training batches whose activation ranges set the scales

  /// The table's keys in canonical order.
  static const std::vector<Field<ModelOptions>>& fields();
  /// Throws ConfigError naming `prefix`.KEY for a value out of range ("student.output_stride = 4: must be 8 or 16").
  void validate(const std::string& prefix = "student") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

}  // namespace segkd::models
