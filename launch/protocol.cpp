// `segkd sweep` and `segkd compare`: argument parsing for the plan engine of train/protocol.h.
#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {
namespace {

/// --work-dir, --seeds, --index and --dry-run.
void add_protocol_options(CLI::App& app, train::ProtocolArgs& p, const std::string& default_dir) {
  app.add_option("--work-dir", p.work_dir, "Root directory: one run directory per planned run, and the tables (default " +
                                               default_dir + ")");
  app.add_option("--seeds", p.seeds, "Seeds per point: run.seed + 0 .. K-1")->check(CLI::PositiveNumber)->type_name("K");
  app.add_option("--index", p.index, "Train only the I-th run of the plan (0-based; for job arrays)")
      ->check(CLI::NonNegativeNumber)
      ->type_name("I");
  app.add_flag("--dry-run", p.dry_run, "Print the plan with each run's state (new, interrupted, finished) and stop");
}

}  // namespace

Command add_sweep(CLI::App& root) {
  auto* app = root.add_subcommand(
      "sweep", "Grid search: train every combination of --grid values (x seeds), write sweep.csv and sweep.md");
  struct Args {
    train::ConfigArgs c;
    std::vector<std::string> grid;
    train::ProtocolArgs p;
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--grid", a->grid, "An axis of the grid, e.g. --grid optimizer.lr=0.01,0.02 (repeatable)")
      ->required()
      ->type_name("KEY=V1,V2,...");
  add_protocol_options(*app, a->p, "run.work_dir");
  app->footer(
      "Finished points (summary.json with the same config hash) are skipped, interrupted ones resume from their newest\n"
      "checkpoint; sweep.csv and sweep.md are rebuilt from every finished point in the directory, best point marked,\n"
      "so extending a grid trains only the new points.\n"
      "Examples:\n"
      "  mpirun -n 2 segkd sweep configs/demo/student_logit_kd.toml --grid distill.0.tau=1,2,4 --grid optimizer.lr=0.02,0.05\n"
      "  segkd sweep CONFIG --grid optimizer.lr=0.01,0.02 --seeds 3 --dry-run");
  return {app, [a] { return train::run_sweep(a->c, a->grid, a->p); }, true};
}

Command add_compare(CLI::App& root) {
  auto* app = root.add_subcommand(
      "compare", "Matched-compute comparison: every config (method) under one budget, over seeds and extend factors");
  struct Args {
    train::CompareArgs c;
    train::ProtocolArgs p;
  };
  auto a = std::make_shared<Args>();
  app->add_option("configs", a->c.configs, "One config per method; the first is the baseline")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--set", a->c.overrides, "Override a config key in every config (repeatable)")->type_name("KEY=VALUE");
  app->add_option("--budget", a->c.budget, "Training wall-clock budget of every run (schedule.budget), e.g. 2m");
  app->add_option("--iterations", a->c.iterations, "Iterations of every run (schedule.iterations), instead of a budget")
      ->check(CLI::PositiveNumber);
  app->add_option("--extend", a->c.extend, "Schedule extension factors (schedule.extend), e.g. --extend 1,2")
      ->delimiter(',')
      ->type_name("F1,F2,...");
  add_protocol_options(*app, a->p, "runs/compare");
  app->footer(
      "One run directory per (method, seed, extend); finished runs are skipped, interrupted ones resume. compare.csv,\n"
      "compare.md (mIoU mean ± std over seeds, difference to the baseline ± its standard error, iterations, img/s,\n"
      "teacher and per-term cost share) and curves.png are rebuilt from every finished run in the directory.\n"
      "Examples:\n"
      "  mpirun -n 2 segkd compare configs/demo/compare/*.toml --budget 2m --seeds 3 --work-dir demo/compare\n"
      "  segkd compare configs/cityscapes/compare/*.toml --extend 1,2 --dry-run");
  return {app, [a] { return train::run_compare(a->c, a->p); }, true};
}

}  // namespace segkd::launch
