// Backend selection (make_communicator, local_device) and the parts of Communicator every backend shares. The
// backends are separate sources chosen by CMake: mpi_communicator.cpp always; nccl_communicator.cpp when NCCL and
// the CUDA runtime are found, nccl_stub.cpp otherwise. No #ifdef is needed here.
#include "distributed/communicator.h"

#include <algorithm>
#include <cstring>
#include <torch/cuda.h>

#include "common/error.h"
#include "distributed/nccl_communicator.h"
#include "distributed/runtime.h"

namespace segkd::dist {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAverage: return "average";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

std::vector<std::string> Communicator::all_gather_string(const std::string& s) {
  auto len = torch::tensor({static_cast<int64_t>(s.size())}, torch::kLong);
  auto lens = all_gather(len);
  int64_t max_len = 1;
  for (const auto& l : lens) max_len = std::max(max_len, l.item<int64_t>());
  auto bytes = torch::zeros({max_len}, torch::kUInt8);
  if (!s.empty()) std::memcpy(bytes.data_ptr<uint8_t>(), s.data(), s.size());
  auto all = all_gather(bytes);
  std::vector<std::string> out;
  out.reserve(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    auto b = all[r].contiguous();
    out.emplace_back(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()),
                     static_cast<size_t>(lens[r].item<int64_t>()));
  }
  return out;
}

torch::Device choose_device(bool torch_cuda_available, int64_t cuda_devices, int local_rank) {
  if (!torch_cuda_available || cuda_devices <= 0) return torch::kCPU;
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % cuda_devices));
}

torch::Device local_device() {
  const bool available = torch::cuda::is_available();
  return choose_device(available, available ? static_cast<int64_t>(torch::cuda::device_count()) : 0,
                       topology().local_rank);
}

std::shared_ptr<Communicator> make_communicator(const DistributedOptions& cfg, torch::Device device) {
  cfg.validate();  // the [distributed] rules, as the config checks them (distributed/options.cpp)
  const std::string& b = cfg.backend;
  bool want_nccl = b == "nccl" || (b == "auto" && device.is_cuda() && nccl_built());
  if (!want_nccl) return make_mpi_communicator(cfg.timeout_s);
  if (!nccl_built())
    throw ConfigError("distributed.backend = \"nccl\" but segkd was built without NCCL (SEGKD_WITH_NCCL)");
  if (!device.is_cuda() || cuda_device_count() == 0)
    throw ConfigError(str_cat("distributed.backend = \"nccl\" needs a CUDA device, got ", device.str(),
                              " with ", cuda_device_count(), " CUDA device(s) visible"));
  if (!initialized()) init(nullptr, nullptr);
  return detail::make_nccl_communicator(cfg.timeout_s, device);
}

}  // namespace segkd::dist
