// Grids of 8-bit greyscale tiles, e.g. test originals in the top row and their
// reconstructions below (the reference's figure), written atomically as a PNG.
//
// Layout (like torchvision's make_grid): `padding` background pixels around
// every tile and between tiles; the grid has as many columns as the longest
// row, and shorter rows are filled with background.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/metrics/ssim.hpp"
#include "vqvae2/viz/raster.hpp"

namespace vqvae2::viz {

// A borrowed row-major height x width byte image.
struct GreyView {
  const std::uint8_t* pixels = nullptr;
  int height = 0;
  int width = 0;
};

struct GridOptions {
  int padding = 2;
  std::uint8_t background = 0;
};

inline Raster compose_grid(const std::vector<std::vector<GreyView>>& rows, const GridOptions& opt = {}) {
  VQVAE2_CHECK(opt.padding >= 0, "image_grid: the padding must not be negative, got ", opt.padding, ".");
  std::size_t cols = 0;
  const GreyView* first = nullptr;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    cols = std::max(cols, rows[r].size());
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      const GreyView& t = rows[r][c];
      VQVAE2_CHECK(t.pixels && t.height > 0 && t.width > 0, "image_grid: tile (row ", r, ", column ", c, ") is empty (",
                   t.height, "x", t.width, ").");
      if (!first) first = &t;
      VQVAE2_CHECK(t.height == first->height && t.width == first->width, "image_grid: tile (row ", r, ", column ", c,
                   ") is ", t.height, "x", t.width, " but the first tile is ", first->height, "x", first->width, ".");
    }
  }
  VQVAE2_CHECK(first != nullptr, "image_grid: there are no tiles to draw.");
  const int th = first->height, tw = first->width, pad = opt.padding;
  const std::int64_t gw = static_cast<std::int64_t>(cols) * (tw + pad) + pad;
  const std::int64_t gh = static_cast<std::int64_t>(rows.size()) * (th + pad) + pad;
  VQVAE2_CHECK(gw <= 65535 && gh <= 65535, "image_grid: a ", gh, "x", gw, " grid is too large for one PNG.");
  Raster img(static_cast<int>(gw), static_cast<int>(gh), 1, opt.background);
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      const int x0 = pad + static_cast<int>(c) * (tw + pad), y0 = pad + static_cast<int>(r) * (th + pad);
      for (int y = 0; y < th; ++y) {
        const std::uint8_t* src = rows[r][c].pixels + static_cast<std::size_t>(y) * tw;
        std::copy(src, src + tw, img.at(x0, y0 + y));
      }
    }
  return img;
}

inline void write_grid_png(const std::string& path, const std::vector<std::vector<GreyView>>& rows,
                           const GridOptions& opt = {}) {
  write_png(path, compose_grid(rows, opt));
}

// One grid row per batch: each a [N, 1, H, W] tensor of images in [-1, 1],
// stored with metrics::unit_to_byte, the same rule SSIM scores them by.
template <class T>
Raster compose_grid(const std::vector<Tensor<T, Cpu>>& batches, const GridOptions& opt = {}) {
  std::vector<std::vector<std::uint8_t>> bytes(batches.size());
  std::vector<std::vector<GreyView>> rows(batches.size());
  for (std::size_t r = 0; r < batches.size(); ++r) {
    const Shape& s = batches[r].shape();
    VQVAE2_CHECK(s.rank == 4 && s.c() == 1, "image_grid: row ", r, " must be a [N, 1, H, W] batch, got ", s.str(), ".");
    const T* p = batches[r].data();
    for (std::int64_t i = 0; i < s.numel(); ++i)
      VQVAE2_CHECK(!std::isnan(static_cast<double>(p[i])), "image_grid: row ", r, " holds NaN at element ", i, ".");
    bytes[r].resize(static_cast<std::size_t>(s.numel()));
    metrics::unit_to_bytes(p, s.numel(), bytes[r].data());
    for (std::int64_t n = 0; n < s.n(); ++n)
      rows[r].push_back({bytes[r].data() + n * s.h() * s.w(), static_cast<int>(s.h()), static_cast<int>(s.w())});
  }
  return compose_grid(rows, opt);
}

template <class T>
void write_grid_png(const std::string& path, const std::vector<Tensor<T, Cpu>>& batches, const GridOptions& opt = {}) {
  write_png(path, compose_grid(batches, opt));
}

}  // namespace vqvae2::viz
