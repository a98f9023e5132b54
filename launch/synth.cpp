#include <regex>

#include "common/error.h"
#include "data/preprocess.h"
#include "launch/commands.h"

namespace segkd::launch {

Command add_synth(CLI::App& root) {
  auto* app = root.add_subcommand(
      "synth", "Generate a synthetic segmentation dataset (procedural scenes with exact labels, seeded)");
  auto o = std::make_shared<data::SynthOptions>();
  auto size = std::make_shared<std::string>("128x128");
  app->add_option("--out", o->out, "Output .h5")->required();
  app->add_option("--num", o->num, "Number of images")->required()->check(CLI::PositiveNumber);
  app->add_option("--size", *size, "Image size HxW (16 to 16384 per side)")->default_val("128x128");
  app->add_option("--classes", o->classes, "Number of classes")->default_val(8)->check(CLI::Range(2, 255));
  app->add_option("--seed", o->seed, "Random seed (same seed, same file)")->default_val(0);
  app->add_option("--workers", o->workers, "Generator threads")->default_val(2)->check(CLI::PositiveNumber);
  return {app, [o, size] {
            std::smatch m;
            static const std::regex kSize(R"((\d{1,9})x(\d{1,9}))");
            if (!std::regex_match(*size, m, kSize)) {
              throw Error("--size '" + *size + "': expected HxW (each at most " +
                          std::to_string(data::kMaxSynthSide) + "), e.g. 128x256");
            }
            o->height = std::stoll(m[1]);
            o->width = std::stoll(m[2]);
            if (o->height < 16 || o->width < 16) throw Error("--size '" + *size + "': at least 16x16");
            if (o->height > data::kMaxSynthSide || o->width > data::kMaxSynthSide) {
              throw Error("--size '" + *size + "': at most " + std::to_string(data::kMaxSynthSide) + " per side");
            }
            data::synthesize(*o);
            return 0;
          },
          false};
}

}  // namespace segkd::launch
