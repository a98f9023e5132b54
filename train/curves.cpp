// Training curves from metrics.jsonl, combined over seeds and drawn with PLplot.
#include "train/curves.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "train/plot.h"
#include "train/protocol.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {
namespace {

/// (iteration, value) records where a resumed run's repeated iterations replace the earlier ones.
struct Records {
  std::vector<int64_t> iter;
  std::vector<double> a, b;
  void add(int64_t i, double x, double y) {
    while (!iter.empty() && iter.back() >= i) iter.pop_back(), a.pop_back(), b.pop_back();
    iter.push_back(i);
    a.push_back(x);
    b.push_back(y);
  }
};

/// Linear interpolation of y(x) at `x` over increasing `xs` (clamped at the ends).
double interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  if (xs.empty()) return std::nan("");
  if (x <= xs.front()) return ys.front();
  if (x >= xs.back()) return ys.back();
  const auto k = static_cast<size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  const double f = (x - xs[k - 1]) / (xs[k] - xs[k - 1]);
  return ys[k - 1] + f * (ys[k] - ys[k - 1]);
}

std::string value_of(const Labels& labels, const std::string& key) {
  for (auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return "";
}

bool contains(const std::vector<std::string>& keys, const std::string& key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string group_label(const Labels& group, const std::vector<std::string>& varying) {
  std::string out;
  for (auto& [k, v] : group) {
    if (!contains(varying, k)) continue;
    const auto text = k == "method" || k == "run" || k == "schedule" ? v : k == "extend" ? "x" + v : k + " " + v;
    out += (out.empty() ? "" : " ") + text;
  }
  return out;
}

/// The labels of `group` whose keys are (or, with `keep` false, are not) in `keys`.
Labels select(const Labels& group, const std::vector<std::string>& keys, bool keep) {
  Labels out;
  for (auto& label : group) {
    if (contains(keys, label.first) == keep) out.push_back(label);
  }
  return out;
}

/// Index of `value` in `seen`, appended when new.
int index_of(std::vector<Labels>& seen, const Labels& value) {
  const auto it = std::find(seen.begin(), seen.end(), value);
  if (it != seen.end()) return static_cast<int>(it - seen.begin());
  seen.push_back(value);
  return static_cast<int>(seen.size()) - 1;
}

}  // namespace

RunCurves read_curves(const std::string& run_dir) {
  const auto path = (fs::path(run_dir) / "metrics.jsonl").string();
  if (!fs::is_regular_file(path)) throw InputError(str_cat("no metrics.jsonl in ", run_dir));
  Records train, eval;  // train: (train_s, ce); eval: (mIoU, unused)
  for_each_metrics_event(path, [&](const json& e) {
    const auto kind = e.value("event", std::string());
    if (!e.contains("iter") || !e["iter"].is_number_integer()) return;
    const int64_t iter = e["iter"].get<int64_t>();
    if (kind == "train" && e.contains("train_s") && e["train_s"].is_number()) {
      const auto& loss = e.value("loss", json::object());
      const double ce = loss.contains("ce") && loss["ce"].is_number() ? loss["ce"].get<double>() : std::nan("");
      train.add(iter, e["train_s"].get<double>(), ce);
    } else if (kind == "eval" && e.contains("mIoU") && e["mIoU"].is_number()) {
      eval.add(iter, e["mIoU"].get<double>(), 0);
    }
  });
  // Iteration -> training seconds: the logged windows, the start, and the end from summary.json.
  std::map<double, double> anchors{{0.0, 0.0}};
  for (size_t i = 0; i < train.iter.size(); ++i) anchors[static_cast<double>(train.iter[i])] = train.a[i];
  const auto summary = fs::path(run_dir) / "summary.json";
  if (fs::exists(summary)) {
    try {
      std::ifstream s(summary);
      const auto j = json::parse(s);
      if (j.contains("iterations") && j.contains("train_s")) {
        anchors[j["iterations"].get<double>()] = j["train_s"].get<double>();
      }
    } catch (const json::exception& ex) {
      throw InputError(str_cat(summary.string(), ": not valid JSON: ", ex.what()));
    }
  }
  std::vector<double> ax, at;
  for (auto& [x, t] : anchors) ax.push_back(x), at.push_back(t);
  RunCurves c;
  for (size_t i = 0; i < train.iter.size(); ++i) {
    if (std::isfinite(train.b[i])) c.loss_t.push_back(train.a[i]), c.loss.push_back(train.b[i]);
  }
  for (size_t i = 0; i < eval.iter.size(); ++i) {
    c.miou_t.push_back(interpolate(ax, at, static_cast<double>(eval.iter[i])));
    c.miou.push_back(eval.a[i]);
  }
  return c;
}

CurveBand combine_series(const std::vector<std::vector<double>>& ts, const std::vector<std::vector<double>>& ys) {
  CurveBand band;
  double start = -INFINITY, end = INFINITY;
  bool single = false;
  for (size_t s = 0; s < ts.size(); ++s) {
    if (ts[s].empty()) continue;
    single = single || ts[s].size() < 2;
    start = std::max(start, ts[s].front());
    end = std::min(end, ts[s].back());
  }
  std::vector<double> grid;
  for (auto& t : ts) {
    for (double x : t) {
      if (x >= start && x <= end) grid.push_back(x);
    }
  }
  std::sort(grid.begin(), grid.end());
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  if (single || grid.size() < 2) {
    // One point per run (e.g. a single final evaluation): their mean at their mean time, with the range.
    std::vector<double> lasts, times;
    for (size_t s = 0; s < ts.size(); ++s) {
      if (!ts[s].empty()) times.push_back(ts[s].back()), lasts.push_back(ys[s].back());
    }
    if (lasts.empty()) return band;
    double tm = 0, ym = 0;
    for (size_t i = 0; i < lasts.size(); ++i) tm += times[i], ym += lasts[i];
    band.t = {tm / static_cast<double>(times.size())};
    band.mean = {ym / static_cast<double>(lasts.size())};
    band.lo = {*std::min_element(lasts.begin(), lasts.end())};
    band.hi = {*std::max_element(lasts.begin(), lasts.end())};
    return band;
  }
  for (double x : grid) {
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    int n = 0;
    for (size_t s = 0; s < ts.size(); ++s) {
      if (ts[s].empty()) continue;
      const double y = interpolate(ts[s], ys[s], x);
      sum += y, ++n, lo = std::min(lo, y), hi = std::max(hi, y);
    }
    band.t.push_back(x);
    band.mean.push_back(sum / n);
    band.lo.push_back(lo);
    band.hi.push_back(hi);
  }
  return band;
}

void write_curves(const std::vector<std::string>& run_dirs, const std::string& out, const std::string& title) {
  if (run_dirs.empty()) throw InputError("--curves: no run directories");
  std::vector<Labels> groups;
  std::map<Labels, std::vector<RunCurves>> curves;
  for (auto& dir : run_dirs) {
    const auto record = read_run(dir);
    if (!curves.count(record.group)) groups.push_back(record.group);
    curves[record.group].push_back(read_curves(dir));
  }
  // Legend texts name what differs between the lines (a key with one value everywhere says nothing).
  std::vector<std::string> keys, varying;
  for (auto& g : groups) {
    for (auto& [k, v] : g) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
  }
  for (auto& k : keys) {
    for (auto& g : groups) {
      if (value_of(g, k) != value_of(groups.front(), k)) {
        varying.push_back(k);
        break;
      }
    }
  }
  if (varying.empty()) varying = keys;
  // Where the lines differ by method (or grid point) and by schedule length, the colour shows the first and the
  // line style the second: a method's 1x and 2x runs share a colour.
  const std::vector<std::string> schedule_keys{"schedule", "extend"};
  bool style_by_schedule = false, colour_by_rest = false;
  for (auto& k : varying) (contains(schedule_keys, k) ? style_by_schedule : colour_by_rest) = true;
  style_by_schedule = style_by_schedule && colour_by_rest;
  std::vector<Labels> colours, styles;
  size_t runs_per_group = curves[groups.front()].size();
  for (auto& g : groups) runs_per_group = curves[g].size() == runs_per_group ? runs_per_group : 0;
  const auto runs_title = runs_per_group > 1 ? str_cat(" (", runs_per_group, " runs each)") : "";
  PlotChart miou{title + ": mIoU" + runs_title, "training time (s)", "validation mIoU (%)", {}, /*x_from_zero=*/true};
  PlotChart loss{title + ": training loss", "training time (s)", "task cross-entropy", {}, /*x_from_zero=*/true};
  for (auto& g : groups) {
    std::vector<std::vector<double>> mt, my, lt, ly;
    for (auto& c : curves[g]) {
      mt.push_back(c.miou_t), lt.push_back(c.loss_t), ly.push_back(c.loss);
      my.emplace_back();
      for (double v : c.miou) my.back().push_back(100 * v);
    }
    const auto label = group_label(g, varying) +
                       (runs_per_group == 0 && curves[g].size() > 1 ? str_cat(" (", curves[g].size(), " runs)") : "");
    const auto m = combine_series(mt, my), l = combine_series(lt, ly);
    const int colour = style_by_schedule ? index_of(colours, select(g, schedule_keys, false)) : -1;
    const int style = style_by_schedule ? 1 + index_of(styles, select(g, schedule_keys, true)) : 1;
    // Also empty series: a group keeps its colour in both charts.
    miou.series.push_back({label, m.t, m.mean, m.lo, m.hi, colour, style});
    loss.series.push_back({label, l.t, l.mean, l.lo, l.hi, colour, style});
  }
  std::vector<PlotChart> charts;
  for (auto* chart : {&miou, &loss}) {
    bool any = false;
    for (auto& series : chart->series) any = any || !series.x.empty();
    if (any) charts.push_back(*chart);
  }
  if (charts.empty()) throw InputError(str_cat("--curves: the runs' metrics.jsonl hold no train or eval event"));
  plot_charts(charts, out, /*width=*/940 * static_cast<int64_t>(charts.size()), /*height=*/560);
}

}  // namespace segkd::train
