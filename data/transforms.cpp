#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"
#include "data/random.h"

namespace segkd::data {

namespace {

void check_sample(const Sample& s) {
  if (s.height <= 0 || s.width <= 0 || s.image.size() != static_cast<size_t>(s.height * s.width * 3) ||
      s.label.size() != static_cast<size_t>(s.height * s.width))
    throw InputError(str_cat("sample '", s.name, "': image/label buffers do not match ", s.height, "x", s.width));
}

/// torch's bilinear source index (align_corners=false, no antialias), computed in float as ATen does.
struct Linear {
  int64_t i0, i1;
  float w1;
};
Linear linear_index(int64_t dst, int64_t in_size, int64_t out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in_size - 1);
  const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const float w1 = std::min(std::max(src - static_cast<float>(i0), 0.f), 1.f);
  return {i0, i1, w1};
}

/// torch's "nearest-exact" source index: pixel centres aligned, as the bilinear image is (plain "nearest" is
/// shifted by half an output pixel, which misaligns labels when downscaling).
int64_t nearest_index(int64_t dst, int64_t in_size, int64_t out_size) {
  if (in_size == out_size) return dst;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  return std::min(static_cast<int64_t>(std::floor((static_cast<float>(dst) + 0.5f) * scale)), in_size - 1);
}

/// mmseg PhotoMetricDistortion parameters for one sample.
struct Photo {
  bool enabled = false;
  double brightness = 0;      // added
  bool contrast_first = true;
  double contrast = 1;        // multiplied
  double saturation = 1;      // multiplies S in HSV
  double hue = 0;             // degrees added to H
};

inline float clamp255(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

void rgb_to_hsv(float r, float g, float b, float& h, float& s, float& v) {
  const float mx = std::max({r, g, b}), mn = std::min({r, g, b}), d = mx - mn;
  v = mx;
  s = mx > 0 ? d / mx : 0;
  if (d <= 0) {
    h = 0;
  } else if (mx == r) {
    h = 60.f * (g - b) / d;
  } else if (mx == g) {
    h = 60.f * (b - r) / d + 120.f;
  } else {
    h = 60.f * (r - g) / d + 240.f;
  }
  if (h < 0) h += 360.f;
}

void hsv_to_rgb(float h, float s, float v, float& r, float& g, float& b) {
  h = std::fmod(h, 360.f);
  if (h < 0) h += 360.f;
  const float c = v * s, hp = h / 60.f, x = c * (1 - std::fabs(std::fmod(hp, 2.f) - 1)), m = v - c;
  float r1 = 0, g1 = 0, b1 = 0;
  switch (static_cast<int>(hp) % 6) {
    case 0: r1 = c, g1 = x; break;
    case 1: r1 = x, g1 = c; break;
    case 2: g1 = c, b1 = x; break;
    case 3: g1 = x, b1 = c; break;
    case 4: r1 = x, b1 = c; break;
    default: r1 = c, b1 = x; break;
  }
  r = r1 + m, g = g1 + m, b = b1 + m;
}

inline void apply_photo(const Photo& p, float& r, float& g, float& b) {
  r = clamp255(r + p.brightness), g = clamp255(g + p.brightness), b = clamp255(b + p.brightness);
  if (p.contrast_first) r = clamp255(r * p.contrast), g = clamp255(g * p.contrast), b = clamp255(b * p.contrast);
  if (p.saturation != 1 || p.hue != 0) {
    float h, s, v;
    rgb_to_hsv(r, g, b, h, s, v);
    s = std::min(1.f, static_cast<float>(s * p.saturation));
    h += static_cast<float>(p.hue);
    hsv_to_rgb(h, s, v, r, g, b);
  }
  if (!p.contrast_first) r = clamp255(r * p.contrast), g = clamp255(g * p.contrast), b = clamp255(b * p.contrast);
}

}  // namespace

void augment_into(const Sample& s, const AugmentOptions& o, uint64_t seed, int64_t epoch, int64_t index,
                  float* image, int64_t* label) {
  check_sample(s);
  const int64_t ch = o.crop[0], cw = o.crop[1];
  if (ch <= 0 || cw <= 0) throw ConfigError(str_cat("data.crop must be positive, got ", ch, "x", cw));
  Rng rng(hash_key(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index), 0xa06));
  const double scale = rng.uniform(o.scale_range[0], o.scale_range[1]);
  const int64_t nh = std::max<int64_t>(1, static_cast<int64_t>(s.height * scale + 0.5));
  const int64_t nw = std::max<int64_t>(1, static_cast<int64_t>(s.width * scale + 0.5));
  const int64_t vh = std::min(ch, nh), vw = std::min(cw, nw);  // valid (unpadded) crop size
  const int64_t off_h = static_cast<int64_t>(rng.below(nh - vh + 1));
  const int64_t off_w = static_cast<int64_t>(rng.below(nw - vw + 1));
  const bool flip = o.flip && rng.coin(0.5);
  Photo photo;
  if (o.photometric) {
    photo.enabled = true;
    if (rng.coin()) photo.brightness = rng.uniform(-32, 32);
    photo.contrast_first = rng.coin();
    if (rng.coin()) photo.contrast = rng.uniform(0.5, 1.5);
    if (rng.coin()) photo.saturation = rng.uniform(0.5, 1.5);
    if (rng.coin()) photo.hue = 2.0 * rng.uniform(-18, 18);  // mmseg: OpenCV hue units (degrees / 2)
  }

  std::vector<Linear> xs(vw);
  std::vector<int64_t> xn(vw);
  for (int64_t x = 0; x < vw; ++x) {
    const int64_t xs_scaled = off_w + (flip ? vw - 1 - x : x);
    xs[x] = linear_index(xs_scaled, s.width, nw);
    xn[x] = nearest_index(xs_scaled, s.width, nw);
  }
  const float inv_std[3] = {static_cast<float>(1.0 / o.std[0]), static_cast<float>(1.0 / o.std[1]),
                            static_cast<float>(1.0 / o.std[2])};
  const float mean[3] = {static_cast<float>(o.mean[0]), static_cast<float>(o.mean[1]),
                         static_cast<float>(o.mean[2])};
  const int64_t plane = ch * cw;
  const uint8_t* src = s.image.data();
  const int64_t ignore = o.ignore_index;
  for (int64_t y = 0; y < ch; ++y) {
    float* out_r = image + y * cw;
    float* out_g = out_r + plane;
    float* out_b = out_g + plane;
    int64_t* out_l = label + y * cw;
    if (y >= vh) {
      std::fill(out_r, out_r + cw, 0.f);
      std::fill(out_g, out_g + cw, 0.f);
      std::fill(out_b, out_b + cw, 0.f);
      std::fill(out_l, out_l + cw, ignore);
      continue;
    }
    const Linear ly = linear_index(off_h + y, s.height, nh);
    const uint8_t* row0 = src + ly.i0 * s.width * 3;
    const uint8_t* row1 = src + ly.i1 * s.width * 3;
    const float wy1 = ly.w1, wy0 = 1.f - ly.w1;
    const uint8_t* lrow = s.label.data() + nearest_index(off_h + y, s.height, nh) * s.width;
    for (int64_t x = 0; x < vw; ++x) {
      const Linear& lx = xs[x];
      const float wx1 = lx.w1, wx0 = 1.f - lx.w1;
      const uint8_t* p00 = row0 + lx.i0 * 3;
      const uint8_t* p01 = row0 + lx.i1 * 3;
      const uint8_t* p10 = row1 + lx.i0 * 3;
      const uint8_t* p11 = row1 + lx.i1 * 3;
      float c[3];
      for (int k = 0; k < 3; ++k)
        c[k] = wy0 * (wx0 * p00[k] + wx1 * p01[k]) + wy1 * (wx0 * p10[k] + wx1 * p11[k]);
      if (photo.enabled) apply_photo(photo, c[0], c[1], c[2]);
      out_r[x] = (c[0] - mean[0]) * inv_std[0];
      out_g[x] = (c[1] - mean[1]) * inv_std[1];
      out_b[x] = (c[2] - mean[2]) * inv_std[2];
      out_l[x] = lrow[xn[x]];
    }
    for (int64_t x = vw; x < cw; ++x) out_r[x] = out_g[x] = out_b[x] = 0.f, out_l[x] = ignore;
  }
}

std::pair<torch::Tensor, torch::Tensor> augment(const Sample& s, const AugmentOptions& o, uint64_t seed,
                                                int64_t epoch, int64_t index) {
  auto image = torch::empty({3, o.crop[0], o.crop[1]}, torch::kFloat32);
  auto label = torch::empty({o.crop[0], o.crop[1]}, torch::kInt64);
  augment_into(s, o, seed, epoch, index, image.data_ptr<float>(), label.data_ptr<int64_t>());
  return {image, label};
}

std::pair<torch::Tensor, torch::Tensor> to_tensors(const Sample& s, const AugmentOptions& o) {
  check_sample(s);
  const int64_t h = s.height, w = s.width, plane = h * w;
  auto image = torch::empty({3, h, w}, torch::kFloat32);
  auto label = torch::empty({h, w}, torch::kInt64);
  float* img = image.data_ptr<float>();
  int64_t* lbl = label.data_ptr<int64_t>();
  for (int k = 0; k < 3; ++k) {
    const float m = static_cast<float>(o.mean[k]), inv = static_cast<float>(1.0 / o.std[k]);
    for (int64_t i = 0; i < plane; ++i) img[k * plane + i] = (s.image[i * 3 + k] - m) * inv;
  }
  for (int64_t i = 0; i < plane; ++i) lbl[i] = s.label[i];
  return {image, label};
}

}  // namespace segkd::data
