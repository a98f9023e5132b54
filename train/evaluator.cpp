#include "train/evaluator.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "common/error.h"
#include "data/sampler.h"
#include "train/progress.h"

namespace segkd::train {

namespace F = torch::nn::functional;

EvalResult metrics_from_confusion(const torch::Tensor& confusion) {
  EvalResult r;
  r.confusion = confusion;
  auto cm = confusion.to(torch::kDouble);
  auto tp = cm.diag();
  auto gt = cm.sum(1);
  auto pred = cm.sum(0);
  auto uni = gt + pred - tp;
  const int64_t c = cm.size(0);
  double iou_sum = 0, acc_sum = 0;
  int64_t iou_n = 0, acc_n = 0;
  r.per_class_iou.resize(c);
  for (int64_t k = 0; k < c; ++k) {
    double u = uni[k].item<double>();
    double t = tp[k].item<double>();
    double g = gt[k].item<double>();
    r.per_class_iou[k] = u > 0 ? t / u : std::numeric_limits<double>::quiet_NaN();
    if (u > 0) iou_sum += t / u, ++iou_n;
    if (g > 0) acc_sum += t / g, ++acc_n;
  }
  double total = cm.sum().item<double>();
  r.miou = iou_n ? iou_sum / iou_n : 0.0;
  r.mean_acc = acc_n ? acc_sum / acc_n : 0.0;
  r.pixel_acc = total > 0 ? tp.sum().item<double>() / total : 0.0;
  return r;
}

torch::Tensor infer_logits(models::Segmentor& model, const torch::Tensor& image, const EvalOptions& cfg) {
  return infer_logits([&](const torch::Tensor& x, const OutputRequest& r) { return model->forward(x, r); }, image,
                      cfg);
}

torch::Tensor infer_logits(const ForwardFn& forward, const torch::Tensor& image, const EvalOptions& cfg) {
  const int64_t h = image.size(2), w = image.size(3);
  OutputRequest req;
  req.aux_logits = false;
  auto upsample = [](const torch::Tensor& logits, int64_t oh, int64_t ow) {
    return F::interpolate(logits, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{oh, ow})
                                      .mode(torch::kBilinear)
                                      .align_corners(false));
  };
  if (cfg.mode == "whole") return upsample(forward(image, req).logits, h, w);

  const int64_t ch = cfg.slide_crop[0], cw = cfg.slide_crop[1];
  const int64_t sh = cfg.slide_stride[0], sw = cfg.slide_stride[1];
  const int64_t ph = std::max(h, ch), pw = std::max(w, cw);
  auto padded = F::pad(image, F::PadFuncOptions({0, pw - w, 0, ph - h}));
  const int64_t grid_h = std::max<int64_t>(ph - ch + sh - 1, 0) / sh + 1;
  const int64_t grid_w = std::max<int64_t>(pw - cw + sw - 1, 0) / sw + 1;
  torch::Tensor sum, count = torch::zeros({1, 1, ph, pw}, image.options());
  for (int64_t gy = 0; gy < grid_h; ++gy) {
    for (int64_t gx = 0; gx < grid_w; ++gx) {
      int64_t y1 = std::max<int64_t>(std::min(gy * sh + ch, ph) - ch, 0);
      int64_t x1 = std::max<int64_t>(std::min(gx * sw + cw, pw) - cw, 0);
      auto crop = padded.slice(2, y1, y1 + ch).slice(3, x1, x1 + cw);
      auto logits = upsample(forward(crop, req).logits, ch, cw);
      if (!sum.defined()) sum = torch::zeros({1, logits.size(1), ph, pw}, logits.options());
      sum.slice(2, y1, y1 + ch).slice(3, x1, x1 + cw).add_(logits);
      count.slice(2, y1, y1 + ch).slice(3, x1, x1 + cw).add_(1);
    }
  }
  return (sum / count).slice(2, 0, h).slice(3, 0, w);
}

EvalResult evaluate(models::Segmentor& model, const data::H5Dataset& dataset, const data::AugmentOptions& aug,
                    const EvalOptions& cfg, dist::Communicator& comm, int64_t ignore_index) {
  const bool was_training = model->is_training();
  model->eval();
  // Collectives run on the model's device (NCCL needs device tensors); bincount runs there too.
  const auto device = model->parameters().front().device();
  auto r = evaluate([&](const torch::Tensor& x, const OutputRequest& req) { return model->forward(x, req); },
                    model->num_classes(), device, dataset, aug, cfg, comm, ignore_index);
  if (was_training) model->train();
  return r;
}

EvalResult evaluate(const ForwardFn& forward, int64_t num_classes, const torch::Device& device,
                    const data::H5Dataset& dataset, const data::AugmentOptions& aug, const EvalOptions& cfg,
                    dist::Communicator& comm, int64_t ignore_index) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t c = num_classes;
  torch::NoGradGuard no_grad;
  auto confusion = torch::zeros({c * c}, torch::TensorOptions(torch::kLong).device(device));
  const auto indices = data::val_indices(dataset.size(), comm.rank(), comm.size());
  Progress progress("eval", static_cast<int64_t>(indices.size()), /*enabled=*/comm.rank() == 0);
  for (size_t i = 0; i < indices.size(); ++i) {
    auto sample = dataset.get(indices[i]);
    auto [image, label] = data::to_tensors(sample, aug);
    auto pred = infer_logits(forward, image.unsqueeze(0).to(device), cfg).argmax(1).squeeze(0);
    label = label.to(device);
    auto valid = label != ignore_index;
    auto gt = label.masked_select(valid);
    auto pr = pred.masked_select(valid);
    SEGKD_CHECK(gt.numel() == 0 || gt.max().item<int64_t>() < c, "label value ", gt.max().item<int64_t>(),
                " >= num_classes ", c, " in validation sample '", sample.name, "'");
    confusion.add_(torch::bincount(gt * c + pr, /*weights=*/{}, /*minlength=*/c * c));
    progress.update(static_cast<int64_t>(i) + 1);
  }
  auto count = torch::tensor({static_cast<int64_t>(indices.size())}, torch::kLong).to(device);
  comm.all_reduce(confusion);
  comm.all_reduce(count);
  auto r = metrics_from_confusion(confusion.view({c, c}).cpu());
  r.images = count.item<int64_t>();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace segkd::train
