// PLplot pictures: curves.png and the panel's column titles.
#include "train/plot.h"

#include <plplot/plstream.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

/// Line colours (Tableau 10): distinguishable, also in grey print.
constexpr std::array<std::array<int, 3>, 10> kColours{{{31, 119, 180},
                                                       {255, 127, 14},
                                                       {44, 160, 44},
                                                       {214, 39, 40},
                                                       {148, 103, 189},
                                                       {140, 86, 75},
                                                       {227, 119, 194},
                                                       {127, 127, 127},
                                                       {188, 189, 34},
                                                       {23, 190, 207}}};
constexpr int kFirstLine = 2;                               // cmap0: 0 background, 1 axes and text
constexpr int kFirstBand = kFirstLine + int(kColours.size());

/// PLplot ends the process on errors it cannot handle (plexit), so everything it could trip on is checked first.
void require_device(const char* device) {
  constexpr int kMax = 128;
  std::array<const char*, kMax> menus{}, names{};
  const char** menu_ptr = menus.data();
  const char** name_ptr = names.data();
  int n = kMax;
  plgDevs(&menu_ptr, &name_ptr, &n);
  for (int i = 0; i < n; ++i) {
    if (names[i] && std::string(names[i]) == device) return;
  }
  throw Error(str_cat("PLplot has no '", device, "' output device (install the Debian package plplot-driver-cairo)"));
}

/// Creates `out` (and its directory) so PLplot's own open cannot fail.
void require_writable(const std::string& out) {
  const auto parent = fs::path(out).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  std::ofstream probe(out, std::ios::binary | std::ios::trunc);
  if (!probe) throw InputError(str_cat("cannot write ", out));
}

/// A stream with white background and black foreground; cmap0 colour 15 (white by default) is never used.
std::unique_ptr<plstream> make_stream(const char* device) {
  auto pls = std::make_unique<plstream>();
  pls->sdev(device);
  pls->scmap0n(kFirstBand + int(kColours.size()));
  pls->scolbg(255, 255, 255);
  pls->scol0(1, 0, 0, 0);
  for (size_t i = 0; i < kColours.size(); ++i) {
    const auto& c = kColours[i];
    pls->scol0a(kFirstLine + int(i), c[0], c[1], c[2], 1.0);
    pls->scol0a(kFirstBand + int(i), c[0], c[1], c[2], 0.2);
  }
  return pls;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  /// Padded by 5% (or by 1 when empty of width), so no point sits on the frame.
  std::pair<double, double> padded() const {
    const double pad = hi > lo ? 0.05 * (hi - lo) : std::max(1.0, std::abs(hi) * 0.05);
    return {lo - pad, hi + pad};
  }
};

void draw_chart(plstream& pls, const PlotChart& chart) {
  Range xr, yr;
  for (auto& s : chart.series) {
    for (double v : s.x) xr.add(v);
    for (double v : s.y) yr.add(v);
    for (double v : s.lo) yr.add(v);
    for (double v : s.hi) yr.add(v);
  }
  if (!(xr.lo <= xr.hi) || !(yr.lo <= yr.hi)) throw InputError(str_cat("chart '", chart.title, "' has no finite point"));
  if (chart.x_from_zero) xr.add(0.0);
  auto [x0, x1] = xr.padded();
  if (chart.x_from_zero && xr.lo >= 0) x0 = 0;
  const auto [y0, y1] = yr.padded();
  pls.adv(0);
  pls.schr(0, 0.8);  // the default size clips the axis labels at 700 x 560 pixels
  pls.vpor(0.125, 0.70, 0.15, 0.90);  // the right 30% of the subpage holds the legend
  pls.wind(x0, x1, y0, y1);
  pls.col0(1);
  pls.width(1.0);
  pls.box("bcnstg", 0, 0, "bcnstvg", 0, 0);
  pls.lab(chart.x_label.c_str(), chart.y_label.c_str(), chart.title.c_str());
  std::vector<PLINT> opts, colours, styles, symbol_numbers;
  std::vector<PLFLT> widths, symbol_scales;
  std::vector<const char*> texts, symbols;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const auto& s = chart.series[i];
    const size_t c = (s.colour >= 0 ? size_t(s.colour) : i) % kColours.size();
    const int line = kFirstLine + int(c), band = kFirstBand + int(c);
    if (!s.lo.empty() && s.lo.size() == s.x.size() && s.hi.size() == s.x.size() && s.x.size() > 1) {
      std::vector<PLFLT> px(s.x), py(s.hi);
      px.insert(px.end(), s.x.rbegin(), s.x.rend());
      py.insert(py.end(), s.lo.rbegin(), s.lo.rend());
      pls.col0(band);
      pls.fill(static_cast<PLINT>(px.size()), px.data(), py.data());
    }
    pls.col0(line);
    pls.width(2.0);
    const PLINT style = std::clamp(s.style, 1, 8);
    if (s.x.size() > 1) {
      pls.lsty(style);
      pls.line(static_cast<PLINT>(s.x.size()), s.x.data(), s.y.data());
      pls.lsty(1);
    } else if (s.x.size() == 1) {
      pls.poin(1, s.x.data(), s.y.data(), 17);  // a filled dot, with the range as an error bar
      if (s.lo.size() == 1 && s.hi.size() == 1) {
        PLFLT ex[2] = {s.x[0], s.x[0]}, ey[2] = {s.lo[0], s.hi[0]};
        pls.line(2, ex, ey);
      }
    }
    opts.push_back(s.x.size() > 1 ? PL_LEGEND_LINE : PL_LEGEND_SYMBOL);
    colours.push_back(line);
    styles.push_back(style);
    widths.push_back(2.0);
    symbol_numbers.push_back(1);
    symbol_scales.push_back(1.0);
    texts.push_back(s.label.c_str());
    symbols.push_back("#(728)");  // a filled circle in Hershey glyphs
  }
  pls.col0(1);
  pls.width(1.0);
  PLFLT legend_w = 0, legend_h = 0;
  const PLINT n = static_cast<PLINT>(texts.size());
  pls.legend(&legend_w, &legend_h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_SUBPAGE | PL_POSITION_INSIDE | PL_POSITION_RIGHT | PL_POSITION_TOP, 0.01, 0.10, 0.06, 0, 1,
             1, 0, 0, n, opts.data(), 1.0, n > 10 ? 0.7 : 0.9, n > 10 ? 1.6 : 2.0,  // smaller and closer: 16 lines fit
             0.0, colours.data(), texts.data(), nullptr, nullptr, nullptr, nullptr,
             colours.data(), styles.data(), widths.data(), colours.data(), symbol_scales.data(), symbol_numbers.data(),
             symbols.data());
}

}  // namespace

void plot_charts(const std::vector<PlotChart>& charts, const std::string& out, int64_t width, int64_t height) {
  if (charts.empty()) throw InputError(str_cat(out, ": nothing to plot"));
  require_device("pngcairo");
  require_writable(out);
  auto pls = make_stream("pngcairo");
  pls->sfnam(out.c_str());
  pls->spage(0, 0, static_cast<PLINT>(width), static_cast<PLINT>(height), 0, 0);
  pls->ssub(static_cast<PLINT>(charts.size()), 1);
  pls->init();
  for (auto& chart : charts) draw_chart(*pls, chart);
  pls.reset();  // plend1: the file is complete when this returns
}

data::Image text_strip(int64_t width, int64_t height, const std::vector<std::pair<int64_t, std::string>>& titles) {
  // pngcairo into a temporary file, read back: PLplot's memcairo device draws lines but no text (PLplot 5.15).
  require_device("pngcairo");
  static std::atomic<int> counter{0};
  const auto tmp = (fs::temp_directory_path() / str_cat("segkd-strip-", ::getpid(), "-", counter++, ".png")).string();
  require_writable(tmp);
  {
    auto pls = make_stream("pngcairo");
    pls->sfnam(tmp.c_str());
    pls->spage(0, 0, static_cast<PLINT>(width), static_cast<PLINT>(height), 0, 0);
    pls->init();
    pls->adv(0);
    pls->vpor(0, 1, 0, 1);
    // World coordinates are pixels: x to the right, y upwards from the strip's bottom.
    pls->wind(0, static_cast<PLFLT>(width), 0, static_cast<PLFLT>(height));
    pls->col0(1);
    pls->schr(0, 1.4);
    std::vector<std::pair<int64_t, std::vector<std::string>>> lines;
    size_t most = 1;
    for (auto& [x, text] : titles) {
      lines.emplace_back(x, std::vector<std::string>{});
      std::string::size_type start = 0, end;
      do {
        end = text.find('\n', start);
        lines.back().second.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
        start = end + 1;
      } while (end != std::string::npos);
      most = std::max(most, lines.back().second.size());
    }
    const double line_h = static_cast<double>(height) / static_cast<double>(most);
    for (auto& [x, parts] : lines) {
      for (size_t k = 0; k < parts.size(); ++k) {
        const double baseline = height - (static_cast<double>(k) + 0.7) * line_h;
        pls->ptex(static_cast<PLFLT>(x), baseline, 1, 0, 0.5, parts[k].c_str());
      }
    }
  }  // plend1 writes the file
  auto strip = data::read_image(tmp);
  std::error_code ec;
  fs::remove(tmp, ec);
  if (strip.width != width || strip.height != height || strip.channels != 3) {
    throw Error(str_cat("PLplot drew a ", strip.width, "x", strip.height, " strip, not ", width, "x", height));
  }
  return strip;
}

std::string wrap_title(const std::string& text, size_t max_chars) {
  std::vector<std::string> parts;  // each ends with its separator
  std::string::size_type start = 0;
  while (start < text.size()) {
    const auto cut = text.find_first_of("-_ ", start);
    const auto end = cut == std::string::npos ? text.size() : cut + 1;
    parts.push_back(text.substr(start, end - start));
    start = end;
  }
  std::string out, line;
  for (auto& part : parts) {
    if (!line.empty() && line.size() + part.size() > max_chars) {
      out += line + "\n";
      line.clear();
    }
    line += part;
  }
  return out + line;
}

}  // namespace segkd::train
