#pragma once
/// Internal to segkd_data: ordered parallel production of samples into one or more H5 shards, with a progress
/// bar. Used by preprocess() and synthesize().
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace segkd::data::detail {

/// Produces samples 0..n-1 with `produce` on `workers` threads (at most a small window ahead of the writer) and
/// writes them in order; sample i goes to shard floor(i*N/n) of the N = paths.size() shards. All shards are
/// renamed from *.partial only after every sample was written; on any error no complete-looking file is left
/// and the first error (by sample order) is re-thrown.
void write_parallel(int64_t n, int64_t workers, const std::function<Sample(int64_t)>& produce,
                    const std::vector<std::string>& paths, const DatasetInfo& info, int compression,
                    bool progress, const std::string& label);

}  // namespace segkd::data::detail
