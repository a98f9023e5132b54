#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_train(CLI::App& root) {
  auto* app = root.add_subcommand("train", "Train a student (with KD from [teacher], or supervised without it)");
  struct Args {
    train::ConfigArgs c;
    std::string work_dir, resume;
    bool overwrite = false;
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--work-dir", a->work_dir, "Run directory (overrides run.work_dir)");
  app->add_option("--resume", a->resume,
                  "Continue from a checkpoint: 'auto' = newest valid one in the run directory (damaged ones are "
                  "reported and skipped), or a path to a .ckpt")
      ->type_name("auto|PATH");
  app->add_flag("--overwrite", a->overwrite,
                "Start afresh in a run directory that holds another run's checkpoints: deletes them (and its "
                "metrics.jsonl, summary.json) once start-up has succeeded. Without it such a directory is refused");
  app->footer(
      "Examples:\n"
      "  mpirun -n 2 segkd train configs/demo/student_logit_kd.toml\n"
      "  srun segkd train configs/cityscapes/pspnet_r18_logit_kd.toml --set schedule.budget=2h\n"
      "  segkd train CONFIG --set distill.0.tau=4 --resume auto");
  return {app, [a] { return train::run_train(a->c, a->work_dir, a->resume, a->overwrite); }, true};
}

}  // namespace segkd::launch
