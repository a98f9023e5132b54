// distributed/ options: keys and validation (options.h).
#include "distributed/options.h"

namespace segkd::dist {

const std::vector<Field<DistributedOptions>>& DistributedOptions::fields() {
  using S = DistributedOptions;
  static const std::vector<Field<S>> f{
      {"backend", &S::backend}, {"bucket_mb", &S::bucket_mb}, {"first_bucket_mb", &S::first_bucket_mb},
      {"timeout_s", &S::timeout_s}};
  return f;
}

void DistributedOptions::validate(const std::string& prefix) const {
  validate_standalone(*this, prefix);
}

void DistributedOptions::validate(const std::string& p, const Checker& check) const {
  check.one_of(backend, {"auto", "mpi", "nccl"}, p + ".backend");
  check(bucket_mb > 0, p + ".bucket_mb", "must be > 0");
  check(first_bucket_mb > 0, p + ".first_bucket_mb", "must be > 0");
  check(timeout_s > 0, p + ".timeout_s", "must be > 0");
}

}  // namespace segkd::dist
