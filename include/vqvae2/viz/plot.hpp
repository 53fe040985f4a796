// Loss curves as PNG: named series on shared axes with nice ticks, grid lines,
// tick labels, axis labels, a title, a legend and optionally a log-scale y.
// Our own small rasteriser: anti-aliased lines (pixel coverage from the distance
// to each segment), text in the built-in bitmap font (font.hpp).
//
// Values that cannot be drawn (NaN, +-inf, and y <= 0 on a log axis) are
// skipped and break the line there; a series with nothing drawable is an error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/viz/font.hpp"
#include "vqvae2/viz/raster.hpp"

namespace vqvae2::viz {

struct Series {
  std::string name;
  std::vector<double> y;
  std::vector<double> x;  // empty: 1, 2, ..., y.size() (e.g. epochs)
};

struct PlotOptions {
  std::string title;
  std::string x_label = "epoch";
  std::string y_label = "loss";
  bool log_y = false;
  int width = 900;
  int height = 560;
  double line_width = 2.0;
};

namespace plot_detail {

// Matplotlib-like qualitative palette: distinct and readable on white.
inline constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
                                   {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
inline constexpr Rgb kBlack{0, 0, 0}, kWhite{255, 255, 255}, kGrid{225, 225, 225}, kMinorGrid{242, 242, 242},
    kText{30, 30, 30};

struct Point {
  double x, y;
};

// A step of 1, 2 or 5 x 10^k near range / target.
inline double nice_step(double range, int target) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

// Tick label with as many decimals as the step needs; scientific for extremes.
inline std::string format_tick(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;  // no "-0"
  char buf[64];
  const double a = std::abs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-4)) {
    // Mantissa decimals: the decades between the value and the step.
    const int digits = static_cast<int>(std::floor(std::log10(a) + 1e-9) - std::floor(std::log10(step) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(digits, 0, 6), v);
  } else {
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

struct Axis {
  double lo = 0, hi = 1;  // in plotted units (log10 of y on a log axis)
  std::vector<double> major, minor;
  std::vector<std::string> labels;
};

inline Axis linear_axis(double lo, double hi, int target) {
  if (hi - lo <= std::abs(hi) * 1e-12) {  // one value: open a range around it
    const double d = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  Axis a;
  const double step = nice_step(hi - lo, target);
  a.lo = std::floor(lo / step + 1e-9) * step;
  a.hi = std::ceil(hi / step - 1e-9) * step;
  for (double t = a.lo; t <= a.hi + step * 1e-6; t += step) {
    const double v = std::round(t / step) * step;
    a.major.push_back(v);
    a.labels.push_back(format_tick(v, step));
  }
  return a;
}

inline std::string format_power(int k) {
  if (k >= -3 && k <= 4) return format_tick(std::pow(10.0, k), std::pow(10.0, std::min(k, 0)));
  return "1e" + std::to_string(k);
}

// Decades as majors; with few decades also 2x and 5x labelled, else 2..9 as minors.
inline Axis log_axis(double lo, double hi) {
  Axis a;
  int k0 = static_cast<int>(std::floor(std::log10(lo) + 1e-12));
  int k1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-12));
  if (k1 <= k0) k1 = k0 + 1;
  a.lo = k0;
  a.hi = k1;
  const bool few = k1 - k0 <= 2;
  for (int k = k0; k <= k1; ++k) {
    a.major.push_back(k);
    a.labels.push_back(format_power(k));
    if (k == k1) break;
    for (int m = 2; m <= 9; ++m) {
      const double v = k + std::log10(static_cast<double>(m));
      if (few && (m == 2 || m == 5)) {
        a.major.push_back(v);
        const double step = std::pow(10.0, std::min(k, 0));
        a.labels.push_back(k >= -3 && k <= 4 ? format_tick(m * std::pow(10.0, k), step)
                                             : std::to_string(m) + "e" + std::to_string(k));
      } else {
        a.minor.push_back(v);
      }
    }
  }
  return a;
}

// Per-series coverage: max over segments, so joints are not drawn twice darker.
class Coverage {
 public:
  Coverage(int w, int h) : w_(w), h_(h), c_(static_cast<std::size_t>(w) * h, 0.f) {}
  void segment(Point a, Point b, double half_width) {
    const double reach = half_width + 1.0;
    const int x0 = std::max(0, static_cast<int>(std::floor(std::min(a.x, b.x) - reach)));
    const int x1 = std::min(w_ - 1, static_cast<int>(std::ceil(std::max(a.x, b.x) + reach)));
    const int y0 = std::max(0, static_cast<int>(std::floor(std::min(a.y, b.y) - reach)));
    const int y1 = std::min(h_ - 1, static_cast<int>(std::ceil(std::max(a.y, b.y) + reach)));
    const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        // Distance from the pixel centre to the segment.
        const double px = x + 0.5 - a.x, py = y + 0.5 - a.y;
        const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
        const double ex = px - t * dx, ey = py - t * dy;
        const double cov = std::clamp(half_width + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
        float& c = c_[static_cast<std::size_t>(y) * w_ + x];
        c = std::max(c, static_cast<float>(cov));
      }
  }
  void paint(Raster& img, int ox, int oy, Rgb color) const {
    for (int y = 0; y < h_; ++y)
      for (int x = 0; x < w_; ++x) img.blend(ox + x, oy + y, color, c_[static_cast<std::size_t>(y) * w_ + x]);
  }

 private:
  int w_, h_;
  std::vector<float> c_;
};

}  // namespace plot_detail

inline Raster render_plot(const std::vector<Series>& series, const PlotOptions& opt = {}) {
  using namespace plot_detail;
  VQVAE2_CHECK(!series.empty(), "plot: there are no series to draw.");
  VQVAE2_CHECK(opt.width >= 200 && opt.height >= 150 && opt.width <= 8000 && opt.height <= 8000, "plot: the size ",
               opt.width, "x", opt.height, " is outside 200x150 .. 8000x8000.");

  // Drawable points per series, in data units (log10 y on a log axis); NaN marks a break.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::vector<Point>> pts(series.size());
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (std::size_t s = 0; s < series.size(); ++s) {
    const Series& ser = series[s];
    VQVAE2_CHECK(!ser.y.empty(), "plot: series '", ser.name, "' is empty.");
    VQVAE2_CHECK(ser.x.empty() || ser.x.size() == ser.y.size(), "plot: series '", ser.name, "' has ", ser.x.size(),
                 " x values for ", ser.y.size(), " y values.");
    std::size_t good = 0;
    for (std::size_t i = 0; i < ser.y.size(); ++i) {
      const double x = ser.x.empty() ? static_cast<double>(i + 1) : ser.x[i];
      const double y = ser.y[i];
      if (!std::isfinite(x) || !std::isfinite(y) || (opt.log_y && y <= 0)) {
        pts[s].push_back({nan, nan});
        continue;
      }
      pts[s].push_back({x, y});
      ++good;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    VQVAE2_CHECK(good > 0, "plot: series '", ser.name, "' has no ", opt.log_y ? "positive finite" : "finite",
                 " values to draw.");
  }

  // Layout: title on top, y label and tick labels on the left, x labels below.
  const int ts = opt.width >= 600 ? 2 : 1;  // text scale for ticks, labels, legend
  const int title_scale = ts + 1;
  Axis ax = linear_axis(xmin, xmax, std::max(3, opt.width / 130));
  Axis ay = opt.log_y ? log_axis(ymin, ymax) : linear_axis(ymin, ymax, std::max(3, opt.height / 90));
  int ytick_w = 0;
  for (const auto& l : ay.labels) ytick_w = std::max(ytick_w, text_width(l, ts));
  const int gap = 4 * ts;
  const int left = gap + (opt.y_label.empty() ? 0 : text_height(ts) + gap) + ytick_w + gap + 2;
  const int top = gap * 2 + (opt.title.empty() ? 0 : text_height(title_scale) + gap);
  const int bottom = gap + text_height(ts) + (opt.x_label.empty() ? 0 : gap + text_height(ts)) + gap;
  const int right = gap * 2 + text_width(ax.labels.back(), ts) / 2;
  const int pw = opt.width - left - right, ph = opt.height - top - bottom;
  VQVAE2_CHECK(pw >= 50 && ph >= 50, "plot: ", opt.width, "x", opt.height, " leaves no room for the plot area.");

  Raster img(opt.width, opt.height, 3, 255);
  auto to_px = [&](double x, double y) {
    const double yy = opt.log_y ? std::log10(y) : y;
    return Point{(x - ax.lo) / (ax.hi - ax.lo) * pw, (1.0 - (yy - ay.lo) / (ay.hi - ay.lo)) * ph};
  };
  auto px_x = [&](double v) { return left + static_cast<int>(std::lround((v - ax.lo) / (ax.hi - ax.lo) * (pw - 1))); };
  auto px_y = [&](double v) {
    return top + static_cast<int>(std::lround((1.0 - (v - ay.lo) / (ay.hi - ay.lo)) * (ph - 1)));
  };

  // Grid, frame, ticks and their labels.
  for (double v : ay.minor) img.fill_rect(left + 1, px_y(v), left + pw - 1, px_y(v) + 1, kMinorGrid);
  for (double v : ay.major) img.fill_rect(left + 1, px_y(v), left + pw - 1, px_y(v) + 1, kGrid);
  for (double v : ax.major) img.fill_rect(px_x(v), top + 1, px_x(v) + 1, top + ph - 1, kGrid);
  img.stroke_rect(left, top, left + pw, top + ph, kBlack);
  const int tick = 3 * ts;
  for (std::size_t i = 0; i < ay.major.size(); ++i) {
    const int y = px_y(ay.major[i]);
    img.fill_rect(left - tick, y, left, y + 1, kBlack);
    draw_text(img, left - tick - 2 - text_width(ay.labels[i], ts), y - font::kCapHeight * ts / 2, ay.labels[i], kText,
              ts);
  }
  for (double v : ay.minor) img.fill_rect(left - tick / 2, px_y(v), left, px_y(v) + 1, kBlack);
  for (std::size_t i = 0; i < ax.major.size(); ++i) {
    const int x = px_x(ax.major[i]);
    img.fill_rect(x, top + ph, x + 1, top + ph + tick, kBlack);
    draw_text(img, x - text_width(ax.labels[i], ts) / 2, top + ph + tick + 2, ax.labels[i], kText, ts);
  }
  if (!opt.title.empty())
    draw_text(img, left + (pw - text_width(opt.title, title_scale)) / 2, gap * 2, opt.title, kText, title_scale);
  if (!opt.x_label.empty())
    draw_text(img, left + (pw - text_width(opt.x_label, ts)) / 2, opt.height - gap - text_height(ts), opt.x_label,
              kText, ts);
  if (!opt.y_label.empty())
    draw_text(img, gap, top + (ph - text_width(opt.y_label, ts)) / 2, opt.y_label, kText, ts, /*vertical=*/true);

  // Curves, clipped to the plot area's inside.
  const double half = std::max(0.5, opt.line_width / 2);
  for (std::size_t s = 0; s < series.size(); ++s) {
    Coverage cov(pw - 2, ph - 2);
    const auto& p = pts[s];
    auto inner = [&](Point d) {
      Point q = to_px(d.x, d.y);
      return Point{q.x * (pw - 2) / pw, q.y * (ph - 2) / ph};
    };
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (std::isnan(p[i].x)) continue;
      const bool prev = i > 0 && !std::isnan(p[i - 1].x), next = i + 1 < p.size() && !std::isnan(p[i + 1].x);
      if (next) cov.segment(inner(p[i]), inner(p[i + 1]), half);
      if (!prev && !next) cov.segment(inner(p[i]), inner(p[i]), half + 1.5);  // an isolated point: a dot
    }
    cov.paint(img, left + 1, top + 1, kPalette[s % std::size(kPalette)]);
  }

  // Legend in the top-right corner of the plot area.
  bool named = false;
  int name_w = 0;
  for (const auto& ser : series) {
    named = named || !ser.name.empty();
    name_w = std::max(name_w, text_width(ser.name, ts));
  }
  if (named) {
    const int swatch = 12 * ts, row_h = text_height(ts) + 2 * ts, pad = 3 * ts;
    const int lw = pad + swatch + pad + name_w + pad, lh = pad + static_cast<int>(series.size()) * row_h + pad;
    const int lx = left + pw - lw - 4 * ts, ly = top + 4 * ts;
    img.fill_rect(lx, ly, lx + lw, ly + lh, kWhite);
    img.stroke_rect(lx, ly, lx + lw, ly + lh, {160, 160, 160});
    for (std::size_t s = 0; s < series.size(); ++s) {
      const int ry = ly + pad + static_cast<int>(s) * row_h;
      const int mid = ry + font::kCapHeight * ts / 2;
      const int thick = std::max(2, static_cast<int>(std::lround(opt.line_width)));
      img.fill_rect(lx + pad, mid - thick / 2, lx + pad + swatch, mid - thick / 2 + thick,
                    kPalette[s % std::size(kPalette)]);
      draw_text(img, lx + pad + swatch + pad, ry, series[s].name, kText, ts);
    }
  }
  return img;
}

// Renders and writes the plot as an RGB PNG (temporary file + rename).
inline void write_plot_png(const std::string& path, const std::vector<Series>& series, const PlotOptions& opt = {}) {
  write_png(path, render_plot(series, opt));
}

}  // namespace vqvae2::viz
