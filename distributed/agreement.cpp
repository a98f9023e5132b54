// Start-up agreement on the command line (see agreement.h).
#include "distributed/agreement.h"

#include <mpi.h>

#include <algorithm>

#include "common/error.h"
#include "distributed/checks.h"
#include "distributed/runtime.h"

namespace segkd::dist {
namespace {

/// Arguments joined with NUL separators (arguments cannot contain NUL).
std::string pack(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) out += a + '\0';
  return out;
}

std::vector<std::string> unpack(const char* data, int size) {
  std::vector<std::string> out;
  std::string cur;
  for (int i = 0; i < size; ++i) {
    if (data[i] == '\0') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += data[i];
    }
  }
  return out;
}

std::string shown(const std::vector<std::string>& args, size_t k) {
  return k < args.size() ? "'" + args[k] + "'" : std::string("nothing");
}

}  // namespace

std::string describe_argument_difference(const std::vector<std::string>& a, int rank_a,
                                         const std::vector<std::string>& b, int rank_b) {
  for (size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
    if (k < a.size() && k < b.size() && a[k] == b[k]) continue;
    return str_cat("argument ", k + 1, ": ", shown(a, k), " on rank ", rank_a, ", ", shown(b, k), " on rank ",
                   rank_b);
  }
  return "";
}

void check_command_line_agreement(int argc, char** argv) {
  const MPI_Comm comm = world_comm();
  int size = 1, rank = 0;
  SEGKD_MPI_CHECK(MPI_Comm_size(comm, &size));
  SEGKD_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  if (size == 1) return;
  std::vector<std::string> mine(argv + std::min(argc, 1), argv + argc);  // the program path may differ by node
  const std::string packed = pack(mine);
  int length = static_cast<int>(packed.size());
  std::vector<int> lengths(size), offsets(size, 0);
  SEGKD_MPI_CHECK(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm));
  for (int r = 1; r < size; ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
  std::vector<char> all(static_cast<size_t>(offsets[size - 1] + lengths[size - 1]) + 1);
  SEGKD_MPI_CHECK(MPI_Allgatherv(packed.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                                 MPI_CHAR, comm));
  const auto first = unpack(all.data(), lengths[0]);
  for (int r = 1; r < size; ++r) {
    const auto other = unpack(all.data() + offsets[r], lengths[r]);
    const std::string diff = describe_argument_difference(first, 0, other, r);
    if (diff.empty()) continue;
    throw DistributedError(str_cat("ranks were started with different command lines (", diff,
                                   "): every rank must run the same subcommand and options"));
  }
}

}  // namespace segkd::dist
