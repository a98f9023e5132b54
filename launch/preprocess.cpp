#include "data/preprocess.h"
#include "launch/commands.h"

namespace segkd::launch {

Command add_preprocess(CLI::App& root) {
  auto* app = root.add_subcommand("preprocess", "Convert a dataset in its published layout to segkd HDF5 shards");
  auto o = std::make_shared<data::PreprocessOptions>();
  app->add_option("--format", o->format, "Source layout")
      ->required()
      ->check(CLI::IsMember({"cityscapes", "ade20k", "voc", "folder"}));
  app->add_option("--root", o->root, "Dataset root directory")->required()->check(CLI::ExistingDirectory);
  app->add_option("--split", o->split, "Split to convert")->required()->check(CLI::IsMember({"train", "val"}));
  app->add_option("--out", o->out, "Output .h5 (with --shards N: <out>-00000-of-0000N.h5 ...)")->required();
  app->add_option("--shards", o->shards, "Number of shard files")->default_val(1)->check(CLI::PositiveNumber);
  app->add_option("--workers", o->workers, "Decoding threads")->default_val(2)->check(CLI::PositiveNumber);
  app->add_option("--classes", o->classes, "Number of classes (folder format)");
  app->add_option("--compression", o->compression, "gzip level 0-9 for the pixel arrays (0 = none, fastest reads)")
      ->default_val(0)
      ->check(CLI::Range(0, 9));
  app->footer(
      "Layouts:\n"
      "  cityscapes  leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelIds.png\n"
      "  ade20k      ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/.../*.png\n"
      "  voc         JPEGImages/*.jpg + SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt\n"
      "  folder      images/ + labels/ matched by file stem (--classes N)");
  return {app, [o] {
            data::preprocess(*o);
            return 0;
          },
          false};
}

}  // namespace segkd::launch
