#pragma once
/// Output paths checked against input paths, so that no command overwrites what it reads.
#include <string>

namespace segkd {

/// True when `a` and `b` name the same file or directory after resolving symbolic links, `.` and `..` (an
/// existing pair is compared by device and inode, so hard links count as the same file).
bool same_path(const std::string& a, const std::string& b);

/// Throws InputError "OUT_KEY OUT is the same file as IN_KEY IN: ..." when `out` and `in` are the same file.
void check_output_not_input(const std::string& out_key, const std::string& out, const std::string& in_key,
                            const std::string& in);

/// For an output directory: throws InputError when `out_dir` is the directory `in` (or, when `in` is a file, the
/// directory holding it), where the outputs would land among (and replace) the inputs.
void check_output_dir_not_input_dir(const std::string& out_key, const std::string& out_dir, const std::string& in_key,
                                    const std::string& in);

}  // namespace segkd
