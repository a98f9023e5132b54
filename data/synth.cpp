// Procedural segmentation scenes for demos and tests (see synthesize() in preprocess.h).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/error.h"
#include "data/parallel_write.h"
#include "data/preprocess.h"
#include "data/random.h"

namespace segkd::data {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kTextures = 10;
const char* const kTextureNames[kTextures] = {"hstripes", "vstripes", "checker", "diag",  "dots",
                                              "fine-diag", "wide-hstripes", "blobs", "grid", "speckle"};
constexpr int kShapes = 5;
const char* const kShapeNames[kShapes] = {"disk", "square", "triangle", "ring", "cross"};

/// Class layout for C classes: S stuff classes, then object classes in context pairs.
struct Layout {
  int64_t classes, stuff, objects, base_types;
  explicit Layout(int64_t c) : classes(c), stuff((c + 1) / 2), objects(c / 2), base_types((c / 2 + 1) / 2) {}
  /// Texture of stuff class s; period multiplier grows for s >= kTextures so classes stay distinct.
  int stuff_texture(int64_t s) const { return static_cast<int>(s % kTextures); }
  double stuff_period(int64_t s) const { return std::pow(1.7, static_cast<double>(s / kTextures)); }
  /// Object base type b: a shape and the texture of another stuff class (texture alone does not identify it).
  int object_shape(int64_t b) const { return static_cast<int>(b % kShapes); }
  int64_t object_texture_class(int64_t b) const { return (b + 1 + b / kShapes) % stuff; }
  bool has_pair(int64_t b) const { return 2 * b + 1 < objects; }
  int64_t object_class(int64_t b, int64_t stuff_under) const {
    return stuff + 2 * b + (has_pair(b) ? (stuff_under % 2) : 0);
  }
};

/// Texture value in [0, 1] at pattern coordinates (u, v) (pixels, already rotated/scaled).
inline float texture(int t, double u, double v, double period, uint64_t salt) {
  switch (t) {
    case 0: return 0.5f + 0.5f * static_cast<float>(std::sin(2 * kPi * v / (6 * period)));
    case 1: return 0.5f + 0.5f * static_cast<float>(std::sin(2 * kPi * u / (6 * period)));
    case 2: {
      const int64_t a = static_cast<int64_t>(std::floor(u / (4 * period))), b = static_cast<int64_t>(std::floor(v / (4 * period)));
      return ((a + b) & 1) ? 1.f : 0.f;
    }
    case 3: return 0.5f + 0.5f * static_cast<float>(std::sin(2 * kPi * (u + v) / (7 * period)));
    case 4: {
      const double p = 7 * period;
      const double du = u - p * std::floor(u / p) - p / 2, dv = v - p * std::floor(v / p) - p / 2;
      return du * du + dv * dv < (0.3 * p) * (0.3 * p) ? 1.f : 0.f;
    }
    case 5: return 0.5f + 0.5f * static_cast<float>(std::sin(2 * kPi * (u - v) / (4.5 * period)));
    case 6: return std::sin(2 * kPi * v / (13 * period)) > 0 ? 1.f : 0.f;
    case 7: {
      const double s = 1.0 / (9 * period);
      return 0.5f + 0.25f * static_cast<float>(std::sin(u * s * 2.1 + std::sin(v * s * 1.3)) +
                                               std::sin(v * s * 2.4 + std::sin(u * s * 1.7)));
    }
    case 8: {
      const double p = 8 * period;
      const double fu = u - p * std::floor(u / p), fv = v - p * std::floor(v / p);
      return (fu < 1.6 * period || fv < 1.6 * period) ? 1.f : 0.f;
    }
    default: {
      const int64_t cu = static_cast<int64_t>(std::floor(u / (2 * period)));
      const int64_t cv = static_cast<int64_t>(std::floor(v / (2 * period)));
      return (mix64(salt ^ (static_cast<uint64_t>(cu) * 0x9e3779b1ULL) ^ (static_cast<uint64_t>(cv) << 32)) & 1) ? 1.f : 0.f;
    }
  }
}

struct Surface {  // how a region or object is painted
  int texture = 0;
  double period = 1, cos_a = 1, sin_a = 0, phase_u = 0, phase_v = 0;
  float c0[3], c1[3];
  uint64_t salt = 0;
};

/// Class palette: a base colour per class index (stuff class, or object base type offset by the stuff count).
/// Colours are jittered per surface so they overlap between classes: colour narrows a pixel's class down, texture,
/// shape and context decide it — a model learns the easy cue within minutes and keeps improving on the hard ones.
void palette(int64_t key, float out[3]) {
  static const float kBase[8][3] = {{200, 70, 60},  {70, 170, 80},  {70, 90, 200},  {210, 190, 70},
                                    {170, 80, 190}, {70, 190, 190}, {150, 150, 150}, {230, 130, 40}};
  const float* b = kBase[key % 8];
  const float shift = static_cast<float>(key / 8) * 37.f;  // beyond 8 classes: rotate the palette
  for (int k = 0; k < 3; ++k) out[k] = std::fmod(b[(k + key / 8) % 3] + shift, 230.f);
}

Surface random_surface(Rng& rng, int texture_id, double period, int64_t colour_key) {
  Surface s;
  s.texture = texture_id;
  s.period = period;
  const double angle = rng.uniform(-0.14, 0.14);  // ±8 degrees: orientation still identifies the texture
  s.cos_a = std::cos(angle);
  s.sin_a = std::sin(angle);
  s.phase_u = rng.uniform(0, 100);
  s.phase_v = rng.uniform(0, 100);
  s.salt = rng.next();
  float base[3];
  palette(colour_key, base);
  const double contrast = rng.uniform(50, 110), sign = rng.below(2) ? 1.0 : -1.0;
  for (int k = 0; k < 3; ++k) {
    s.c0[k] = static_cast<float>(std::clamp(base[k] + rng.uniform(-45, 45), 10.0, 245.0));
    const double dir = sign * rng.uniform(0.5, 1.0);  // every channel carries the texture, none is flat
    s.c1[k] = static_cast<float>(std::clamp(s.c0[k] + dir * contrast, 0.0, 255.0));
  }
  return s;
}

inline void paint(const Surface& s, double x, double y, float out[3]) {
  const double u = s.cos_a * x - s.sin_a * y + s.phase_u, v = s.sin_a * x + s.cos_a * y + s.phase_v;
  const float t = texture(s.texture, u, v, s.period, s.salt);
  for (int k = 0; k < 3; ++k) out[k] = s.c0[k] + t * (s.c1[k] - s.c0[k]);
}

struct Object {
  int shape;
  int64_t cls;
  double cx, cy, r, cos_r, sin_r;
  Surface surface;
};

inline bool inside(const Object& o, double x, double y) {
  const double dx = x - o.cx, dy = y - o.cy;
  const double u = (o.cos_r * dx + o.sin_r * dy) / o.r, v = (-o.sin_r * dx + o.cos_r * dy) / o.r;
  switch (o.shape) {
    case 0: return u * u + v * v <= 1;
    case 1: return std::fabs(u) <= 0.8 && std::fabs(v) <= 0.8;
    case 2: return v <= 0.6 && v >= -1.0 + 1.8 * std::fabs(u) * 1.0 / 1.05 && std::fabs(u) <= 1.05;
    case 3: {
      const double d = u * u + v * v;
      return d <= 1 && d >= 0.36;
    }
    default: return (std::fabs(u) <= 1 && std::fabs(v) <= 0.33) || (std::fabs(v) <= 1 && std::fabs(u) <= 0.33);
  }
}

/// The background ("stuff"): warped Voronoi cells, each with a class and a surface.
struct Stuff {
  std::vector<double> sx, sy, warp_x, warp_y;
  std::vector<int64_t> cls;
  std::vector<Surface> surface;

  /// The cell under the (unwarped) point (x, y).
  int cell_at(double x, double y) const {
    int best = 0;
    double best_d = 1e300;
    for (size_t c = 0; c < sx.size(); ++c) {
      const double dx = x - sx[c], dy = y - sy[c], d = dx * dx + dy * dy;
      if (d < best_d) best_d = d, best = static_cast<int>(c);
    }
    return best;
  }
  /// The cell of pixel centre (fx, fy) in row y, column x, after the warp.
  int warped_cell(double fx, double fy, int64_t y, int64_t x) const { return cell_at(fx + warp_x[y], fy + warp_y[x]); }
};

Stuff make_stuff(const Layout& L, Rng& rng, double g, double m, int64_t H, int64_t W) {
  Stuff st;
  const int cells = 3 + static_cast<int>(rng.below(4));
  st.sx.resize(cells), st.sy.resize(cells), st.cls.resize(cells), st.surface.resize(cells);
  for (int c = 0; c < cells; ++c) {
    st.sx[c] = rng.uniform(0, W);
    st.sy[c] = rng.uniform(0, H);
    st.cls[c] = static_cast<int64_t>(rng.below(L.stuff));
    st.surface[c] = random_surface(rng, L.stuff_texture(st.cls[c]), g * L.stuff_period(st.cls[c]), st.cls[c]);
  }
  const double amp = rng.uniform(0.03, 0.09) * m, wave = rng.uniform(0.25, 0.6) * m;
  const double ph1 = rng.uniform(0, 2 * kPi), ph2 = rng.uniform(0, 2 * kPi);
  st.warp_x.resize(H), st.warp_y.resize(W);
  for (int64_t y = 0; y < H; ++y) st.warp_x[y] = amp * std::sin(2 * kPi * y / wave + ph1);
  for (int64_t x = 0; x < W; ++x) st.warp_y[x] = amp * std::sin(2 * kPi * x / wave + ph2);
  return st;
}

/// Objects, later ones occlude earlier ones; class from shape+texture and the stuff class under the centre.
std::vector<Object> make_objects(const Layout& L, Rng& rng, const Stuff& st, double g, double m, int64_t H, int64_t W) {
  std::vector<Object> objects;
  if (L.objects <= 0) return objects;
  const int count = 2 + static_cast<int>(rng.below(5));
  for (int k = 0; k < count; ++k) {
    Object o;
    const int64_t b = static_cast<int64_t>(rng.below(L.base_types));
    o.shape = L.object_shape(b);
    o.cx = rng.uniform(0, W);
    o.cy = rng.uniform(0, H);
    o.r = m * rng.uniform(0.05, 0.2);
    const double rot = rng.uniform(0, 2 * kPi);
    o.cos_r = std::cos(rot);
    o.sin_r = std::sin(rot);
    const int64_t xi = std::clamp<int64_t>(static_cast<int64_t>(o.cx), 0, W - 1);
    const int64_t yi = std::clamp<int64_t>(static_cast<int64_t>(o.cy), 0, H - 1);
    const int64_t under = st.cls[st.warped_cell(o.cx, o.cy, yi, xi)];
    o.cls = L.object_class(b, under);
    const int64_t tc = L.object_texture_class(b);
    o.surface = random_surface(rng, L.stuff_texture(tc), g * L.stuff_period(tc), L.stuff + b);
    objects.push_back(o);
  }
  return objects;
}

Sample make_scene(const Layout& L, uint64_t seed, int64_t i, int64_t H, int64_t W) {
  Rng rng(hash_key(seed, static_cast<uint64_t>(i), 0x5e17));
  const double g = rng.uniform(0.9, 1.5);  // global texture scale: objects and textures at varied scales
  const double m = static_cast<double>(std::min(H, W));
  const Stuff stuff = make_stuff(L, rng, g, m, H, W);
  const std::vector<Object> objects = make_objects(L, rng, stuff, g, m, H, W);

  // Illumination gradient and noise.
  const double gx = rng.uniform(-0.25, 0.25), gy = rng.uniform(-0.25, 0.25);
  const double noise = rng.uniform(2, 8);
  const uint64_t noise_salt = rng.next();

  Sample s;
  char name[32];
  std::snprintf(name, sizeof(name), "synth_%06lld", static_cast<long long>(i));
  s.name = name;
  s.height = H;
  s.width = W;
  s.image.resize(H * W * 3);
  s.label.resize(H * W);
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const double fx = x + 0.5, fy = y + 0.5;
      const Surface* surf = nullptr;
      int64_t cls = -1;
      for (auto it = objects.rbegin(); it != objects.rend(); ++it)
        if (inside(*it, fx, fy)) {
          surf = &it->surface;
          cls = it->cls;
          break;
        }
      if (!surf) {
        const int c = stuff.warped_cell(fx, fy, y, x);
        surf = &stuff.surface[c];
        cls = stuff.cls[c];
      }
      float rgb[3];
      paint(*surf, fx, fy, rgb);
      const float light = static_cast<float>(1.0 + gx * (fx / W - 0.5) * 2 + gy * (fy / H - 0.5) * 2);
      const uint64_t h = mix64(noise_salt ^ static_cast<uint64_t>(y * W + x));
      for (int k = 0; k < 3; ++k) {
        const float n = static_cast<float>((static_cast<int>((h >> (16 * k)) & 0xffff) / 65535.0 - 0.5) * 2 * noise);
        s.image[(y * W + x) * 3 + k] = static_cast<uint8_t>(std::clamp(rgb[k] * light + n, 0.f, 255.f) + 0.5f);
      }
      s.label[y * W + x] = static_cast<uint8_t>(cls);
    }
  }
  return s;
}

}  // namespace

DatasetInfo synth_info(int64_t classes) {
  const Layout L(classes);
  DatasetInfo info = generic_info(classes);
  for (int64_t s = 0; s < L.stuff; ++s)
    info.class_names[s] = str_cat("stuff-", kTextureNames[L.stuff_texture(s)],
                                  s >= kTextures ? str_cat("-x", s / kTextures + 1) : std::string());
  for (int64_t c = L.stuff; c < classes; ++c) {
    const int64_t b = (c - L.stuff) / 2;
    info.class_names[c] = str_cat(kShapeNames[L.object_shape(b)], "-", kTextureNames[L.stuff_texture(L.object_texture_class(b))],
                                  L.has_pair(b) ? ((c - L.stuff) % 2 ? "-on-odd" : "-on-even") : "", "-", b);
  }
  return info;
}

Sample synth_sample(int64_t classes, uint64_t seed, int64_t index, int64_t height, int64_t width) {
  if (classes < 2 || classes > 255) throw ConfigError(str_cat("synth: classes must be in [2, 255], got ", classes));
  return make_scene(Layout(classes), seed, index, height, width);
}

void synthesize(const SynthOptions& o) {
  if (o.out.empty()) throw ConfigError("synth: --out is required");
  if (o.num <= 0) throw ConfigError(str_cat("synth: --num must be > 0, got ", o.num));
  if (o.height < 8 || o.width < 8) throw ConfigError(str_cat("synth: --size must be at least 8x8, got ", o.height, "x", o.width));
  if (o.height > kMaxSynthSide || o.width > kMaxSynthSide) {
    throw ConfigError(str_cat("synth: --size ", o.height, "x", o.width, " is too large: at most ", kMaxSynthSide,
                              " per side"));
  }
  if (o.classes < 2 || o.classes > 255) throw ConfigError(str_cat("synth: --classes must be in [2, 255], got ", o.classes));
  const Layout L(o.classes);
  try {
    detail::write_parallel(
        o.num, o.workers, [&](int64_t i) { return make_scene(L, o.seed, i, o.height, o.width); }, {o.out},
        synth_info(o.classes), o.compression, o.progress, "synth");
  } catch (const std::exception& e) {
    const auto requested = out_of_memory_request(e);
    if (!requested) throw;
    // write_parallel has removed the partial file; each worker builds whole scenes in memory.
    throw Error(out_of_memory_message(*requested, str_cat(" generating ", o.height, "x", o.width, " scenes on ",
                                                          o.workers, " worker(s) (synth --size ", o.height, "x",
                                                          o.width, " --workers ", o.workers,
                                                          "): use a smaller --size or fewer --workers")));
  }
}

}  // namespace segkd::data
