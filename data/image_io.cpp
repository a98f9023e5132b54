#include "data/image_io.h"

#include <jpeglib.h>
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/error.h"

namespace segkd::data {
namespace {

// libpng and libjpeg report errors through longjmp. Every C++ object that must survive the jump is created before
// setjmp and only modified through calls (so it lives in memory); the exception is thrown after the jump returned.

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

FilePtr open_file(const std::string& path, const char* mode, const char* what) {
  FILE* f = std::fopen(path.c_str(), mode);
  if (!f) throw InputError(str_cat("cannot open ", what, " '", path, "': ", std::strerror(errno)));
  return FilePtr(f);
}

struct PngErrorState {
  char message[256] = {0};
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

enum class PngMode { kRgb, kLabel };

Image read_png(const std::string& path, FILE* f, PngMode mode) {
  PngErrorState state;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_fn, png_warning_fn);
  if (!png) throw InputError(str_cat("cannot read PNG '", path, "': out of memory"));
  png_infop info = png_create_info_struct(png);
  Image image;
  std::vector<png_bytep> rows;
  std::string problem;  // set before longjmp-free exits (format problems found by us)
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw InputError(str_cat("cannot read PNG '", path, "': ", state.message, " (corrupt or truncated file)"));
  }
  png_init_io(png, f);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (mode == PngMode::kRgb) {
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    // tRNS chunks are ignored: no png_set_tRNS_to_alpha, so no alpha channel appears.
    image.channels = 3;
  } else {
    if (bit_depth == 16) {
      problem = "16-bit label PNGs are not supported (expected 8-bit gray or palette)";
    } else if (color_type == PNG_COLOR_TYPE_RGB || color_type == PNG_COLOR_TYPE_RGB_ALPHA) {
      problem = "label PNG is colour (RGB); expected 8-bit gray or palette indices";
    }
    if (!problem.empty()) {
      png_destroy_read_struct(&png, &info, nullptr);
      throw InputError(str_cat("cannot read label '", path, "': ", problem));
    }
    if (bit_depth < 8) png_set_packing(png);  // one byte per pixel, values (indices) unscaled
    if (color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_strip_alpha(png);
    image.channels = 1;
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  if (rowbytes != static_cast<size_t>(width) * image.channels) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw InputError(str_cat("cannot read PNG '", path, "': unexpected row size ", rowbytes, " for width ", width));
  }
  image.height = height;
  image.width = width;
  image.pixels.resize(static_cast<size_t>(height) * rowbytes);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.pixels.data() + y * rowbytes;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

struct JpegErrorState {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* st = reinterpret_cast<JpegErrorState*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, st->message);
  longjmp(st->jump, 1);
}

// libjpeg only warns on premature end of data (and fills the rest with gray); a truncated file must be an error.
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_error_exit(cinfo);
}

Image read_jpeg(const std::string& path, FILE* f) {
  jpeg_decompress_struct cinfo;
  JpegErrorState err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_emit_message;
  Image image;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw InputError(str_cat("cannot read JPEG '", path, "': ", err.message, " (corrupt or truncated file)"));
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  image.height = cinfo.output_height;
  image.width = cinfo.output_width;
  image.channels = 3;
  image.pixels.resize(static_cast<size_t>(image.height) * image.width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = image.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * image.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return image;
}

enum class Kind { kPng, kJpeg, kUnknown };

Kind sniff(const std::string& path, FILE* f) {
  unsigned char magic[8] = {0};
  const size_t n = std::fread(magic, 1, sizeof(magic), f);
  std::rewind(f);
  static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n == 8 && std::memcmp(magic, png_magic, 8) == 0) return Kind::kPng;
  if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) return Kind::kJpeg;
  return Kind::kUnknown;
}

void check_writable(const std::string& path, const Image& image, bool allow_palette) {
  if (image.height <= 0 || image.width <= 0 || (image.channels != 1 && image.channels != 3))
    throw InputError(str_cat("cannot write '", path, "': image must be HxWx1 or HxWx3 with H, W > 0 (got ",
                             image.height, "x", image.width, "x", image.channels, ")"));
  if (image.pixels.size() != static_cast<size_t>(image.height * image.width * image.channels))
    throw InputError(str_cat("cannot write '", path, "': pixel buffer has ", image.pixels.size(),
                             " bytes, expected ", image.height * image.width * image.channels));
}

}  // namespace

Image read_image(const std::string& path) {
  FilePtr f = open_file(path, "rb", "image");
  switch (sniff(path, f.get())) {
    case Kind::kPng: return read_png(path, f.get(), PngMode::kRgb);
    case Kind::kJpeg: return read_jpeg(path, f.get());
    default: throw InputError(str_cat("cannot read image '", path, "': not a PNG or JPEG file"));
  }
}

Image read_label_png(const std::string& path) {
  FilePtr f = open_file(path, "rb", "label");
  if (sniff(path, f.get()) != Kind::kPng) throw InputError(str_cat("cannot read label '", path, "': not a PNG file"));
  return read_png(path, f.get(), PngMode::kLabel);
}

void write_png(const std::string& path, const Image& image, const std::vector<std::array<uint8_t, 3>>* palette) {
  check_writable(path, image, palette != nullptr);
  if (palette && (image.channels != 1 || palette->empty() || palette->size() > 256))
    throw InputError(str_cat("cannot write '", path, "': a palette PNG needs 1 channel and 1..256 colours"));
  FilePtr f = open_file(path, "wb", "PNG for writing");
  PngErrorState state;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_error_fn, png_warning_fn);
  png_infop info = png_create_info_struct(png);
  std::vector<png_color> colours;
  std::vector<png_bytep> rows(image.height);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw InputError(str_cat("cannot write PNG '", path, "': ", state.message));
  }
  png_init_io(png, f.get());
  const int color_type = palette ? PNG_COLOR_TYPE_PALETTE
                                 : (image.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB);
  png_set_IHDR(png, info, image.width, image.height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (palette) {
    for (const auto& c : *palette) colours.push_back(png_color{c[0], c[1], c[2]});
    png_set_PLTE(png, info, colours.data(), static_cast<int>(colours.size()));
  }
  png_set_compression_level(png, 3);
  png_write_info(png, info);
  const size_t rowbytes = static_cast<size_t>(image.width) * image.channels;
  for (int64_t y = 0; y < image.height; ++y)
    rows[y] = const_cast<png_bytep>(image.pixels.data() + y * rowbytes);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0) throw InputError(str_cat("cannot write PNG '", path, "': ", std::strerror(errno)));
}

void write_jpeg(const std::string& path, const Image& image, int quality) {
  check_writable(path, image, false);
  if (quality < 1 || quality > 100)
    throw InputError(str_cat("cannot write '", path, "': JPEG quality ", quality, " outside [1, 100]"));
  FilePtr f = open_file(path, "wb", "JPEG for writing");
  jpeg_compress_struct cinfo;
  JpegErrorState err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    throw InputError(str_cat("cannot write JPEG '", path, "': ", err.message));
  }
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f.get());
  cinfo.image_width = image.width;
  cinfo.image_height = image.height;
  cinfo.input_components = static_cast<int>(image.channels);
  cinfo.in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const size_t rowbytes = static_cast<size_t>(image.width) * image.channels;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(image.pixels.data() + cinfo.next_scanline * rowbytes);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  if (std::fflush(f.get()) != 0) throw InputError(str_cat("cannot write JPEG '", path, "': ", std::strerror(errno)));
}

}  // namespace segkd::data
