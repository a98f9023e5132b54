#pragma once
/// Evaluation: whole-image or sliding-window inference, per-rank confusion matrices all-reduced, mIoU.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "train/config.h"
#include "data/dataset.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "models/segmentor.h"

namespace segkd::train {

struct EvalResult {
  double miou = 0;                  ///< mean over classes present in ground truth or prediction (nanmean, as mmseg)
  double pixel_acc = 0;             ///< correct / valid pixels
  double mean_acc = 0;              ///< mean per-class recall
  std::vector<double> per_class_iou;  ///< NaN for a class absent from both ground truth and prediction
  torch::Tensor confusion;          ///< (C, C) int64, rows = ground truth, columns = prediction
  int64_t images = 0;               ///< images evaluated over all ranks
  double seconds = 0;
};

/// IoU_c = TP / (TP + FP + FN) from a (C, C) confusion matrix; mIoU ignores classes with an empty union.
EvalResult metrics_from_confusion(const torch::Tensor& confusion);

/// Class scores at input resolution (1, C, H, W) for one normalised image (1, 3, H, W). `mode` "whole" runs the
/// image at once; "slide" averages logits of crop windows (crop, stride), padding the image up to the crop size.
torch::Tensor infer_logits(models::Segmentor& model, const torch::Tensor& image, const EvalOptions& cfg);

/// A model's forward pass as evaluation sees it (a Segmentor, or the int8 execution of one).
using ForwardFn = std::function<ModelOutput(const torch::Tensor& images, const OutputRequest& request)>;
torch::Tensor infer_logits(const ForwardFn& forward, const torch::Tensor& image, const EvalOptions& cfg);

/// Evaluates `model` on `dataset`: rank r takes samples r, r+world, ... (no sample counted twice), confusion
/// matrices are summed over ranks. Every rank returns the same result. Progress with ETA on rank 0.
EvalResult evaluate(models::Segmentor& model, const data::H5Dataset& dataset, const data::AugmentOptions& aug,
                    const EvalOptions& cfg, dist::Communicator& comm, int64_t ignore_index);

/// The same for any forward pass of a `num_classes` model whose inputs live on `device`.
EvalResult evaluate(const ForwardFn& forward, int64_t num_classes, const torch::Device& device,
                    const data::H5Dataset& dataset, const data::AugmentOptions& aug, const EvalOptions& cfg,
                    dist::Communicator& comm, int64_t ignore_index);

}  // namespace segkd::train
