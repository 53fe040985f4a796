#include <doctest/doctest.h>
#include <stb_image.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "vqvae2/core/rng.hpp"
#include "vqvae2/viz/font.hpp"
#include "vqvae2/viz/image_grid.hpp"
#include "vqvae2/viz/plot.hpp"

using namespace vqvae2;
using namespace vqvae2::viz;

namespace {

namespace fs = std::filesystem;

std::string tmp_path(const std::string& name) {
  fs::path dir = fs::path(VQVAE2_TEST_TMP_DIR) / "viz";
  fs::create_directories(dir);
  return (dir / name).string();
}

struct Decoded {
  int w = 0, h = 0, c = 0;
  std::vector<std::uint8_t> px;
};

// Reads a PNG back with stb_image in its own channel count.
Decoded read_back(const std::string& path) {
  Decoded d;
  std::unique_ptr<stbi_uc, void (*)(void*)> p(stbi_load(path.c_str(), &d.w, &d.h, &d.c, 0), stbi_image_free);
  REQUIRE_MESSAGE(p != nullptr, "stb cannot decode " << path);
  d.px.assign(p.get(), p.get() + static_cast<std::size_t>(d.w) * d.h * d.c);
  return d;
}

std::vector<std::uint8_t> random_tile(Generator& gen, int n) {
  Tensor<float> u(Shape{n});
  gen.uniform(u, 0.0f, 255.99f);
  std::vector<std::uint8_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<std::uint8_t>(u[i]);
  return t;
}

bool is(const std::uint8_t* p, Rgb c) { return p[0] == c.r && p[1] == c.g && p[2] == c.b; }

}  // namespace

TEST_CASE("font: every glyph is 7 rows (9 with a descender) of 5 cells") {
  for (const auto& g : font::kGlyphs) {
    CAPTURE(g.ch);
    int rows = 1, cells = 0;
    bool ok = true;
    for (const char* p = g.rows; *p; ++p) {
      if (*p == '/') {
        ok = ok && cells == 5;
        ++rows;
        cells = 0;
      } else {
        ok = ok && (*p == '#' || *p == '.');
        ++cells;
      }
    }
    CHECK((ok && cells == 5));
    CHECK((rows == 7 || rows == 9 || (rows == 8 && g.ch == '_')));
  }
  // Digits, letters, the punctuation tick labels use: all present and distinct from '?'.
  const std::string needed = "0123456789.-+e%()/:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  for (char c : needed) {
    CAPTURE(c);
    CHECK(font::glyph(c) != font::glyph('?'));
  }
  CHECK(font::glyph('~') == font::glyph('?'));
}

TEST_CASE("draw_text: ink count and box of a glyph, horizontal and turned") {
  Raster img(40, 40, 1, 0);
  draw_text(img, 3, 5, "1", {255, 255, 255}, 2);
  int ink = 0, x0 = 99, x1 = -1, y0 = 99, y1 = -1;
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 40; ++x)
      if (*img.at(x, y)) {
        ++ink;
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  CHECK(ink == 10 * 4);  // '1' has 10 ink cells, each 2x2
  CHECK(x0 == 3 + 2);    // column 1 of the cell is the leftmost ink
  CHECK(x1 == 3 + 7);
  CHECK(y0 == 5);
  CHECK(y1 == 5 + 13);
  CHECK(text_width("12", 2) == 22);

  Raster v(40, 40, 1, 0);
  draw_text(v, 3, 5, "1", {255, 255, 255}, 2, /*vertical=*/true);
  int vink = 0;
  for (auto p : v.pixels) vink += p != 0;
  CHECK(vink == ink);
  // The glyph's bottom row (cell row 6, ink in columns 1..3) becomes a column at x 15..16,
  // running upwards from y 5 + 9 - 2.
  CHECK(*v.at(3 + 13, 5 + 9 - 2) == 255);
  CHECK(*v.at(3 + 13, 5 + 9 - 7) == 255);
  CHECK(*v.at(3 + 13, 5 + 9 - 8) == 0);
}

TEST_CASE("image grid: tiles land at their padded places, background elsewhere, PNG round trip") {
  Generator gen(1);
  const int th = 5, tw = 4;
  std::vector<std::vector<std::uint8_t>> t;
  for (int i = 0; i < 5; ++i) t.push_back(random_tile(gen, th * tw));
  std::vector<std::vector<GreyView>> rows = {
      {{t[0].data(), th, tw}, {t[1].data(), th, tw}, {t[2].data(), th, tw}},
      {{t[3].data(), th, tw}, {t[4].data(), th, tw}},  // shorter row: the last slot stays background
  };
  GridOptions opt;
  opt.padding = 3;
  opt.background = 77;
  Raster g = compose_grid(rows, opt);
  REQUIRE(g.width == 3 * (tw + 3) + 3);
  REQUIRE(g.height == 2 * (th + 3) + 3);
  REQUIRE(g.channels == 1);
  std::vector<int> owner(static_cast<std::size_t>(g.width) * g.height, -1);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < static_cast<int>(rows[r].size()); ++c)
      for (int y = 0; y < th; ++y)
        for (int x = 0; x < tw; ++x) {
          const int gx = 3 + c * (tw + 3) + x, gy = 3 + r * (th + 3) + y;
          CHECK(*g.at(gx, gy) == rows[r][c].pixels[y * tw + x]);
          owner[gy * g.width + gx] = 1;
        }
  int bg = 0;
  for (int i = 0; i < g.width * g.height; ++i)
    if (owner[i] < 0) bg += g.pixels[i] == 77 ? 1 : -1000;
  CHECK(bg == g.width * g.height - 5 * th * tw);

  const std::string path = tmp_path("grid.png");
  write_grid_png(path, rows, opt);
  Decoded d = read_back(path);
  CHECK(d.w == g.width);
  CHECK(d.h == g.height);
  CHECK(d.c == 1);
  CHECK(d.px == g.pixels);
}

TEST_CASE("image grid from [-1, 1] batches stores pixels as metrics::unit_to_byte") {
  Generator gen(2);
  Tensor<float> orig(nchw(3, 1, 6, 7)), rec(nchw(3, 1, 6, 7));
  gen.uniform(orig, -1.2f, 1.2f);
  gen.uniform(rec, -1.0f, 1.0f);
  Raster g = compose_grid(std::vector<Tensor<float>>{orig, rec}, GridOptions{0, 0});
  REQUIRE(g.width == 21);
  REQUIRE(g.height == 12);
  for (int n = 0; n < 3; ++n)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 7; ++x) {
        CHECK(*g.at(n * 7 + x, y) == metrics::unit_to_byte(orig.at(n, 0, y, x)));
        CHECK(*g.at(n * 7 + x, 6 + y) == metrics::unit_to_byte(rec.at(n, 0, y, x)));
      }
  const std::string path = tmp_path("batch_grid.png");
  write_grid_png(path, std::vector<Tensor<float>>{orig, rec});
  Decoded d = read_back(path);
  CHECK(d.w == 3 * 9 + 2);
  CHECK(d.h == 2 * 8 + 2);
}

TEST_CASE("image grid rejects bad input with one sentence") {
  std::vector<std::uint8_t> a(20), b(30);
  CHECK_THROWS_WITH_AS(compose_grid({{{a.data(), 5, 4}, {b.data(), 5, 6}}}),
                       doctest::Contains("tile (row 0, column 1) is 5x6 but the first tile is 5x4"), Error);
  CHECK_THROWS_WITH_AS(compose_grid(std::vector<std::vector<GreyView>>{}), doctest::Contains("no tiles"), Error);
  CHECK_THROWS_WITH_AS(compose_grid({{{nullptr, 5, 4}}}), doctest::Contains("is empty"), Error);
  CHECK_THROWS_AS(compose_grid({{{a.data(), 5, 4}}}, GridOptions{-1, 0}), Error);
  Tensor<float> x(nchw(1, 3, 4, 4));
  x.fill(0.f);
  CHECK_THROWS_WITH_AS(compose_grid(std::vector<Tensor<float>>{x}), doctest::Contains("[N, 1, H, W]"), Error);
  Tensor<float> nanx(nchw(1, 1, 4, 4));
  nanx.fill(0.f);
  nanx[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(compose_grid(std::vector<Tensor<float>>{nanx}), doctest::Contains("NaN at element 5"), Error);
}

TEST_CASE("PNG writes are atomic: a missing folder fails cleanly, a rewrite replaces the file whole") {
  std::vector<std::uint8_t> a(20, 9);
  const std::string missing = tmp_path("no_such_dir") + "/x/grid.png";
  CHECK_THROWS_WITH_AS(write_grid_png(missing, {{{a.data(), 5, 4}}}), doctest::Contains("grid.png"), Error);
  CHECK(!fs::exists(missing));

  const std::string path = tmp_path("rewrite.png");
  write_grid_png(path, {{{a.data(), 5, 4}}});
  std::vector<std::uint8_t> b(20, 200);
  write_grid_png(path, {{{b.data(), 5, 4}, {b.data(), 5, 4}}}, GridOptions{0, 0});
  Decoded d = read_back(path);
  CHECK(d.w == 8);
  CHECK(d.px == std::vector<std::uint8_t>(40, 200));
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("plot: a valid RGB PNG of the requested size with curves where the data puts them") {
  // Series 0 spans y 0..10 (axis 0..10); series 1 is flat at 5, the vertical middle.
  std::vector<Series> s = {{"train", {0, 10, 3, 7}, {}}, {"validate", {5, 5, 5, 5}, {}}};
  PlotOptions opt;
  opt.title = "VQ-VAE-2 loss";
  const std::string path = tmp_path("plot.png");
  write_plot_png(path, s, opt);
  Decoded d = read_back(path);
  REQUIRE(d.w == 900);
  REQUIRE(d.h == 560);
  REQUIRE(d.c == 3);
  auto px = [&](int x, int y) { return d.px.data() + (static_cast<std::size_t>(y) * d.w + x) * 3; };
  const Rgb black{0, 0, 0}, orange = plot_detail::kPalette[1];
  // The frame's right edge: the rightmost pure black pixel of the middle row.
  int right = -1;
  for (int x = 0; x < d.w; ++x)
    if (is(px(x, d.h / 2), black)) right = x;
  REQUIRE(right > d.w / 2);
  // One column inside it (no tick marks there): the frame's top and bottom.
  const int col = right - 1;
  int top = -1, bottom = -1;
  for (int y = 0; y < d.h; ++y)
    if (is(px(col, y), black)) {
      if (top < 0) top = y;
      bottom = y;
    }
  REQUIRE(bottom - top > 100);
  int orange_rows = 0;
  double orange_y = 0;
  for (int y = top; y <= bottom; ++y)
    if (is(px(col - 5, y), orange)) ++orange_rows, orange_y += y;
  REQUIRE(orange_rows >= 1);
  CHECK(std::abs(orange_y / orange_rows - (top + bottom) / 2.0) <= 1.5);

  // Same picture in memory as on disk.
  Raster r = render_plot(s, opt);
  CHECK(r.pixels == d.px);
}

TEST_CASE("plot: log-scale y puts a geometric midpoint in the middle; bad values are skipped") {
  // y 1, 10, 100 at x 1, 2, 3: on a log axis (1..100) the point (2, 10) is at mid height.
  // The NaN, the zero and the negative value cannot be drawn on a log axis and are
  // skipped, leaving (7, 50) an isolated dot. The x axis is 0..8 (step 2).
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<Series> s = {{"loss", {1, 10, 100, nan, 0.0, -3.0, 50}, {1, 2, 3, 4, 5, 6, 7}}};
  PlotOptions opt;
  opt.log_y = true;
  opt.title = "";
  opt.width = 640;
  opt.height = 400;
  Raster r = render_plot(s, opt);
  // Frame as in the test above.
  const Rgb black{0, 0, 0}, blue = plot_detail::kPalette[0];
  int left = -1, right = -1;
  for (int x = 0; x < r.width; ++x)
    if (is(r.at(x, r.height / 2), black)) {
      if (left < 0) left = x;
      right = x;
    }
  int top = -1, bottom = -1;
  for (int y = 0; y < r.height; ++y)
    if (is(r.at(right - 1, y), black)) {
      if (top < 0) top = y;
      bottom = y;
    }
  REQUIRE(right - left > 100);
  REQUIRE(bottom - top > 100);
  // The blue run in the column at x = 2, a quarter of the way across.
  const int col = left + static_cast<int>(std::lround((right - left) * 0.25));
  int n = 0;
  double ys = 0;
  for (int y = top + 1; y < bottom; ++y)
    if (is(r.at(col, y), blue)) ++n, ys += y;
  REQUIRE(n >= 1);
  CHECK(std::abs(ys / n - (top + bottom) / 2.0) <= 2.0);
  // Nothing drawn over the skipped values (x 3.3 .. 6.5), but the dot at x = 7 is there.
  auto blue_between = [&](double f0, double f1) {
    int count = 0;
    for (int y = top + 1; y < bottom; ++y)
      for (int x = left + static_cast<int>((right - left) * f0); x < left + static_cast<int>((right - left) * f1); ++x)
        count += is(r.at(x, y), blue);
    return count;
  };
  CHECK(blue_between(3.3 / 8, 6.5 / 8) == 0);
  CHECK(blue_between(6.8 / 8, 7.2 / 8) > 9);
}

TEST_CASE("plot rejects what it cannot draw with one sentence") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(render_plot({}), doctest::Contains("no series"), Error);
  CHECK_THROWS_WITH_AS(render_plot({{"train", {}, {}}}), doctest::Contains("series 'train' is empty"), Error);
  CHECK_THROWS_WITH_AS(render_plot({{"val", {nan, nan}, {}}}), doctest::Contains("no finite values"), Error);
  PlotOptions log;
  log.log_y = true;
  CHECK_THROWS_WITH_AS(render_plot({{"val", {0.0, -1.0}, {}}}, log), doctest::Contains("positive finite"), Error);
  CHECK_THROWS_WITH_AS(render_plot({{"a", {1, 2}, {1}}}), doctest::Contains("1 x values for 2 y values"), Error);
  PlotOptions tiny;
  tiny.width = 10;
  CHECK_THROWS_AS(render_plot({{"a", {1, 2}, {}}}, tiny), Error);
  // One value is fine: a dot on an axis opened around it.
  Raster one = render_plot({{"", {0.5}, {}}});  // unnamed: no legend swatch to count
  int blue = 0;
  for (int y = 0; y < one.height; ++y)
    for (int x = 0; x < one.width; ++x) blue += is(one.at(x, y), plot_detail::kPalette[0]);
  CHECK(blue > 9);
}

TEST_CASE("tick labels: nice steps and decimals") {
  CHECK(plot_detail::nice_step(10, 5) == 2);
  CHECK(plot_detail::nice_step(0.7, 7) == doctest::Approx(0.1));
  CHECK(plot_detail::nice_step(300, 6) == 50);
  CHECK(plot_detail::format_tick(0.25, 0.05) == "0.25");
  CHECK(plot_detail::format_tick(-1e-17, 0.1) == "0.0");
  CHECK(plot_detail::format_tick(40, 10) == "40");
  CHECK(plot_detail::format_tick(2e-5, 1e-5) == "2e-05");
  CHECK(plot_detail::format_tick(1.2e6, 1e5) == "1.2e+06");
  plot_detail::Axis a = plot_detail::linear_axis(0.013, 0.087, 6);
  CHECK(a.lo == doctest::Approx(0.01));
  CHECK(a.hi == doctest::Approx(0.09));
  CHECK(a.labels.front() == "0.01");
  plot_detail::Axis l = plot_detail::log_axis(0.003, 0.8);
  CHECK(l.lo == -3);
  CHECK(l.hi == 0);
  CHECK(l.labels.front() == "0.001");
  CHECK(l.labels.back() == "1");
}
