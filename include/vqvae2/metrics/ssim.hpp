// SSIM and PSNR of 8-bit greyscale images, equal to scikit-image 0.19's
// skimage.metrics.structural_similarity / peak_signal_noise_ratio for 2-D images.
//
// Our reported figure uses the defaults: 7x7 uniform window, sample covariance
// (NP / (NP - 1)), K1 0.01, K2 0.03, data range 255, the SSIM map cropped by
// (win - 1) / 2 on every side before the mean. SsimOptions::wang2004() selects
// the Gaussian variant (sigma 1.5, truncate 3.5 -> 11 taps, population covariance).
//
// Because the crop equals the filter radius, every window that reaches the mean
// lies inside the image, so scipy.ndimage's 'reflect' border handling never
// contributes and is not needed here. All arithmetic is in double; the uniform
// window sums are exact integer sums.
//
// Reconstructions are scored as the PNG they would be saved as: unit_to_byte()
// maps a float in [-1, 1] to a byte by clip, (x + 1) * 127.5, round half up
// (= half away from zero, as the value is >= 0), which is also torchvision's
// save_image(normalize=True, value_range=(-1, 1)) rule. The PNG writers must use it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2::metrics {

struct SsimOptions {
  int win_size = 7;  // side of the uniform window (odd); the Gaussian derives its own
  bool gaussian = false;
  double sigma = 1.5;
  double truncate = 3.5;
  bool sample_covariance = true;
  double k1 = 0.01;
  double k2 = 0.03;
  double data_range = 255.0;

  // Wang et al. 2004: Gaussian weights, population covariance (skimage's recipe).
  static SsimOptions wang2004() {
    SsimOptions o;
    o.gaussian = true;
    o.sample_covariance = false;
    return o;
  }
  // Filter radius as scipy.ndimage computes it for the Gaussian.
  int radius() const { return gaussian ? static_cast<int>(truncate * sigma + 0.5) : (win_size - 1) / 2; }
  int window() const { return 2 * radius() + 1; }
};

// float in [-1, 1] -> the byte a saved PNG holds. NaN maps to 0: a device
// functor cannot throw, and the float entry points below reject NaN first.
struct UnitToByte {
  VQVAE2_HD std::uint8_t operator()(double x) const {
    if (!(x > -1.0)) return 0;  // also catches NaN
    if (x >= 1.0) return 255;
    // The value is in (0.5, 255.5), so truncation is floor: round half up.
    return static_cast<std::uint8_t>(static_cast<int>((x + 1.0) * 127.5 + 0.5));
  }
};
inline std::uint8_t unit_to_byte(double x) { return UnitToByte{}(x); }

template <class T>
void unit_to_bytes(const T* src, std::int64_t n, std::uint8_t* dst) {
  UnitToByte f;
  for (std::int64_t i = 0; i < n; ++i) dst[i] = f(static_cast<double>(src[i]));
}

// Reusable SSIM evaluator: keeps its row buffers, so scoring a test set does
// not allocate per image once the largest width has been seen.
class Ssim {
 public:
  explicit Ssim(const SsimOptions& options = {}) : opt_(options) {
    VQVAE2_CHECK(opt_.gaussian || (opt_.win_size >= 1 && opt_.win_size % 2 == 1),
                 "ssim: the window size must be odd and positive, got ", opt_.win_size, ".");
    VQVAE2_CHECK(!opt_.gaussian || opt_.sigma > 0, "ssim: sigma must be positive, got ", opt_.sigma, ".");
    VQVAE2_CHECK(opt_.k1 >= 0 && opt_.k2 >= 0 && opt_.data_range > 0,
                 "ssim: K1, K2 must be non-negative and the data range positive.");
    if (opt_.gaussian) {
      // scipy.ndimage._gaussian_kernel1d: exp(-x^2 / (2 sigma^2)), normalised to sum 1.
      const int r = opt_.radius();
      weights_.resize(2 * r + 1);
      double sum = 0;
      for (int k = -r; k <= r; ++k) sum += weights_[k + r] = std::exp(-0.5 / (opt_.sigma * opt_.sigma) * k * k);
      for (double& v : weights_) v /= sum;
    }
  }

  const SsimOptions& options() const { return opt_; }

  // Mean SSIM of two h x w row-major byte images.
  double operator()(const std::uint8_t* a, const std::uint8_t* b, int h, int w) {
    const int win = opt_.window();
    VQVAE2_CHECK(a && b, "ssim: null image buffer.");
    VQVAE2_CHECK(h >= win && w >= win, "ssim: a ", h, "x", w, " image is smaller than the ", win, "x", win, " window.");
    return opt_.gaussian ? gaussian(a, b, h, w) : uniform(a, b, h, w);
  }

  // Mean SSIM of two h x w float images in [-1, 1], scored as their saved PNGs.
  template <class T>
  double unit(const T* a, const T* b, int h, int w) {
    VQVAE2_CHECK(h > 0 && w > 0, "ssim: bad image size ", h, "x", w, ".");
    const std::size_t n = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
    for (std::size_t i = 0; i < n; ++i)
      VQVAE2_CHECK(!std::isnan(static_cast<double>(a[i])) && !std::isnan(static_cast<double>(b[i])),
                   "ssim: the image holds NaN at pixel ", i, ".");
    bytes_a_.resize(n);
    bytes_b_.resize(n);
    unit_to_bytes(a, static_cast<std::int64_t>(n), bytes_a_.data());
    unit_to_bytes(b, static_cast<std::int64_t>(n), bytes_b_.data());
    return (*this)(bytes_a_.data(), bytes_b_.data(), h, w);
  }

 private:
  // The five per-window statistics -> SSIM, exactly skimage's formula.
  double ssim_at(double ux, double uy, double uxx, double uyy, double uxy) const {
    const int np = opt_.window() * opt_.window();
    const double cov_norm = opt_.sample_covariance ? static_cast<double>(np) / (np - 1) : 1.0;
    const double vx = cov_norm * (uxx - ux * ux);
    const double vy = cov_norm * (uyy - uy * uy);
    const double vxy = cov_norm * (uxy - ux * uy);
    const double c1 = (opt_.k1 * opt_.data_range) * (opt_.k1 * opt_.data_range);
    const double c2 = (opt_.k2 * opt_.data_range) * (opt_.k2 * opt_.data_range);
    const double a1 = 2 * ux * uy + c1, a2 = 2 * vxy + c2;
    const double b1 = ux * ux + uy * uy + c1, b2 = vx + vy + c2;
    return (a1 * a2) / (b1 * b2);
  }

  // Box window: exact integer column sums slid down the rows, then a running
  // sum across each row, only over the windows that survive the crop.
  double uniform(const std::uint8_t* a, const std::uint8_t* b, int h, int w) {
    const int r = opt_.radius(), win = opt_.window();
    const double inv_np = 1.0 / (static_cast<double>(win) * win);
    const std::size_t W = static_cast<std::size_t>(w);
    col_.assign(5 * W, 0);
    std::int64_t* cx = col_.data();
    std::int64_t *cy = cx + W, *cxx = cy + W, *cyy = cxx + W, *cxy = cyy + W;
    auto add_row = [&](int y, std::int64_t sign) {
      const std::uint8_t* pa = a + static_cast<std::size_t>(y) * W;
      const std::uint8_t* pb = b + static_cast<std::size_t>(y) * W;
      for (std::size_t j = 0; j < W; ++j) {
        const std::int64_t x = pa[j], v = pb[j];
        cx[j] += sign * x;
        cy[j] += sign * v;
        cxx[j] += sign * x * x;
        cyy[j] += sign * v * v;
        cxy[j] += sign * x * v;
      }
    };
    for (int y = 0; y < win - 1; ++y) add_row(y, 1);
    double total = 0;
    for (int i = r; i < h - r; ++i) {
      add_row(i + r, 1);
      std::int64_t sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int j = 0; j < win - 1; ++j) sx += cx[j], sy += cy[j], sxx += cxx[j], syy += cyy[j], sxy += cxy[j];
      double row = 0;
      for (int j = r; j < w - r; ++j) {
        const int in = j + r;
        sx += cx[in], sy += cy[in], sxx += cxx[in], syy += cyy[in], sxy += cxy[in];
        row += ssim_at(sx * inv_np, sy * inv_np, sxx * inv_np, syy * inv_np, sxy * inv_np);
        const int out = j - r;
        sx -= cx[out], sy -= cy[out], sxx -= cxx[out], syy -= cyy[out], sxy -= cxy[out];
      }
      total += row;
      add_row(i - r, -1);
    }
    return total / (static_cast<double>(h - 2 * r) * (w - 2 * r));
  }

  // Gaussian window: separable weighted sums, vertical pass per output row
  // over all columns, then the horizontal pass over the surviving columns.
  double gaussian(const std::uint8_t* a, const std::uint8_t* b, int h, int w) {
    const int r = opt_.radius(), win = opt_.window();
    const std::size_t W = static_cast<std::size_t>(w);
    vcol_.assign(5 * W, 0.0);
    double* vx = vcol_.data();
    double *vy = vx + W, *vxx = vy + W, *vyy = vxx + W, *vxy = vyy + W;
    double total = 0;
    for (int i = r; i < h - r; ++i) {
      std::fill(vcol_.begin(), vcol_.end(), 0.0);
      for (int k = 0; k < win; ++k) {
        const double g = weights_[k];
        const std::uint8_t* pa = a + static_cast<std::size_t>(i - r + k) * W;
        const std::uint8_t* pb = b + static_cast<std::size_t>(i - r + k) * W;
        for (std::size_t j = 0; j < W; ++j) {
          const double x = pa[j], v = pb[j];
          vx[j] += g * x;
          vy[j] += g * v;
          vxx[j] += g * (x * x);
          vyy[j] += g * (v * v);
          vxy[j] += g * (x * v);
        }
      }
      double row = 0;
      for (int j = r; j < w - r; ++j) {
        double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
        for (int k = 0; k < win; ++k) {
          const double g = weights_[k];
          const int c = j - r + k;
          sx += g * vx[c], sy += g * vy[c], sxx += g * vxx[c], syy += g * vyy[c], sxy += g * vxy[c];
        }
        row += ssim_at(sx, sy, sxx, syy, sxy);
      }
      total += row;
    }
    return total / (static_cast<double>(h - 2 * r) * (w - 2 * r));
  }

  SsimOptions opt_;
  std::vector<double> weights_;
  std::vector<std::int64_t> col_;
  std::vector<double> vcol_;
  std::vector<std::uint8_t> bytes_a_, bytes_b_;
};

// One-shot mean SSIM of two h x w byte images (see Ssim for repeated use).
inline double ssim(const std::uint8_t* a, const std::uint8_t* b, int h, int w, const SsimOptions& options = {}) {
  Ssim s(options);
  return s(a, b, h, w);
}

// PSNR in dB, skimage.metrics.peak_signal_noise_ratio; +infinity for equal images.
inline double psnr(const std::uint8_t* a, const std::uint8_t* b, int h, int w, double data_range = 255.0) {
  VQVAE2_CHECK(a && b, "psnr: null image buffer.");
  VQVAE2_CHECK(h > 0 && w > 0, "psnr: bad image size ", h, "x", w, ".");
  VQVAE2_CHECK(data_range > 0, "psnr: the data range must be positive, got ", data_range, ".");
  const std::size_t n = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  std::int64_t sse = 0;  // exact: squared byte differences
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t d = static_cast<std::int64_t>(a[i]) - b[i];
    sse += d * d;
  }
  if (sse == 0) return std::numeric_limits<double>::infinity();
  const double mse = static_cast<double>(sse) / static_cast<double>(n);
  return 10.0 * std::log10(data_range * data_range / mse);
}

// PSNR of two float images in [-1, 1], scored as their saved PNGs.
template <class T>
double psnr_unit(const T* a, const T* b, int h, int w) {
  VQVAE2_CHECK(h > 0 && w > 0, "psnr: bad image size ", h, "x", w, ".");
  const std::size_t n = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  std::vector<std::uint8_t> ba(n), bb(n);
  for (std::size_t i = 0; i < n; ++i)
    VQVAE2_CHECK(!std::isnan(static_cast<double>(a[i])) && !std::isnan(static_cast<double>(b[i])),
                 "psnr: the image holds NaN at pixel ", i, ".");
  unit_to_bytes(a, static_cast<std::int64_t>(n), ba.data());
  unit_to_bytes(b, static_cast<std::int64_t>(n), bb.data());
  return psnr(ba.data(), bb.data(), h, w);
}

// Per-image SSIM and PSNR of two [N, 1, H, W] batches in [-1, 1] (e.g. test
// images against their reconstructions), each scored as a saved PNG.
struct BatchScores {
  std::vector<double> ssim, psnr;
};
template <class T>
BatchScores score_batch(const Tensor<T, Cpu>& originals, const Tensor<T, Cpu>& reconstructions,
                        const SsimOptions& options = {}) {
  const Shape& s = originals.shape();
  VQVAE2_CHECK(s.rank == 4 && s.c() == 1 && s == reconstructions.shape(),
               "score_batch: expected two equal [N, 1, H, W] batches, got ", s.str(), " and ",
               reconstructions.shape().str(), ".");
  const int h = static_cast<int>(s.h()), w = static_cast<int>(s.w());
  const std::int64_t plane = s.h() * s.w();
  Ssim metric(options);
  BatchScores out;
  for (std::int64_t n = 0; n < s.n(); ++n) {
    const T* a = originals.data() + n * plane;
    const T* b = reconstructions.data() + n * plane;
    out.ssim.push_back(metric.unit(a, b, h, w));
    out.psnr.push_back(psnr_unit(a, b, h, w));
  }
  return out;
}

}  // namespace vqvae2::metrics
