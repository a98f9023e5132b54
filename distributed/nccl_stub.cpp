// The NCCL backend when segkd is built without NCCL (SEGKD_WITH_NCCL=OFF, or NCCL / the CUDA runtime not found):
// reports "not built" and no CUDA device, so backend "auto" picks MPI and backend "nccl" is a ConfigError.
#include "common/error.h"
#include "distributed/nccl_communicator.h"

namespace segkd::dist {

bool nccl_built() { return false; }

int cuda_device_count() { return 0; }

namespace detail {
std::shared_ptr<Communicator> make_nccl_communicator(double /*timeout_s*/, torch::Device /*device*/) {
  throw ConfigError("distributed.backend = \"nccl\" but segkd was built without NCCL (SEGKD_WITH_NCCL)");
}
}  // namespace detail

}  // namespace segkd::dist
