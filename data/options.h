#pragma once
/// data/ options: the `[data]` table (DataOptions) and the transforms' own options (AugmentOptions).
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_schema.h"

namespace segkd::data {

/// The `[data]` table: `DataOptions().set_train({"train.h5"}).set_crop({512, 512})`.
struct DataOptions {
  using Self = DataOptions;
  SEGKD_OPTION(std::vector<std::string>, train);  ///< HDF5 shard files (globs allowed)
  SEGKD_OPTION(std::vector<std::string>, val);
  SEGKD_OPTION(int64_t, num_classes, 19);
  SEGKD_OPTION(int64_t, ignore_index, 255);
  SEGKD_OPTION(IntPair, crop, 512, 1024);  ///< height, width; each divisible by 8
  SEGKD_OPTION(FloatPair, scale_range, 0.5, 2.0);
  SEGKD_OPTION(bool, flip, true);
  SEGKD_OPTION(bool, photometric, false);  ///< photometric distortion (brightness, contrast, saturation, hue)
  SEGKD_OPTION(int64_t, batch_per_rank, 2);
  SEGKD_OPTION(int64_t, workers, 2);   ///< loader threads per rank
  SEGKD_OPTION(int64_t, prefetch, 4);  ///< batches queued ahead
  SEGKD_OPTION(FloatTriple, mean, 123.675, 116.28, 103.53);  ///< RGB, 0..255 scale
  SEGKD_OPTION(FloatTriple, std, 58.395, 57.12, 57.375);

  /// The table's keys in canonical order.
  static const std::vector<Field<DataOptions>>& fields();
  /// Throws ConfigError naming `prefix`.KEY for a value out of range ("data.batch_per_rank = 0: must be >= 1").
  void validate(const std::string& prefix = "data") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

/// Options of the train/eval transforms (data/transforms.h), taken from `[data]` by `from()`.
struct AugmentOptions {
  using Self = AugmentOptions;
  SEGKD_OPTION(IntPair, crop, 512, 1024);  ///< height, width
  SEGKD_OPTION(FloatPair, scale_range, 0.5, 2.0);
  SEGKD_OPTION(bool, flip, true);
  SEGKD_OPTION(bool, photometric, false);
  SEGKD_OPTION(FloatTriple, mean, 123.675, 116.28, 103.53);  ///< RGB, 0..255 scale
  SEGKD_OPTION(FloatTriple, std, 58.395, 57.12, 57.375);
  SEGKD_OPTION(int64_t, ignore_index, 255);

  /// Copies crop, scale_range, flip, photometric, mean, std and ignore_index from the `[data]` table.
  static AugmentOptions from(const DataOptions& d);
  /// Its keys (the `[data]` names of the same values).
  static const std::vector<Field<AugmentOptions>>& fields();
  /// The rules of `[data]` for these keys (the transforms need no more): positive crop, increasing positive
  /// scale range, std > 0, ignore_index in [0, 255]. Throws ConfigError naming `prefix`.KEY.
  void validate(const std::string& prefix = "data") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

}  // namespace segkd::data
