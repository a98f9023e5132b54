// models/ options: keys and validation (options.h).
#include "models/options.h"

namespace segkd::models {

const std::vector<Field<ModelOptions>>& ModelOptions::fields() {
  using S = ModelOptions;
  static const std::vector<Field<S>> f{
      {"arch", &S::arch},         {"backbone", &S::backbone}, {"pretrained", &S::pretrained},
      {"weights", &S::weights},   {"aux_head", &S::aux_head}, {"dropout", &S::dropout},
      {"output_stride", &S::output_stride}, {"sync_bn", &S::sync_bn}, {"concurrent", &S::concurrent},
      {"fold_bn", &S::fold_bn},   {"precision", &S::precision}, {"calibration_batches", &S::calibration_batches}};
  return f;
}

void ModelOptions::validate(const std::string& prefix) const {
  validate_standalone(*this, prefix);
}

void ModelOptions::validate(const std::string& p, const Checker& check) const {
  check.one_of(arch, {"pspnet", "deeplabv3"}, p + ".arch");
  check.one_of(backbone, {"resnet18_v1c", "resnet34_v1c", "resnet50_v1c", "resnet101_v1c", "efficientnet_b0"},
               p + ".backbone");
  check(dropout >= 0 && dropout < 1, p + ".dropout", "must be in [0, 1)");
  check(output_stride == 8 || output_stride == 16, p + ".output_stride", "must be 8 or 16");
  check(precision.empty() || precision == "fp32" || precision == "int8" || precision == "fp16" || precision == "bf16",
        p + ".precision", "must be one of fp32|int8|fp16|bf16 (or unset: int8 on CPU, run.precision on CUDA)");
  check(calibration_batches >= 1, p + ".calibration_batches", "must be >= 1");
}

}  // namespace segkd::models
