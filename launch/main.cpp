// segkd: knowledge distillation for semantic segmentation. main() parses arguments, initialises the distributed
// runtime when the subcommand needs it, and calls a library function; every error ends all ranks with a one-line
// reason on stderr.
#include <iostream>
#include <memory>

#include "train/config.h"
#include "common/error.h"
#include "distributed/agreement.h"
#include "distributed/runtime.h"
#include "launch/commands.h"

namespace segkd::launch {

void add_config_options(CLI::App& app, std::string& config, std::vector<std::string>& overrides) {
  app.add_option("config", config, "Experiment TOML file (see configs/)")->required()->check(CLI::ExistingFile);
  app.add_option("--set", overrides,
                 "Override a config key, e.g. --set optimizer.lr=0.02 --set distill.0.tau=4 (repeatable; value is "
                 "TOML, bare words are strings)")
      ->type_name("KEY=VALUE");
}

}  // namespace segkd::launch

int main(int argc, char** argv) {
  using namespace segkd::launch;
  CLI::App app{
      "segkd — knowledge distillation for semantic segmentation, data-parallel over MPI ranks or GPUs.\n"
      "Run under mpirun/srun for several ranks, or as one process to debug."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "segkd 0.1.0");
  std::vector<Command> commands{add_train(app),   add_eval(app),   add_predict(app),
                                add_preprocess(app), add_synth(app), add_export(app),
                                add_sweep(app),   add_compare(app), add_info(app),   add_report(app)};
  // CLI11 would call a mistyped subcommand "a positional argument"; name it and suggest the nearest one.
  if (argc > 1 && argv[1][0] != '-') {
    std::string given = argv[1], nearest;
    size_t best = std::string::npos;
    bool known = false;
    for (auto& cmd : commands) {
      known = known || cmd.app->get_name() == given;
      size_t d = segkd::edit_distance(given, cmd.app->get_name());
      if (d < best) best = d, nearest = cmd.app->get_name();
    }
    if (!known) {
      std::cerr << "segkd: error: unknown subcommand '" << given << "'"
                << (best <= 3 ? " (did you mean '" + nearest + "'?)" : std::string()) << "; see segkd --help\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  for (auto& cmd : commands) {
    if (!cmd.app->parsed()) continue;
    if (!cmd.uses_mpi) {
      try {
        return cmd.run();
      } catch (const std::exception& e) {
        std::cerr << "segkd: error: " << segkd::one_line_what(e) << "\n";
        return 1;
      }
    }
    int code = segkd::dist::run_guarded([&] {
      segkd::dist::init(&argc, &argv);
      segkd::dist::check_command_line_agreement(argc, argv);  // before any rank enters a command's collectives
      return cmd.run();
    });
    segkd::dist::finalize();
    return code;
  }
  return 2;
}
