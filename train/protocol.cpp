// The plan / skip / resume / table engine of `segkd sweep` and `segkd compare`.
#include "train/protocol.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "train/config.h"
#include "common/env.h"
#include "common/error.h"
#include "common/logging.h"
#include "common/run_dir.h"
#include "distributed/communicator.h"
#include "distributed/runtime.h"
#include "train/command_util.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat("cannot read ", path.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json read_json(const fs::path& path) {
  try {
    return json::parse(read_all(path));
  } catch (const json::exception& e) {
    throw InputError(str_cat(path.string(), ": not valid JSON: ", e.what()));
  }
}

json labels_json(const Labels& labels) {
  json out = json::array();
  for (auto& [k, v] : labels) out.push_back(json::array({k, v}));
  return out;
}

/// The point.json of `run`: what the plan made of this directory, so tables can be rebuilt from the directory.
void write_point(const fs::path& dir, const PlannedRun& run, const std::string& kind) {
  json j{{"kind", kind}, {"group", labels_json(run.group)}, {"seed", run.seed}, {"config", run.config},
         {"overrides", run.overrides}};
  prepare_run_dir(dir.string(), "--work-dir");
  write_file_atomic((dir / "point.json").string(), j.dump(2) + "\n");
}

std::string describe(const Labels& labels) {
  std::string out;
  for (auto& [k, v] : labels) out += (out.empty() ? "" : " ") + k + "=" + v;
  return out;
}

/// Test hook: SEGKD_STOP_AFTER_RUNS=N ends the plan with an error after N trained runs, as if killed between runs.
int64_t stop_after_runs() {
  const char* v = std::getenv(env::kStopAfterRuns);
  return v ? std::atoll(v) : -1;
}

/// Mean of every "ms" entry and every top-level "*_ms" number over the train events of metrics.jsonl.
std::map<std::string, double> mean_cost_ms(const fs::path& metrics) {
  std::map<std::string, double> sum;
  std::map<std::string, int64_t> count;
  for_each_metrics_event(metrics.string(), [&](const json& e) {
    if (e.value("event", "") != "train") return;
    auto add = [&](const std::string& key, const json& v) {
      if (!v.is_number()) return;
      sum[key] += v.get<double>();
      ++count[key];
    };
    if (e.contains("ms") && e["ms"].is_object()) {
      for (auto& [k, v] : e["ms"].items()) add(k, v);
    }
    for (auto& [k, v] : e.items()) {
      if (k.size() > 3 && k.compare(k.size() - 3, 3, "_ms") == 0) add(k.substr(0, k.size() - 3), v);
    }
  });
  for (auto& [k, v] : sum) v /= static_cast<double>(count[k]);
  return sum;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? kNaN : s / static_cast<double>(v.size());
}

double sample_std(const std::vector<double>& v) {
  if (v.size() < 2) return kNaN;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::string label_value(const Labels& labels, const std::string& key) {
  for (auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return "";
}

}  // namespace

const char* to_string(RunState s) {
  switch (s) {
    case RunState::kNew: return "new";
    case RunState::kInterrupted: return "interrupted";
    case RunState::kFinished: return "finished";
  }
  return "?";
}

RunState run_state(const std::string& root, const PlannedRun& run) {
  const fs::path dir = fs::path(root) / run.dir_name;
  const fs::path summary = dir / "summary.json", config = dir / "config.toml";
  if (fs::exists(summary)) {
    const auto hash = read_json(summary).value("config_hash", std::string());
    if (hash == run.hash) return RunState::kFinished;
    throw InputError(str_cat(summary.string(), ": a finished run of another config (hash ", hash, ", this plan's ",
                             run.hash, "); move the directory away or choose another --work-dir"));
  }
  if (fs::exists(config)) {
    const auto hash = stable_hash(read_all(config));
    if (hash == run.hash) return RunState::kInterrupted;
    throw InputError(str_cat(config.string(), ": an unfinished run of another config (hash ", hash, ", this plan's ",
                             run.hash, "); move the directory away or choose another --work-dir"));
  }
  return RunState::kNew;
}

int64_t execute_plan(std::vector<PlannedRun>& plan, const std::string& root, const PlanOptions& options,
                     const std::function<void()>& on_run_done) {
  const auto& topo = dist::topology();
  const int64_t n = static_cast<int64_t>(plan.size());
  if (options.index >= n) {
    throw ConfigError(str_cat("--index ", options.index, ": the plan has ", n, " run(s), numbered 0..", n - 1));
  }
  // Every config resolves before anything trains: a typo in the last grid value fails now, not in hours.
  std::vector<Config> configs;
  for (auto& run : plan) {
    configs.push_back(load_with_overrides(ConfigArgs{run.config, run.overrides}));
    run.hash = configs.back().hash;
  }
  std::vector<RunState> states;
  std::string seen;
  for (auto& run : plan) {
    states.push_back(run_state(root, run));
    seen += to_string(states.back()) + std::string(";");
  }
  // Every rank must see the same directories (a shared file system), or they would train different runs.
  auto comm = dist::make_mpi_communicator(dist::DistributedOptions().timeout_s);
  const auto views = comm->all_gather_string(seen);
  for (size_t r = 1; r < views.size(); ++r) {
    if (views[r] != views[0]) {
      throw DistributedError(str_cat("rank ", r, " sees other run states under ", root, " than rank 0 (", views[r],
                                     " vs ", views[0], "): the work directory must be on a shared file system"));
    }
  }
  int64_t finished = 0;
  for (auto s : states) finished += s == RunState::kFinished;
  if (topo.rank == 0) {
    std::cout << fmt::format("plan: {} run(s) in {} ({} finished){}\n", n, root, finished,
                             options.index >= 0 ? fmt::format(", --index {}: run {} only", options.index, options.index)
                                                : std::string());
    for (int64_t i = 0; i < n; ++i) {
      std::cout << fmt::format("  [{}] {} | {} | seed {} | {}\n", i, plan[i].dir_name, to_string(states[i]),
                               plan[i].seed, describe(plan[i].group));
    }
    std::cout.flush();
  }
  if (options.dry_run) return 0;
  int64_t trained = 0;
  const int64_t stop_after = stop_after_runs();
  for (int64_t i = 0; i < n; ++i) {
    if (options.index >= 0 && i != options.index) continue;
    const fs::path dir = fs::path(root) / plan[i].dir_name;
    // Also for finished runs: a directory trained before point.json existed joins the tables.
    if (topo.rank == 0 && (states[i] != RunState::kFinished || !fs::exists(dir / "point.json"))) {
      write_point(dir, plan[i], options.kind);
    }
    if (states[i] == RunState::kFinished) {
      if (topo.rank == 0) std::cout << fmt::format("[{}] {}: finished, skipped\n", i, plan[i].dir_name);
      continue;
    }
    if (stop_after >= 0 && trained >= stop_after) {
      throw Error(str_cat("stopped before run ", i, " after ", trained, " trained run(s) (", env::kStopAfterRuns, ")"));
    }
    setup_logging("", topo.rank, configs[i].log.level);
    spdlog::info("{} run {}/{}: {} ({})", options.kind, i + 1, n, plan[i].dir_name, to_string(states[i]));
    TrainOptions train_options;
    if (states[i] == RunState::kInterrupted) train_options.resume = "auto";
    train(configs[i], train_options);
    ++trained;
    if (on_run_done) on_run_done();
  }
  return trained;
}

void for_each_metrics_event(const std::string& path, const std::function<void(const json&)>& fn) {
  std::ifstream in(path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    json e;
    try {
      e = json::parse(line);
    } catch (const json::exception& ex) {
      throw InputError(str_cat(path, ":", line_no, ": not valid JSON: ", ex.what()));
    }
    fn(e);
  }
}

RunRecord read_run(const std::string& dir) {
  const fs::path d(dir);
  const auto summary_path = d / "summary.json";
  if (!fs::exists(summary_path)) throw InputError(str_cat("no summary.json in ", dir, " (has the run finished?)"));
  const json s = read_json(summary_path);
  RunRecord r;
  r.dir = dir;
  r.name = s.value("name", d.filename().string());
  r.miou = s.contains("mIoU") && s["mIoU"].is_number() ? s["mIoU"].get<double>() : kNaN;
  r.iterations = s.value("iterations", int64_t{0});
  r.train_s = s.value("train_s", 0.0);
  r.images_per_s = s.value("images_per_s", 0.0);
  r.group = {{"run", r.name}};
  if (fs::exists(d / "point.json")) {
    const json p = read_json(d / "point.json");
    Labels group;
    for (auto& kv : p.value("group", json::array())) {
      if (!kv.is_array() || kv.size() != 2 || !kv[0].is_string() || !kv[1].is_string()) {
        throw InputError(str_cat((d / "point.json").string(), ": group must be a list of [key, value] strings"));
      }
      group.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
    }
    if (!group.empty()) r.group = group;
    r.seed = p.value("seed", int64_t{0});
  }
  if (fs::exists(d / "metrics.jsonl")) r.cost_ms = mean_cost_ms(d / "metrics.jsonl");
  return r;
}

std::vector<RunRecord> finished_runs(const std::string& root, const std::string& kind) {
  std::vector<std::string> dirs;
  if (!fs::is_directory(root)) return {};
  for (const auto& e : fs::directory_iterator(root)) {
    const auto d = e.path();
    if (!e.is_directory() || !fs::exists(d / "point.json") || !fs::exists(d / "summary.json") ||
        !fs::exists(d / "config.toml")) {
      continue;
    }
    if (read_json(d / "point.json").value("kind", std::string()) != kind) continue;
    if (read_json(d / "summary.json").value("config_hash", std::string()) != stable_hash(read_all(d / "config.toml"))) {
      continue;  // a run of an older config was restarted in this directory and has not finished yet
    }
    dirs.push_back(d.string());
  }
  std::sort(dirs.begin(), dirs.end());
  std::vector<RunRecord> out;
  for (auto& d : dirs) out.push_back(read_run(d));
  return out;
}

std::vector<Labels> group_order(const std::vector<RunRecord>& runs, const std::vector<Labels>& preferred) {
  std::set<Labels> present;
  for (auto& r : runs) present.insert(r.group);
  std::vector<Labels> order;
  for (auto& g : preferred) {
    if (present.count(g) && std::find(order.begin(), order.end(), g) == order.end()) order.push_back(g);
  }
  for (auto& g : present) {
    if (std::find(order.begin(), order.end(), g) == order.end()) order.push_back(g);
  }
  return order;
}

std::vector<TableRow> aggregate(const std::vector<RunRecord>& runs, const TableOptions& options) {
  std::map<Labels, std::vector<const RunRecord*>> groups;
  for (auto& r : runs) groups[r.group].push_back(&r);
  std::vector<TableRow> rows;
  for (auto& g : group_order(runs, options.order)) {
    TableRow row;
    row.group = g;
    std::vector<double> miou, iterations, train_s, ips, iter_ms;
    std::map<std::string, std::vector<double>> cost;
    for (auto* r : groups[g]) {
      row.seeds.push_back(r->seed);
      if (!std::isnan(r->miou)) miou.push_back(r->miou);
      iterations.push_back(static_cast<double>(r->iterations));
      train_s.push_back(r->train_s);
      ips.push_back(r->images_per_s);
      iter_ms.push_back(r->iterations > 0 ? 1000 * r->train_s / static_cast<double>(r->iterations) : kNaN);
      for (auto& [k, v] : r->cost_ms) cost[k].push_back(v);
    }
    row.miou_mean = mean(miou);
    row.miou_std = sample_std(miou);
    row.iterations = mean(iterations);
    row.train_s = mean(train_s);
    row.images_per_s = mean(ips);
    row.iteration_ms = mean(iter_ms);
    for (auto& [k, v] : cost) {
      const double share = mean(v) / row.iteration_ms;
      row.cost_share.emplace_back(k, share);
      // The teacher's phases may nest (a key that includes another, e.g. an older teacher_wait and teacher_forward): the largest, not the sum.
      if (k.find("teacher") != std::string::npos) row.teacher_share = std::max(row.teacher_share, share);
    }
    std::stable_sort(row.cost_share.begin(), row.cost_share.end(),
                     [](auto& a, auto& b) { return a.second > b.second; });
    rows.push_back(row);
  }
  if (!options.baseline_key.empty()) {
    for (auto& row : rows) {
      for (auto& base : rows) {
        if (label_value(base.group, options.baseline_key) != options.baseline_value) continue;
        bool same = true;
        for (auto& key : options.match_keys) same = same && label_value(base.group, key) == label_value(row.group, key);
        if (!same) continue;
        row.is_baseline = &row == &base;
        row.has_delta = true;
        row.delta = row.miou_mean - base.miou_mean;
        // Standard error of a difference of two independent means; NaN when either has a single seed.
        const double nr = static_cast<double>(row.seeds.size()), nb = static_cast<double>(base.seeds.size());
        row.delta_se = std::sqrt(row.miou_std * row.miou_std / nr + base.miou_std * base.miou_std / nb);
      }
    }
  }
  if (options.mark_best) {
    TableRow* best = nullptr;
    for (auto& row : rows) {
      if (!std::isnan(row.miou_mean) && (!best || row.miou_mean > best->miou_mean)) best = &row;
    }
    if (best) best->best = true;
  }
  return rows;
}

namespace {

std::string num(double v, const char* format) { return std::isnan(v) ? std::string() : fmt::format(format, v); }

std::string seeds_text(const std::vector<int64_t>& seeds, const char* sep) {
  std::string out;
  for (auto s : seeds) out += (out.empty() ? "" : sep) + std::to_string(s);
  return out;
}

}  // namespace

std::string table_csv(const std::vector<TableRow>& rows) {
  if (rows.empty()) return "";
  std::string out;
  for (auto& [k, v] : rows.front().group) out += k + ",";
  out += "seeds,n,mIoU_mean,mIoU_std,delta,delta_se,iterations,train_s,images_per_s,iteration_ms,teacher_share,"
         "cost_share,best\n";
  for (auto& row : rows) {
    for (auto& [k, v] : row.group) out += v + ",";
    std::string shares;
    for (auto& [k, v] : row.cost_share) shares += (shares.empty() ? "" : ";") + k + "=" + num(v, "{:.4f}");
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", seeds_text(row.seeds, ";"), row.seeds.size(),
                       num(row.miou_mean, "{:.4f}"), num(row.miou_std, "{:.4f}"),
                       row.has_delta && !row.is_baseline ? num(row.delta, "{:.4f}") : "",
                       row.has_delta && !row.is_baseline ? num(row.delta_se, "{:.4f}") : "",
                       num(row.iterations, "{:.0f}"), num(row.train_s, "{:.1f}"), num(row.images_per_s, "{:.2f}"),
                       num(row.iteration_ms, "{:.1f}"), num(row.teacher_share, "{:.4f}"), shares, row.best ? 1 : 0);
  }
  return out;
}

std::string table_markdown(const std::vector<TableRow>& rows) {
  if (rows.empty()) return "(no finished runs)\n";
  bool any_delta = false, any_best = false;
  for (auto& row : rows) any_delta |= row.has_delta, any_best |= row.best;
  std::string head = "|", rule = "|";
  for (auto& [k, v] : rows.front().group) head += " " + k + " |", rule += "---|";
  head += " seeds | mIoU (mean ± std) |";
  rule += "---|---|";
  if (any_delta) head += " Δ mIoU vs baseline (± s.e.) |", rule += "---|";
  head += " iterations | train time | img/s | ms/iter | teacher | cost per iteration |";
  rule += "---|---|---|---|---|---|";
  if (any_best) head += " best |", rule += "---|";
  std::string out = head + "\n" + rule + "\n";
  for (auto& row : rows) {
    out += "|";
    for (auto& [k, v] : row.group) out += " " + v + " |";
    std::string miou = std::isnan(row.miou_mean) ? "-" : fmt::format("{:.2f}", 100 * row.miou_mean);
    if (!std::isnan(row.miou_std)) miou += fmt::format(" ± {:.2f}", 100 * row.miou_std);
    out += fmt::format(" {} | {} |", seeds_text(row.seeds, ", "), miou);
    if (any_delta) {
      std::string d = "-";
      if (row.is_baseline) {
        d = "baseline";
      } else if (row.has_delta && !std::isnan(row.delta)) {
        d = fmt::format("{:+.2f}", 100 * row.delta);
        if (!std::isnan(row.delta_se)) d += fmt::format(" ± {:.2f}", 100 * row.delta_se);
      }
      out += " " + d + " |";
    }
    std::string costs;
    for (auto& [k, v] : row.cost_share) {
      if (v >= 0.005) costs += (costs.empty() ? "" : ", ") + fmt::format("{} {:.0f}%", k, 100 * v);
    }
    out += fmt::format(" {:.0f} | {} | {:.1f} | {} | {} | {} |", row.iterations, format_duration(row.train_s),
                       row.images_per_s, num(row.iteration_ms, "{:.0f}"),
                       row.teacher_share > 0 ? fmt::format("{:.0f}%", 100 * row.teacher_share) : std::string("-"),
                       costs.empty() ? "-" : costs);
    if (any_best) out += row.best ? " **best** |" : " |";
    out += "\n";
  }
  return out;
}

}  // namespace segkd::train
