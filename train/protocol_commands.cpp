// `segkd sweep` and `segkd compare`: plans for the shared engine of train/protocol.h, and their tables and curves.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "train/config.h"
#include "common/error.h"
#include "common/run_dir.h"
#include "distributed/runtime.h"
#include "train/command_util.h"
#include "train/commands.h"
#include "train/curves.h"
#include "train/protocol.h"

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

using Axes = std::vector<std::pair<std::string, std::vector<std::string>>>;

/// "key=v1,v2,..." axes of --grid.
Axes parse_grid(const std::vector<std::string>& grid) {
  Axes axes;
  std::set<std::string> keys;
  for (const auto& g : grid) {
    auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == g.size()) {
      throw ConfigError(str_cat("--grid '", g, "': expected key=v1,v2,..."));
    }
    std::vector<std::string> values;
    std::stringstream ss(g.substr(eq + 1));
    std::string v;
    while (std::getline(ss, v, ',')) {
      if (v.empty()) throw ConfigError(str_cat("--grid '", g, "': empty value"));
      values.push_back(v);
    }
    const auto key = g.substr(0, eq);
    if (!keys.insert(key).second) throw ConfigError(str_cat("--grid: key '", key, "' given twice"));
    axes.emplace_back(key, values);
  }
  if (axes.empty()) throw ConfigError("segkd sweep needs at least one --grid key=v1,v2,...");
  return axes;
}

/// A directory name from labels: '/', ' ' and '"' become '_'.
std::string safe_name(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char ch) { return ch == '/' || ch == ' ' || ch == '"'; }, '_');
  return s;
}

std::string format_number(double v) { return fmt::format("{:g}", v); }

/// The root directory: --work-dir, else `fallback`; absolute, so the run configs (and their hashes) do not depend on
/// the directory the command was started from.
std::string resolve_root(const std::string& work_dir, const std::string& fallback) {
  return fs::absolute(work_dir.empty() ? fallback : work_dir).lexically_normal().string();
}

void check_seeds(const ProtocolArgs& p) {
  if (p.seeds < 1) throw ConfigError(str_cat("--seeds ", p.seeds, ": must be at least 1"));
}

/// Rank 0 rewrites `<root>/<kind>.csv` and `.md` from every finished run of `kind` in the root and returns the
/// markdown (empty on other ranks).
std::string write_tables(const std::string& root, const std::string& kind, const TableOptions& options) {
  if (dist::topology().rank != 0) return "";
  const auto rows = aggregate(finished_runs(root, kind), options);
  const auto md = table_markdown(rows);
  prepare_run_dir(root, "--work-dir");
  write_file_atomic((fs::path(root) / (kind + ".csv")).string(), table_csv(rows));
  write_file_atomic((fs::path(root) / (kind + ".md")).string(), md);
  return md;
}

}  // namespace

int run_sweep(const ConfigArgs& c, const std::vector<std::string>& grid, const ProtocolArgs& p) {
  check_seeds(p);
  const Axes axes = parse_grid(grid);
  const Config base = load_with_overrides(c);
  const std::string root = resolve_root(p.work_dir, base.run.work_dir);
  // The cartesian product of the axes, the last axis varying fastest; then each point's seeds.
  std::vector<Labels> points{{}};
  for (auto& [key, values] : axes) {
    std::vector<Labels> next;
    for (auto& point : points) {
      for (auto& v : values) {
        auto x = point;
        x.emplace_back(key, v);
        next.push_back(x);
      }
    }
    points = next;
  }
  std::vector<PlannedRun> plan;
  for (auto& point : points) {
    std::string tag;
    for (auto& [k, v] : point) tag += (tag.empty() ? "" : ",") + k + "=" + v;
    for (int64_t k = 0; k < p.seeds; ++k) {
      PlannedRun run;
      run.group = point;
      run.seed = base.run.seed + k;
      // The first seed keeps the point's plain name, so adding seeds to a finished sweep trains only the new ones.
      run.dir_name = safe_name(k == 0 ? tag : str_cat(tag, ",seed=", run.seed));
      run.config = c.config;
      run.overrides = c.overrides;
      for (auto& [key, v] : point) run.overrides.push_back(key + "=" + v);
      run.overrides.push_back(str_cat("run.seed=", run.seed));
      run.overrides.push_back("run.name=" + quote_toml(run.dir_name));
      run.overrides.push_back("run.work_dir=" + quote_toml((fs::path(root) / run.dir_name).string()));
      plan.push_back(run);
    }
  }
  TableOptions table;
  table.order = points;
  table.mark_best = true;
  const auto trained = execute_plan(plan, root, PlanOptions{"sweep", p.index, p.dry_run},
                                    [&] { write_tables(root, "sweep", table); });
  if (p.dry_run) return 0;
  const auto md = write_tables(root, "sweep", table);
  if (dist::topology().rank == 0) {
    std::cout << "\n" << md << "trained " << trained << " run(s); written " << root << "/sweep.csv and sweep.md\n";
  }
  return 0;
}

int run_compare(const CompareArgs& a, const ProtocolArgs& p) {
  check_seeds(p);
  if (a.configs.empty()) throw ConfigError("segkd compare needs at least one CONFIG");
  if (!a.budget.empty() && a.iterations > 0) throw ConfigError("--budget and --iterations exclude each other");
  if (a.extend.empty()) throw ConfigError("--extend: at least one factor");
  for (double e : a.extend) {
    if (!(e > 0)) throw ConfigError(str_cat("--extend ", e, ": factors must be positive"));
  }
  // A method is named by its config file's stem; two configs of one name could not be told apart in the table.
  std::vector<std::string> methods;
  for (auto& config : a.configs) {
    const auto stem = fs::path(config).stem().string();
    if (std::find(methods.begin(), methods.end(), stem) != methods.end()) {
      throw ConfigError(str_cat("compare: two configs are named '", stem, "' (", config, "); rename one"));
    }
    methods.push_back(stem);
  }
  std::vector<std::string> schedule;
  if (!a.budget.empty()) schedule = {"schedule.budget=" + quote_toml(a.budget)};
  if (a.iterations > 0) schedule = {str_cat("schedule.iterations=", a.iterations), "schedule.budget=\"\""};
  const std::string root = resolve_root(p.work_dir, "runs/compare");
  std::vector<PlannedRun> plan;
  std::vector<Labels> order;
  // Extend factor, then seed, then method: the first runs already compare every method.
  for (double extend : a.extend) {
    for (int64_t k = 0; k < p.seeds; ++k) {
      for (size_t m = 0; m < a.configs.size(); ++m) {
        ConfigArgs args{a.configs[m], a.overrides};
        args.overrides.insert(args.overrides.end(), schedule.begin(), schedule.end());
        args.overrides.push_back("schedule.extend=" + format_number(extend));
        const Config cfg = load_with_overrides(args);
        const std::string length = cfg.schedule.budget.empty() ? str_cat(cfg.schedule.iterations, "it")
                                                               : cfg.schedule.budget;
        PlannedRun run;
        run.group = {{"method", methods[m]}, {"schedule", length}, {"extend", format_number(extend)}};
        run.seed = cfg.run.seed + k;
        run.dir_name = safe_name(str_cat(methods[m], "-", length, "-x", format_number(extend), "-s", run.seed));
        run.config = a.configs[m];
        run.overrides = args.overrides;
        run.overrides.push_back(str_cat("run.seed=", run.seed));
        run.overrides.push_back("run.name=" + quote_toml(run.dir_name));
        run.overrides.push_back("run.work_dir=" + quote_toml((fs::path(root) / run.dir_name).string()));
        plan.push_back(run);
        if (k == 0) order.push_back(run.group);
      }
    }
  }
  TableOptions table;
  table.order = order;
  table.baseline_key = "method";
  table.baseline_value = methods.front();
  table.match_keys = {"schedule", "extend"};
  const auto trained = execute_plan(plan, root, PlanOptions{"compare", p.index, p.dry_run},
                                    [&] { write_tables(root, "compare", table); });
  if (p.dry_run) return 0;
  const auto md = write_tables(root, "compare", table);
  if (dist::topology().rank == 0) {
    const auto runs = finished_runs(root, "compare");
    // The table's row order (the baseline first), so a method has the same colour in every picture.
    std::vector<std::string> dirs;
    for (auto& g : group_order(runs, order)) {
      for (auto& r : runs) {
        if (r.group == g) dirs.push_back(r.dir);
      }
    }
    const auto curves = (fs::path(root) / "curves.png").string();
    if (!dirs.empty()) {
      // The work directory as the user would name it: relative to the current directory when inside it.
      auto shown = fs::path(root).lexically_normal().lexically_relative(fs::current_path());
      if (shown.empty() || *shown.begin() == "..") shown = fs::path(root).lexically_normal();
      write_curves(dirs, curves, "segkd compare " + shown.string());
    }
    std::cout << "\n" << md << "trained " << trained << " run(s); written " << root << "/compare.csv, compare.md"
              << (dirs.empty() ? "" : " and curves.png") << "\n";
  }
  return 0;
}

}  // namespace segkd::train
