// data/ options: keys and validation (options.h).
#include "data/options.h"

namespace segkd::data {
namespace {

bool positive_multiple_of_8(int64_t v) { return v > 0 && v % 8 == 0; }

}  // namespace

const std::vector<Field<DataOptions>>& DataOptions::fields() {
  using S = DataOptions;
  static const std::vector<Field<S>> f{
      {"train", &S::train},         {"val", &S::val},
      {"num_classes", &S::num_classes}, {"ignore_index", &S::ignore_index},
      {"crop", &S::crop},           {"scale_range", &S::scale_range},
      {"flip", &S::flip},           {"photometric", &S::photometric},
      {"batch_per_rank", &S::batch_per_rank}, {"workers", &S::workers},
      {"prefetch", &S::prefetch},   {"mean", &S::mean},
      {"std", &S::std}};
  return f;
}

void DataOptions::validate(const std::string& prefix) const {
  validate_standalone(*this, prefix);
}

void DataOptions::validate(const std::string& p, const Checker& check) const {
  check(num_classes >= 1, p + ".num_classes", "must be >= 1");
  check(ignore_index >= 0 && ignore_index <= 255, p + ".ignore_index", "must be in [0, 255]");
  check(positive_multiple_of_8(crop[0]) && positive_multiple_of_8(crop[1]), p + ".crop",
        "each must be a positive multiple of 8");
  check(scale_range[0] > 0 && scale_range[0] <= scale_range[1], p + ".scale_range",
        "must be positive and increasing ([min, max], min <= max)");
  check(batch_per_rank >= 1, p + ".batch_per_rank", "must be >= 1");
  check(workers >= 0, p + ".workers", "must be >= 0");
  check(prefetch >= 1, p + ".prefetch", "must be >= 1");
  check(std[0] > 0 && std[1] > 0 && std[2] > 0, p + ".std", "each must be > 0");
}

AugmentOptions AugmentOptions::from(const DataOptions& d) {
  AugmentOptions o;
  o.crop = d.crop;
  o.scale_range = d.scale_range;
  o.flip = d.flip;
  o.photometric = d.photometric;
  o.mean = d.mean;
  o.std = d.std;
  o.ignore_index = d.ignore_index;
  return o;
}

const std::vector<Field<AugmentOptions>>& AugmentOptions::fields() {
  using S = AugmentOptions;
  static const std::vector<Field<S>> f{{"crop", &S::crop},   {"scale_range", &S::scale_range},
                                       {"flip", &S::flip},   {"photometric", &S::photometric},
                                       {"mean", &S::mean},   {"std", &S::std},
                                       {"ignore_index", &S::ignore_index}};
  return f;
}

void AugmentOptions::validate(const std::string& prefix) const {
  validate_standalone(*this, prefix);
}

void AugmentOptions::validate(const std::string& p, const Checker& check) const {
  check(ignore_index >= 0 && ignore_index <= 255, p + ".ignore_index", "must be in [0, 255]");
  check(crop[0] > 0 && crop[1] > 0, p + ".crop", "each must be > 0");
  check(scale_range[0] > 0 && scale_range[0] <= scale_range[1], p + ".scale_range",
        "must be positive and increasing ([min, max], min <= max)");
  check(std[0] > 0 && std[1] > 0 && std[2] > 0, p + ".std", "each must be > 0");
}

}  // namespace segkd::data
