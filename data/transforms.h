#pragma once
/// Train and eval transforms. Every random draw of the train transform is derived from (seed, epoch, sample
/// index), so a sample's augmentation does not depend on which thread runs it or when.
///
/// Train pipeline (mmsegmentation order): rescale by s ~ U(scale_range) relative to the sample's own size
/// (new size = floor(size*s + 0.5); bilinear image with align_corners=false, "nearest-exact" label — the same
/// index formulas as torch's interpolate, pixel centres aligned), random crop of min(crop, scaled size), horizontal flip with p = 0.5,
/// optional photometric distortion (brightness, contrast, saturation, hue, as mmseg's PhotoMetricDistortion),
/// normalisation ((v - mean) / std, CHW float), and padding to `crop` at the bottom/right: image 0 (after
/// normalisation, as mmseg pads), label `ignore_index`. Only the crop window is resampled, so a 2x scale of a
/// 1024x2048 image costs no more than the crop itself.
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <utility>

#include "data/dataset.h"
#include "data/options.h"

namespace segkd::data {

/// Train transform: randomness derived only from (seed, epoch, sample index). Returns image (3,crop_h,crop_w)
/// float and label (crop_h,crop_w) int64.
std::pair<torch::Tensor, torch::Tensor> augment(const Sample& s, const AugmentOptions& o, uint64_t seed,
                                                int64_t epoch, int64_t index);

/// The same transform writing into caller-owned memory: `image` holds 3*crop_h*crop_w floats (CHW), `label`
/// crop_h*crop_w int64. Uses plain loops only (no ATen parallelism), so loader threads never oversubscribe.
void augment_into(const Sample& s, const AugmentOptions& o, uint64_t seed, int64_t epoch, int64_t index,
                  float* image, int64_t* label);

/// Eval transform: whole image, normalised: image (3,H,W) float, label (H,W) int64.
std::pair<torch::Tensor, torch::Tensor> to_tensors(const Sample& s, const AugmentOptions& o);

}  // namespace segkd::data
