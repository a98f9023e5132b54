#pragma once
/// Image codecs for the data pipeline: PNG (libpng) and JPEG (libjpeg-turbo), 8-bit, interleaved HWC.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace segkd::data {

/// An 8-bit image, interleaved HWC (`pixels.size() == height * width * channels`).
struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

/// Reads a PNG or JPEG (detected by content, not extension) as RGB (channels 3): gray is replicated, palettes are
/// expanded, alpha is dropped, 16-bit is reduced to 8. Throws InputError naming the file when it is missing,
/// not an image, corrupt or truncated.
Image read_image(const std::string& path);

/// Reads a label PNG as 1 channel: gray values for gray PNGs, palette INDICES (not colours) for palette PNGs
/// (VOC). 16-bit and colour (RGB) PNGs are rejected with an InputError naming the file.
Image read_label_png(const std::string& path);

/// Writes `image` (1 or 3 channels) as PNG. With `palette` (1 channel only), writes a palette PNG whose pixel
/// values are the indices. Throws InputError naming the file on failure.
void write_png(const std::string& path, const Image& image,
               const std::vector<std::array<uint8_t, 3>>* palette = nullptr);

/// Writes `image` (1 or 3 channels) as baseline JPEG with `quality` in [1, 100].
void write_jpeg(const std::string& path, const Image& image, int quality = 95);

}  // namespace segkd::data
