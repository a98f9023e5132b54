#pragma once
/// Pictures drawn with PLplot (Debian libplplot-dev, the pngcairo device of plplot-driver-cairo): line charts with
/// bands for curves.png, and text strips (column titles) for the prediction panel.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/image_io.h"

namespace segkd::train {

/// A series: a mean line and, when lo/hi are given (same length), the band between them.
struct PlotSeries {
  std::string label;           ///< legend text
  std::vector<double> x, y;    ///< the line (one point is drawn as a marker)
  std::vector<double> lo, hi;  ///< band around it, e.g. min and max over seeds (empty = no band)
  int colour = -1;             ///< palette index (wraps after 10); -1 = the series' position in its chart
  int style = 1;               ///< PLplot line style: 1 solid, 2 short dashes, 3 long dashes, ... 8
};

/// One chart of a picture.
struct PlotChart {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  bool x_from_zero = false;  ///< the x axis starts at 0 (training time), so runs that end together stay apart
};

/// Writes `charts` side by side into the PNG `out` (`width` x `height` pixels), white background, black axes, each
/// chart's legend outside its frame on the right (a legend never hides a curve), one colour per series index unless
/// the series names its own (the same index has the same colour in every chart). Throws Error when PLplot has no
/// pngcairo device (install plplot-driver-cairo) or a chart has no point.
void plot_charts(const std::vector<PlotChart>& charts, const std::string& out, int64_t width, int64_t height);

/// Draws `titles` as black text on white, each centred at its x pixel position, into an RGB strip `width` x `height`
/// pixels and returns it. A title may hold several lines separated by '\n'; the strip's height is shared equally by
/// the largest number of lines, from the top.
data::Image text_strip(int64_t width, int64_t height, const std::vector<std::pair<int64_t, std::string>>& titles);

/// `text` broken into lines of at most `max_chars` characters where possible, at '-', '_' or ' ' (kept at the end
/// of the line), joined by '\n'; a single part longer than `max_chars` stays whole.
std::string wrap_title(const std::string& text, size_t max_chars);

}  // namespace segkd::train
