#pragma once
/// distributed/ options: the `[distributed]` table.
#include <string>
#include <vector>

#include "common/config_schema.h"

namespace segkd::dist {

/// Communication backend and gradient bucketing: `DistributedOptions().set_backend("mpi").set_bucket_mb(8)`.
struct DistributedOptions {
  using Self = DistributedOptions;
  SEGKD_OPTION(std::string, backend, "auto");  ///< auto | mpi | nccl
  SEGKD_OPTION(double, bucket_mb, 25);
  SEGKD_OPTION(double, first_bucket_mb, 1);
  SEGKD_OPTION(double, timeout_s, 600);  ///< deadline of every collective

  /// The table's keys in canonical order.
  static const std::vector<Field<DistributedOptions>>& fields();
  /// Throws ConfigError naming `prefix`.KEY ("distributed.bucket_mb = 0.0: must be > 0").
  void validate(const std::string& prefix = "distributed") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

}  // namespace segkd::dist
