#pragma once
/// Training curves of finished runs against training wall-clock (the seconds schedule.budget counts): mIoU of every
/// eval event and the task cross-entropy ("ce", the loss every method shares) of every train event in metrics.jsonl.
#include <string>
#include <vector>

namespace segkd::train {

/// One run's curves; times in seconds of training.
struct RunCurves {
  std::vector<double> loss_t, loss;  ///< task cross-entropy per logged window
  std::vector<double> miou_t, miou;  ///< mIoU (fraction) per evaluation; its time is interpolated from the iteration
};

/// Reads `run_dir/metrics.jsonl` (and summary.json for the final time). A resumed run's repeated iterations keep
/// their last record. Throws InputError naming the file and line on bad input.
RunCurves read_curves(const std::string& run_dir);

/// A line over several runs: their mean at the union of their time points inside the common time range, and the
/// range (min, max) as a band. Series with one point (or no common range) give one point: the mean of their last
/// points with the range of their values.
struct CurveBand {
  std::vector<double> t, mean, lo, hi;
};
CurveBand combine_series(const std::vector<std::vector<double>>& ts, const std::vector<std::vector<double>>& ys);

/// Writes `out` (PNG, PLplot): mIoU and training loss against training time, one line per group of runs (their
/// point.json group without the seed, or their run name), mean over the group's seeds with their range as a band.
/// Lines that differ in method (or grid point) and in schedule/extend get one colour per method and one line style
/// per schedule; the legend names only the labels that differ, in `run_dirs`' order of first appearance.
void write_curves(const std::vector<std::string>& run_dirs, const std::string& out, const std::string& title);

}  // namespace segkd::train
