#pragma once
/// The engine shared by `segkd sweep` and `segkd compare`: a plan of training runs (one directory each under a root),
/// skip / resume rules, and the tables rebuilt from every finished run in the root (README, "The comparison protocol").
///
/// A run directory of a plan holds `point.json` ({"kind","group":[[key,value],...],"seed","config","overrides"}),
/// written before training, beside the trainer's files. A run is *finished* when its `summary.json` carries the
/// planned config hash; a directory with checkpoints but no summary is *interrupted* and resumes (`--resume auto`).
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace segkd::train {

/// Ordered (key, value) labels: the grid values of a sweep point, or method and extend factor of a comparison.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// One planned training run.
struct PlannedRun {
  std::string dir_name;                ///< directory under the root
  Labels group;                        ///< the table row this run belongs to (seeds of one group are aggregated)
  int64_t seed = 0;                    ///< run.seed of this run
  std::string config;                  ///< TOML file
  std::vector<std::string> overrides;  ///< --set values (user's, then the plan's, then run.work_dir)
  std::string hash;                    ///< config hash of the resolved run (filled by check_plan)
};

enum class RunState {
  kNew,          ///< nothing in the directory yet
  kInterrupted,  ///< a started run of this config without summary.json: resumes from its newest checkpoint
  kFinished,     ///< summary.json with the planned config hash: skipped
};

/// "new", "interrupted" or "finished".
const char* to_string(RunState s);

/// The state of `run` under `root`. Throws InputError when the directory holds a run of another config (its
/// config.toml or summary.json has another hash), since training there would overwrite it.
RunState run_state(const std::string& root, const PlannedRun& run);

/// What `execute_plan` does.
struct PlanOptions {
  std::string kind;     ///< "sweep" or "compare": written into point.json, selects the directories of the tables
  int64_t index = -1;   ///< >= 0: only the index-th run of the plan (job arrays)
  bool dry_run = false; ///< print the plan with each run's state, train nothing
};

/// Resolves every run's config (all errors before any training), then trains every run that is not finished (rank
/// 0 writes its point.json first), in plan order, each resuming from its newest checkpoint. Needs dist::init.
/// Returns the number of runs trained. `on_run_done` (may be empty) is called on every rank after each trained run.
int64_t execute_plan(std::vector<PlannedRun>& plan, const std::string& root, const PlanOptions& options,
                     const std::function<void()>& on_run_done);

/// A finished run read back from its directory.
struct RunRecord {
  std::string dir;                       ///< run directory
  std::string name;                      ///< run.name
  Labels group;                          ///< from point.json ({"run", dir name} when there is none)
  int64_t seed = 0;
  double miou = 0;                       ///< NaN when the run had no validation set
  int64_t iterations = 0;
  double train_s = 0;                    ///< training wall-clock, seconds
  double images_per_s = 0;
  std::map<std::string, double> cost_ms; ///< mean per-iteration ms of each timed phase or term in metrics.jsonl
};

/// Reads `dir`'s summary.json, point.json (optional) and metrics.jsonl. Throws InputError naming the file on bad input.
RunRecord read_run(const std::string& dir);

/// Calls `fn` with every event (one JSON object per non-empty line) of the metrics.jsonl at `path`, in order.
/// Throws InputError naming the file and line of a line that is not valid JSON.
void for_each_metrics_event(const std::string& path, const std::function<void(const nlohmann::json&)>& fn);

/// Every finished run directly under `root` whose point.json has kind `kind` (a finished run: summary.json whose
/// config_hash is the hash of the directory's config.toml), sorted by directory name.
std::vector<RunRecord> finished_runs(const std::string& root, const std::string& kind);

/// The groups of `runs`: those in `preferred` first, in its order, then the others sorted (the tables' row order).
std::vector<Labels> group_order(const std::vector<RunRecord>& runs, const std::vector<Labels>& preferred);

/// Options of the aggregated table.
struct TableOptions {
  std::vector<Labels> order;        ///< preferred row order (the current plan's groups); other groups follow sorted
  std::string baseline_key;         ///< non-empty: add the difference to the row whose baseline_key label equals
  std::string baseline_value;       ///<   baseline_value and whose other labels in match_keys are the same
  std::vector<std::string> match_keys;
  bool mark_best = false;           ///< mark the row with the highest mean mIoU
};

/// One row: the runs of one group aggregated over seeds.
struct TableRow {
  Labels group;
  std::vector<int64_t> seeds;
  double miou_mean = 0, miou_std = 0;  ///< std over seeds (sample, n-1; NaN for one seed)
  double iterations = 0, train_s = 0, images_per_s = 0, iteration_ms = 0;
  double teacher_share = 0;             ///< largest share of iteration time among phases named *teacher*
  std::vector<std::pair<std::string, double>> cost_share;  ///< every timed key, largest share first
  bool is_baseline = false;             ///< this row is the baseline of the differences
  bool has_delta = false;
  double delta = 0, delta_se = 0;       ///< mIoU difference to the baseline row and its standard error
  bool best = false;
};

/// Groups `runs` into rows (mean ± std over seeds) in `options.order`.
std::vector<TableRow> aggregate(const std::vector<RunRecord>& runs, const TableOptions& options);

/// The rows as CSV (one column per label key) and as a markdown table.
std::string table_csv(const std::vector<TableRow>& rows);
std::string table_markdown(const std::vector<TableRow>& rows);

}  // namespace segkd::train
