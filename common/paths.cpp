// Output-versus-input path checks (see paths.h).
#include "common/paths.h"

#include <filesystem>

#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd {

bool same_path(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    bool same = fs::equivalent(a, b, ec);
    if (!ec) return same;
  }
  auto ca = fs::weakly_canonical(a, ec);
  if (ec) return false;
  auto cb = fs::weakly_canonical(b, ec);
  if (ec) return false;
  return ca == cb;
}

void check_output_not_input(const std::string& out_key, const std::string& out, const std::string& in_key,
                            const std::string& in) {
  if (!same_path(out, in)) return;
  throw InputError(str_cat(out_key, " ", out, " is the same file as ", in_key, " ", in,
                           ": writing it would destroy the input; choose another ", out_key));
}

void check_output_dir_not_input_dir(const std::string& out_key, const std::string& out_dir, const std::string& in_key,
                                    const std::string& in) {
  std::error_code ec;
  std::string in_dir = in;
  if (!fs::is_directory(in, ec)) {
    in_dir = fs::path(in).parent_path().string();
    if (in_dir.empty()) in_dir = ".";
  }
  if (!same_path(out_dir, in_dir) && !same_path(out_dir, in)) return;
  throw InputError(str_cat(out_key, " ", out_dir, " is the directory of ", in_key, " ", in,
                           ": the outputs would replace the inputs; choose another ", out_key));
}

}  // namespace segkd
