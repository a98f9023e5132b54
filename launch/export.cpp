#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_export(CLI::App& root) {
  auto* app = root.add_subcommand("export", "Export a checkpoint's student as a PyTorch state_dict (.pth)");
  struct Args {
    std::string checkpoint, out;
  };
  auto a = std::make_shared<Args>();
  app->add_option("checkpoint", a->checkpoint, "segkd checkpoint (.ckpt)")->required()->check(CLI::ExistingFile);
  app->add_option("--out", a->out, "Output .pth (mmsegmentation key names; torch.load reads it)")->required();
  return {app, [a] { return train::run_export(a->checkpoint, a->out); }, false};
}

}  // namespace segkd::launch
