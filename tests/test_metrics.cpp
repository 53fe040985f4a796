#include <doctest/doctest.h>
#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/skip.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/metrics/ssim.hpp"

using namespace vqvae2;
using metrics::SsimOptions;

namespace {

using Bytes = std::vector<std::uint8_t>;

// Brute-force oracle: every window evaluated directly from its definition
// (weighted means, (co)variances), no sliding sums, no separability.
double ssim_oracle(const Bytes& a, const Bytes& b, int h, int w, const SsimOptions& o) {
  const int r = o.radius(), win = 2 * r + 1;
  std::vector<double> g(win * win);
  double gsum = 0;
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      double v = o.gaussian ? std::exp(-(dy * dy + dx * dx) / (2 * o.sigma * o.sigma)) : 1.0;
      g[(dy + r) * win + dx + r] = v;
      gsum += v;
    }
  const double np = win * win, cov = o.sample_covariance ? np / (np - 1) : 1.0;
  const double c1 = std::pow(o.k1 * o.data_range, 2), c2 = std::pow(o.k2 * o.data_range, 2);
  double total = 0;
  int count = 0;
  for (int i = r; i < h - r; ++i)
    for (int j = r; j < w - r; ++j) {
      double mx = 0, my = 0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          double wt = g[(dy + r) * win + dx + r] / gsum;
          mx += wt * a[(i + dy) * w + j + dx];
          my += wt * b[(i + dy) * w + j + dx];
        }
      double vx = 0, vy = 0, vxy = 0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          double wt = g[(dy + r) * win + dx + r] / gsum;
          double ex = a[(i + dy) * w + j + dx] - mx, ey = b[(i + dy) * w + j + dx] - my;
          vx += wt * ex * ex;
          vy += wt * ey * ey;
          vxy += wt * ex * ey;
        }
      vx *= cov, vy *= cov, vxy *= cov;
      total += (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      ++count;
    }
  return total / count;
}

Bytes random_bytes(Generator& gen, int n, int lo = 0, int hi = 255) {
  Tensor<float> u(Shape{n});
  gen.uniform(u, 0.0f, 1.0f);
  Bytes out(n);
  for (int i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(lo + std::floor(u[i] * (hi - lo + 1) * 0.999999));
  return out;
}

// The same file list as tests/golden/gen_ssim.py (the golden holds indices and pixel sums).
const char* const kFiles[] = {
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_test/case_2881_slice_0.nii.png",
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_test/case_2882_slice_0.nii.png",
    "kaggle_alz_mri_nondemented_oasislike/keras_png_slices_validate/case_2600_slice_0.nii.png",
    "colin27_ch2bet/keras_png_slices_test/case_901_slice_89.nii.png",
    "colin27_ch2bet/keras_png_slices_validate/case_901_slice_88.nii.png",
};

struct Image {
  int h = 0, w = 0;
  Bytes px;
};

Image load_grey(const std::string& path) {
  int w = 0, h = 0, c = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> p(stbi_load(path.c_str(), &w, &h, &c, 1), stbi_image_free);
  REQUIRE_MESSAGE(p != nullptr, "cannot decode " << path);
  REQUIRE(c == 1);
  return {h, w, Bytes(p.get(), p.get() + static_cast<std::size_t>(w) * h)};
}

// Degradations of gen_ssim.py, integer-only (kind 3 goes through unit_to_byte).
Image degrade(const Image& a, int kind) {
  Image b = a;
  for (int i = 0; i < a.h; ++i)
    for (int j = 0; j < a.w; ++j) {
      int v = a.px[i * a.w + j];
      if (kind == 1) {
        int s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx)
            s += a.px[std::clamp(i + dy, 0, a.h - 1) * a.w + std::clamp(j + dx, 0, a.w - 1)];
        v = (s + 4) / 9;
      } else if (kind == 2) {
        v &= 0xF0;
      } else if (kind == 3) {
        v = metrics::unit_to_byte((v / 127.5 - 1.0) * 0.8 + 0.1);
      }
      b.px[i * a.w + j] = static_cast<std::uint8_t>(v);
    }
  return b;
}

Image crop(const Image& a, int y0, int x0, int h, int w) {
  Image c{h, w, Bytes(static_cast<std::size_t>(h) * w)};
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j) c.px[i * w + j] = a.px[(y0 + i) * a.w + x0 + j];
  return c;
}

}  // namespace

TEST_CASE("unit_to_byte stores [-1, 1] as a saved PNG: clip, (x + 1) * 127.5, round half up") {
  CHECK(metrics::unit_to_byte(-1.0) == 0);
  CHECK(metrics::unit_to_byte(1.0) == 255);
  CHECK(metrics::unit_to_byte(0.0) == 128);  // 127.5 exactly: half rounds up
  CHECK(metrics::unit_to_byte(-0.5) == 64);  // 63.75
  CHECK(metrics::unit_to_byte(0.5) == 191);  // 191.25
  CHECK(metrics::unit_to_byte(-3.0) == 0);
  CHECK(metrics::unit_to_byte(7.0) == 255);
  CHECK(metrics::unit_to_byte(std::numeric_limits<double>::quiet_NaN()) == 0);
  // Every byte survives the round trip b -> b / 127.5 - 1 -> b, in float too.
  for (int b = 0; b < 256; ++b) {
    CHECK(metrics::unit_to_byte(b / 127.5 - 1.0) == b);
    CHECK(metrics::unit_to_byte(static_cast<float>(b / 127.5 - 1.0)) == b);
  }
}

TEST_CASE("SSIM of identical images is exactly 1, for both windows") {
  Generator gen(3);
  Bytes a = random_bytes(gen, 40 * 33);
  CHECK(metrics::ssim(a.data(), a.data(), 40, 33) == doctest::Approx(1.0).epsilon(1e-14));
  CHECK(metrics::ssim(a.data(), a.data(), 40, 33, SsimOptions::wang2004()) == doctest::Approx(1.0).epsilon(1e-14));
  CHECK(std::isinf(metrics::psnr(a.data(), a.data(), 40, 33)));
}

TEST_CASE("SSIM of constant images is the luminance term (2ab + C1) / (a^2 + b^2 + C1)") {
  const int h = 12, w = 11;
  Bytes a(h * w, 0), b(h * w, 255), c(h * w, 100);
  const double c1 = (0.01 * 255) * (0.01 * 255);
  CHECK(metrics::ssim(a.data(), b.data(), h, w) == doctest::Approx(c1 / (255.0 * 255 + c1)).epsilon(1e-12));
  CHECK(metrics::ssim(c.data(), b.data(), h, w, SsimOptions::wang2004()) ==
        doctest::Approx((2 * 100.0 * 255 + c1) / (100.0 * 100 + 255.0 * 255 + c1)).epsilon(1e-12));
  CHECK(metrics::ssim(a.data(), a.data(), h, w) == 1.0);
}

TEST_CASE("SSIM of a single 7x7 window computed by hand") {
  // x: 24 pixels at 255, 25 at 0; y = 255 - x. Sample statistics over 49 pixels:
  // mean_x = 255 * 24/49, mean_y = 255 * 25/49, var_x = var_y = 255^2 * 24*25 / (49*48),
  // cov = -var_x. SSIM = (2 mx my + C1)(2 cov + C2) / ((mx^2 + my^2 + C1)(2 var + C2)).
  Bytes x(49), y(49);
  for (int i = 0; i < 49; ++i) {
    x[i] = (i * 37) % 49 < 24 ? 255 : 0;  // a scattered pattern with exactly 24 bright pixels
    y[i] = static_cast<std::uint8_t>(255 - x[i]);
  }
  const double mx = 255.0 * 24 / 49, my = 255.0 * 25 / 49, var = 255.0 * 255 * 24 * 25 / (49.0 * 48);
  const double c1 = std::pow(0.01 * 255, 2), c2 = std::pow(0.03 * 255, 2);
  const double expected = (2 * mx * my + c1) * (-2 * var + c2) / ((mx * mx + my * my + c1) * (2 * var + c2));
  CHECK(metrics::ssim(x.data(), y.data(), 7, 7) == doctest::Approx(expected).epsilon(1e-12));
  // PSNR: every pixel differs by 255, so MSE = 255^2 and PSNR = 0 dB.
  CHECK(metrics::psnr(x.data(), y.data(), 7, 7) == doctest::Approx(0.0));
  // One pixel off by 1 in 49: PSNR = 10 log10(255^2 * 49).
  Bytes z = x;
  z[10] = static_cast<std::uint8_t>(z[10] == 0 ? 1 : 254);
  CHECK(metrics::psnr(x.data(), z.data(), 7, 7) == doctest::Approx(10 * std::log10(255.0 * 255 * 49)).epsilon(1e-12));
}

TEST_CASE("sliding-window SSIM equals a brute-force per-window oracle (uniform, Gaussian, odd sizes)") {
  Generator gen(11);
  struct Case {
    int h, w;
    SsimOptions o;
  };
  SsimOptions win5;
  win5.win_size = 5;
  SsimOptions pop = SsimOptions::wang2004();
  pop.sigma = 0.8;  // radius int(3.5 * 0.8 + 0.5) = 3 -> 7 taps
  for (const Case& c : {Case{7, 7, {}}, Case{19, 23, {}}, Case{31, 12, win5}, Case{11, 11, SsimOptions::wang2004()},
                        Case{26, 17, SsimOptions::wang2004()}, Case{15, 9, pop}}) {
    CAPTURE(c.h);
    CAPTURE(c.w);
    // Correlated images so SSIM is far from 0 and 1 and every term matters.
    Bytes a = random_bytes(gen, c.h * c.w);
    Bytes noise = random_bytes(gen, c.h * c.w, 0, 60);
    Bytes b(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) b[i] = static_cast<std::uint8_t>(std::min(255, a[i] / 2 + noise[i]));
    double got = metrics::ssim(a.data(), b.data(), c.h, c.w, c.o);
    double want = ssim_oracle(a, b, c.h, c.w, c.o);
    CHECK(got == doctest::Approx(want).epsilon(1e-11));
    CHECK(got < 0.99);
  }
}

TEST_CASE("SSIM and PSNR reject bad sizes and options with one sentence") {
  Bytes a(64, 1), b(64, 2);
  CHECK_THROWS_WITH_AS(metrics::ssim(a.data(), b.data(), 8, 6), doctest::Contains("smaller than the 7x7 window"),
                       Error);
  CHECK_THROWS_WITH_AS(metrics::ssim(a.data(), b.data(), 8, 8, SsimOptions::wang2004()),
                       doctest::Contains("8x8 image is smaller than the 11x11"), Error);
  SsimOptions even;
  even.win_size = 6;
  CHECK_THROWS_WITH_AS(metrics::ssim(a.data(), b.data(), 8, 8, even), doctest::Contains("must be odd"), Error);
  CHECK_THROWS_AS(metrics::ssim(nullptr, b.data(), 8, 8), Error);
  CHECK_THROWS_AS(metrics::psnr(a.data(), b.data(), 0, 8), Error);
  CHECK_THROWS_AS(metrics::psnr(a.data(), b.data(), 8, 8, -1.0), Error);
  float f[64] = {};
  f[5] = std::numeric_limits<float>::quiet_NaN();
  metrics::Ssim s;
  CHECK_THROWS_WITH_AS(s.unit(f, f, 8, 8), doctest::Contains("NaN at pixel 5"), Error);
  Tensor<float> x(nchw(2, 1, 8, 8)), y(nchw(2, 1, 8, 9));
  CHECK_THROWS_WITH_AS(metrics::score_batch(x, y), doctest::Contains("[2, 1, 8, 9]"), Error);
}

TEST_CASE("score_batch scores [N, 1, H, W] float batches as their saved PNGs") {
  Generator gen(5);
  Tensor<float> x(nchw(3, 1, 16, 20)), y(nchw(3, 1, 16, 20));
  gen.uniform(x, 0.0f, 1.0f);
  gen.uniform(y, 0.0f, 1.0f);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    x[i] = 2.2f * x[i] - 1.1f;  // a little outside [-1, 1]: the clip is part of the rule
    y[i] = 0.7f * x[i] + 0.3f * (2 * y[i] - 1);
  }
  metrics::BatchScores s = metrics::score_batch(x, y);
  REQUIRE(s.ssim.size() == 3);
  for (int n = 0; n < 3; ++n) {
    Bytes a(16 * 20), b(16 * 20);
    for (int i = 0; i < 16 * 20; ++i) {
      a[i] = metrics::unit_to_byte(x[n * 320 + i]);
      b[i] = metrics::unit_to_byte(y[n * 320 + i]);
    }
    CHECK(s.ssim[n] == doctest::Approx(ssim_oracle(a, b, 16, 20, {})).epsilon(1e-11));
    CHECK(s.psnr[n] == metrics::psnr(a.data(), b.data(), 16, 20));
    CHECK(s.ssim[n] < 0.99);
  }
  metrics::BatchScores same = metrics::score_batch(x, x);
  CHECK(same.ssim[2] == doctest::Approx(1.0).epsilon(1e-14));
}

namespace {

// Every pair of a golden from gen_ssim.py: SSIM (both windows) and PSNR against scikit-image.
void check_pairs(const test::Golden& g, const std::vector<Image>& imgs) {
  Tensor<double> pairs = g.get("pairs");
  Tensor<double> su = g.get("ssim_uniform"), sg = g.get("ssim_gaussian"), ps = g.get("psnr");
  REQUIRE(pairs.rank() == 2);
  REQUIRE(pairs.dim(1) == 7);
  REQUIRE(pairs.dim(0) > 0);
  metrics::Ssim uniform, gauss(SsimOptions::wang2004());
  double worst = 0;
  for (std::int64_t k = 0; k < pairs.dim(0); ++k) {
    const double* p = pairs.data() + k * 7;
    const int ia = static_cast<int>(p[0]), ib = static_cast<int>(p[1]), kind = static_cast<int>(p[2]);
    const int y0 = static_cast<int>(p[3]), x0 = static_cast<int>(p[4]), h = static_cast<int>(p[5]),
              w = static_cast<int>(p[6]);
    CAPTURE(k);
    Image a = crop(imgs[ia], y0, x0, h, w);
    Image b = crop(ib >= 0 ? imgs[ib] : degrade(imgs[ia], kind), y0, x0, h, w);
    double u = uniform(a.px.data(), b.px.data(), h, w);
    double gs = gauss(a.px.data(), b.px.data(), h, w);
    double pn = metrics::psnr(a.px.data(), b.px.data(), h, w);
    CHECK(std::abs(u - su[k]) < 1e-9);
    CHECK(std::abs(gs - sg[k]) < 1e-9);
    CHECK(std::abs(pn - ps[k]) < 1e-9 * ps[k]);
    worst = std::max({worst, std::abs(u - su[k]), std::abs(gs - sg[k])});
  }
  MESSAGE("largest |SSIM - skimage| over " << pairs.dim(0) << " pairs: " << worst);
}

std::vector<Image> load_checked(const std::string& root, const std::vector<std::string>& files,
                                const Tensor<double>& sums) {
  REQUIRE(sums.numel() == static_cast<std::int64_t>(files.size()));
  std::vector<Image> imgs;
  for (std::size_t f = 0; f < files.size(); ++f) {
    imgs.push_back(load_grey(root + "/" + files[f]));
    double sum = 0;
    for (std::uint8_t v : imgs.back().px) sum += v;
    REQUIRE_MESSAGE(sum == sums[static_cast<std::int64_t>(f)], files[f] << " is not the file the golden was made from");
  }
  return imgs;
}

// Committed fixtures (tests/golden/ssim_ch2bet/): slices the project's NIfTI importer made
// from Debian's ch2bet.nii.gz (mricron-data), so the parity test runs on every clone.
const char* const kCh2betFiles[] = {
    "ssim_ch2bet/case_901_slice_60.png",
    "ssim_ch2bet/case_901_slice_61.png",
    "ssim_ch2bet/case_901_slice_89.png",
};

}  // namespace

TEST_CASE("SSIM and PSNR on real T1 slices (committed ch2bet fixtures) equal scikit-image 0.19") {
  test::Golden g("ssim_ch2bet.bin");
  std::vector<std::string> files(std::begin(kCh2betFiles), std::end(kCh2betFiles));
  std::vector<Image> imgs = load_checked(VQVAE2_GOLDEN_DIR, files, g.get("file_sums"));
  for (const Image& im : imgs) {
    CHECK(im.h == 256);
    CHECK(im.w == 256);
  }
  check_pairs(g, imgs);
}

TEST_CASE("SSIM and PSNR on the shared MRI slices equal scikit-image 0.19 (needs ../shared/data)") {
  const std::string root = VQVAE2_SHARED_DATA_DIR;
  if (!std::filesystem::is_directory(root)) {
    test::skip_test("the shared MRI slices are not at " + root);
    return;
  }
  test::Golden g("ssim.bin");
  std::vector<std::string> files(std::begin(kFiles), std::end(kFiles));
  std::vector<Image> imgs = load_checked(root, files, g.get("file_sums"));
  check_pairs(g, imgs);
}
