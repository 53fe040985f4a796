// A minimal 8-bit raster (greyscale or RGB) with the few drawing primitives the
// figures need, PNG encoding in memory (stb_image_write from Debian's libstb;
// no STB_*_IMPLEMENTATION here) and an atomic write (temporary file + rename via
// core/io.hpp), so a crash never leaves a half-written figure.
#pragma once

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"

namespace vqvae2::viz {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

// Row-major pixels, `channels` bytes each (1 = grey, 3 = RGB).
struct Raster {
  int width = 0;
  int height = 0;
  int channels = 1;
  std::vector<std::uint8_t> pixels;

  Raster() = default;
  Raster(int w, int h, int c, std::uint8_t fill = 0) : width(w), height(h), channels(c) {
    VQVAE2_CHECK(w > 0 && h > 0 && (c == 1 || c == 3), "Raster: bad size ", w, "x", h, " with ", c,
                 " channels (1 or 3 allowed).");
    pixels.assign(static_cast<std::size_t>(w) * h * c, fill);
  }

  std::uint8_t* at(int x, int y) { return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels; }
  const std::uint8_t* at(int x, int y) const {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
  bool inside(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }

  // Mixes colour c over pixel (x, y) with coverage alpha in [0, 1]; clipped.
  void blend(int x, int y, Rgb c, double alpha) {
    if (!inside(x, y) || !(alpha > 0)) return;
    alpha = std::min(alpha, 1.0);
    std::uint8_t* p = at(x, y);
    auto mix = [alpha](std::uint8_t under, std::uint8_t over) {
      return static_cast<std::uint8_t>(std::lround(under + alpha * (static_cast<double>(over) - under)));
    };
    if (channels == 1) {
      p[0] = mix(p[0], static_cast<std::uint8_t>(std::lround(0.299 * c.r + 0.587 * c.g + 0.114 * c.b)));
    } else {
      p[0] = mix(p[0], c.r);
      p[1] = mix(p[1], c.g);
      p[2] = mix(p[2], c.b);
    }
  }
  void set(int x, int y, Rgb c) { blend(x, y, c, 1.0); }

  // Fills the half-open rectangle [x0, x1) x [y0, y1), clipped to the raster.
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = std::max(0, y0); y < std::min(height, y1); ++y)
      for (int x = std::max(0, x0); x < std::min(width, x1); ++x) set(x, y, c);
  }
  // One-pixel outline of [x0, x1) x [y0, y1).
  void stroke_rect(int x0, int y0, int x1, int y1, Rgb c) {
    fill_rect(x0, y0, x1, y0 + 1, c);
    fill_rect(x0, y1 - 1, x1, y1, c);
    fill_rect(x0, y0, x0 + 1, y1, c);
    fill_rect(x1 - 1, y0, x1, y1, c);
  }
};

// PNG bytes of a raster, encoded in memory.
inline std::vector<std::uint8_t> encode_png(const Raster& img) {
  VQVAE2_CHECK(img.width > 0 && img.height > 0 &&
                   img.pixels.size() == static_cast<std::size_t>(img.width) * img.height * img.channels,
               "encode_png: the raster's ", img.pixels.size(), " bytes do not make a ", img.width, "x", img.height, "x",
               img.channels, " image.");
  std::vector<std::uint8_t> out;
  auto append = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<std::uint8_t>*>(ctx);
    const auto* p = static_cast<const std::uint8_t*>(data);
    v->insert(v->end(), p, p + size);
  };
  const int ok = stbi_write_png_to_func(append, &out, img.width, img.height, img.channels, img.pixels.data(),
                                        img.width * img.channels);
  VQVAE2_CHECK(ok != 0 && !out.empty(), "encode_png: stb_image_write failed for a ", img.width, "x", img.height,
               " image.");
  return out;
}

// Writes the raster as a PNG: temporary file, then rename over `path`.
inline void write_png(const std::string& path, const Raster& img) {
  const std::vector<std::uint8_t> bytes = encode_png(img);
  io::write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace vqvae2::viz
