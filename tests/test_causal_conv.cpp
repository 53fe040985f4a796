// CausalConv2d in its three padding modes: finite-difference gradients in double,
// PyTorch goldens in float (rosinality's ZeroPad2d + weight-normed conv), the
// causal mask, and causality proven through gradients: for an output position p,
// dL/dinput is exactly zero at every input position at or after p in raster order.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/causal_conv2d.hpp"

using namespace vqvae2;
using nn::CausalPadding;
using test::TensorD;

namespace {

using Pos = std::pair<std::int64_t, std::int64_t>;  // (row, column)

template <class Layer>
void check_layer(Layer& layer, TensorD x) {
  Context<Cpu> ctx;
  const TensorD* dx = nullptr;
  test::check_gradients(
      [&] { return layer.forward(ctx, x); },
      [&](const TensorD& dy) {
        zero_grad(layer);
        dx = &layer.backward(ctx, dy);
      },
      [&] {
        std::vector<test::GradTarget> t{{"x", x, *dx}};
        layer.visit([&](std::string_view name, auto& p) { t.push_back({std::string(name), p.value, p.grad}); });
        return t;
      });
}

bool masked_tap(const nn::CausalConv2d<float>& layer, std::int64_t kh, std::int64_t kw, std::int64_t i,
                std::int64_t j) {
  return layer.mode() == CausalPadding::Causal && i == kh - 1 && j >= kw / 2;
}

// The input positions whose gradient is non-zero (over all batch entries and channels).
std::set<Pos> seen_positions(const TensorD& dx) {
  std::set<Pos> s;
  for (std::int64_t n = 0; n < dx.dim(0); ++n)
    for (std::int64_t c = 0; c < dx.dim(1); ++c)
      for (std::int64_t h = 0; h < dx.dim(2); ++h)
        for (std::int64_t w = 0; w < dx.dim(3); ++w)
          if (dx.at(n, c, h, w) != 0.0) s.insert({h, w});
  return s;
}

// Positions of the rectangle rows [r0, r1] x columns [c0, c1], clipped to the image.
void add_rect(std::set<Pos>& s, std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1, std::int64_t H,
              std::int64_t W) {
  for (std::int64_t r = std::max<std::int64_t>(r0, 0); r <= std::min(r1, H - 1); ++r)
    for (std::int64_t c = std::max<std::int64_t>(c0, 0); c <= std::min(c1, W - 1); ++c) s.insert({r, c});
}

std::string describe(const std::set<Pos>& s) {
  std::ostringstream os;
  for (auto& [r, c] : s) os << "(" << r << "," << c << ")";
  return os.str();
}

// dy is one at output position p in every channel, zero elsewhere.
TensorD one_hot_grad(const Shape& s, Pos p) {
  TensorD dy = TensorD::zeros(s);
  for (std::int64_t n = 0; n < s[0]; ++n)
    for (std::int64_t c = 0; c < s[1]; ++c) dy.at(n, c, p.first, p.second) = 1.0;
  return dy;
}

// Asserts the strict raster-order causality of a set of seen positions.
void check_strictly_before(const std::set<Pos>& seen, Pos p, std::int64_t W) {
  for (auto& q : seen) {
    INFO("output ", p.first, ",", p.second, " sees input ", q.first, ",", q.second);
    CHECK(q.first * W + q.second < p.first * W + p.second);
  }
}

// PixelSNAIL's shifts (implemented here: nn/tensor_ops.hpp is another engineer's file).
TensorD shift_down(const TensorD& x) {
  TensorD y = TensorD::zeros(x.shape());
  for (std::int64_t n = 0; n < x.dim(0); ++n)
    for (std::int64_t c = 0; c < x.dim(1); ++c)
      for (std::int64_t h = 1; h < x.dim(2); ++h)
        for (std::int64_t w = 0; w < x.dim(3); ++w) y.at(n, c, h, w) = x.at(n, c, h - 1, w);
  return y;
}
TensorD shift_down_backward(const TensorD& dy) {
  TensorD dx = TensorD::zeros(dy.shape());
  for (std::int64_t n = 0; n < dy.dim(0); ++n)
    for (std::int64_t c = 0; c < dy.dim(1); ++c)
      for (std::int64_t h = 0; h + 1 < dy.dim(2); ++h)
        for (std::int64_t w = 0; w < dy.dim(3); ++w) dx.at(n, c, h, w) = dy.at(n, c, h + 1, w);
  return dx;
}
TensorD shift_right(const TensorD& x) {
  TensorD y = TensorD::zeros(x.shape());
  for (std::int64_t n = 0; n < x.dim(0); ++n)
    for (std::int64_t c = 0; c < x.dim(1); ++c)
      for (std::int64_t h = 0; h < x.dim(2); ++h)
        for (std::int64_t w = 1; w < x.dim(3); ++w) y.at(n, c, h, w) = x.at(n, c, h, w - 1);
  return y;
}
TensorD shift_right_backward(const TensorD& dy) {
  TensorD dx = TensorD::zeros(dy.shape());
  for (std::int64_t n = 0; n < dy.dim(0); ++n)
    for (std::int64_t c = 0; c < dy.dim(1); ++c)
      for (std::int64_t h = 0; h < dy.dim(2); ++h)
        for (std::int64_t w = 0; w + 1 < dy.dim(3); ++w) dx.at(n, c, h, w) = dy.at(n, c, h, w + 1);
  return dx;
}

const Pos kProbes[] = {{0, 0}, {0, 1}, {0, 7}, {1, 0}, {2, 3}, {4, 4}, {5, 0}, {6, 7}, {6, 2}};
constexpr std::int64_t kH = 7, kW = 8;

}  // namespace

TEST_CASE("CausalConv2d: padding geometry of the three modes") {
  auto d = nn::causal_geometry(2, 5, CausalPadding::Down);
  CHECK((d.pad_left == 2 && d.pad_right == 2 && d.pad_top == 1 && d.pad_bottom == 0));
  auto dr = nn::causal_geometry(3, 2, CausalPadding::DownRight);
  CHECK((dr.pad_left == 1 && dr.pad_right == 0 && dr.pad_top == 2 && dr.pad_bottom == 0));
  auto c = nn::causal_geometry(5, 5, CausalPadding::Causal);
  CHECK((c.pad_left == 2 && c.pad_right == 2 && c.pad_top == 4 && c.pad_bottom == 0));
  // Output keeps the input's size for odd widths (and kw - 1 for DownRight's any width).
  Context<Cpu> ctx;
  nn::CausalConv2d<float> conv(3, 4, 5, 5, CausalPadding::Causal);
  Generator gen(1);
  conv.init(gen);
  CHECK(conv.forward(ctx, Tensor<float>::zeros(nchw(2, 3, 6, 7))).shape() == nchw(2, 4, 6, 7));
}

TEST_CASE("CausalConv2d: finite-difference gradients of input, weight_g, weight_v and bias (double)") {
  Generator gen(3);
  struct Case {
    const char* name;
    int kh, kw;
    CausalPadding mode;
  };
  for (Case c :
       {Case{"causal 5x5", 5, 5, CausalPadding::Causal}, Case{"down 2x5", 2, 5, CausalPadding::Down},
        Case{"downright 3x2", 3, 2, CausalPadding::DownRight}, Case{"causal 3x4", 3, 4, CausalPadding::Causal}}) {
    INFO(c.name);
    nn::CausalConv2d<double> conv(3, 4, c.kh, c.kw, c.mode);
    conv.init(gen);
    for (std::int64_t i = 0; i < 4; ++i) conv.weight_g().value[i] *= 0.7 + 0.2 * i;
    check_layer(conv, test::random_tensor(nchw(2, 3, 6, 7), 4));
  }
}

TEST_CASE("CausalConv2d matches rosinality's ZeroPad2d + weight-normed conv in PyTorch (float)") {
  test::Golden gd("weightnorm.bin");
  struct Case {
    const char* prefix;
    int kh, kw;
    CausalPadding mode;
  };
  for (Case c : {Case{"causal", 5, 5, CausalPadding::Causal}, Case{"down", 2, 5, CausalPadding::Down},
                 Case{"downright", 3, 2, CausalPadding::DownRight}}) {
    const std::string p = c.prefix;
    INFO(p);
    Context<Cpu> ctx;
    nn::CausalConv2d<float> conv(3, 4, c.kh, c.kw, c.mode);
    // weight_v from the file is unmasked: the layer must zero the hidden taps itself.
    conv.weight_g().value.copy_from(gd.get_as<float>(p + ".weight_g"));
    conv.weight_v().value.copy_from(gd.get_as<float>(p + ".weight_v"));
    conv.bias().value.copy_from(gd.get_as<float>(p + ".bias"));
    zero_grad(conv);
    const auto& y = conv.forward(ctx, gd.get_as<float>(p + ".x"));
    CHECK(y.shape() == gd.get(p + ".out").shape());
    // float convolutions (<= 75 products of O(1) values per output) against double: ~1e-6
    // absolute where a sum cancels, ~1e-6 relative elsewhere.
    const double atol = 1e-6, rtol = 1e-4;
    test::check_close(y, gd.get(p + ".out"), atol, rtol, p + ".out");
    const auto& dx = conv.backward(ctx, gd.get_as<float>(p + ".probe"));
    test::check_close(dx, gd.get(p + ".grad_x"), atol, rtol, p + ".grad_x");
    test::check_close(conv.weight_g().grad, gd.get(p + ".grad_weight_g"), atol, rtol, p + ".grad_weight_g");
    test::check_close(conv.bias().grad, gd.get(p + ".grad_bias"), atol, rtol, p + ".grad_bias");
    // PyTorch reports gradients for the zeroed taps too; ours are held at exactly zero.
    TensorD expected = gd.get(p + ".grad_weight_v").clone();
    const auto& dv = conv.weight_v().grad;
    std::int64_t masked = 0;
    for (std::int64_t o = 0; o < 4; ++o)
      for (std::int64_t ci = 0; ci < 3; ++ci)
        for (std::int64_t i = 0; i < c.kh; ++i)
          for (std::int64_t j = 0; j < c.kw; ++j)
            if (masked_tap(conv, c.kh, c.kw, i, j)) {
              ++masked;
              CHECK(dv.at(o, ci, i, j) == 0.0f);
              CHECK(conv.weight_v().value.at(o, ci, i, j) == 0.0f);
              expected.at(o, ci, i, j) = 0.0;
            }
    CHECK(masked == (c.mode == CausalPadding::Causal ? 4 * 3 * (c.kw - c.kw / 2) : 0));
    test::check_close(dv, expected, atol, rtol, p + ".grad_weight_v");
  }
}

TEST_CASE("'causal' keeps the hidden taps of weight_v at zero whatever is written into them") {
  Context<Cpu> ctx;
  Generator gen(5);
  nn::CausalConv2d<double> conv(2, 3, 3, 3, CausalPadding::Causal);
  conv.init(gen);
  // As an optimiser step with a stray update would: write into every tap.
  for (double& v : conv.weight_v().value) v += 0.5;
  TensorD x = test::random_tensor(nchw(1, 2, 4, 4), 6);
  conv.forward(ctx, x);
  for (std::int64_t o = 0; o < 3; ++o)
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t j = 0; j < 3; ++j) {
        CHECK((j >= 1) == (conv.weight_v().value.at(o, c, 2, j) == 0.0));
        CHECK((j >= 1) == (conv.conv().weight().at(o, c, 2, j) == 0.0));
      }
}

TEST_CASE("Causality of the 5x5 'causal' conv: output p sees only inputs strictly before p") {
  Context<Cpu> ctx;
  Generator gen(7);
  nn::CausalConv2d<double> conv(3, 4, 5, 5, CausalPadding::Causal);
  conv.init(gen);
  TensorD x = test::random_tensor(nchw(2, 3, kH, kW), 8);
  for (Pos p : kProbes) {
    conv.forward(ctx, x);
    std::set<Pos> seen = seen_positions(conv.backward(ctx, one_hot_grad(nchw(2, 4, kH, kW), p)));
    // Rows p-4..p-1 over columns p-2..p+2, and the two pixels left of p in its own row.
    std::set<Pos> expected;
    add_rect(expected, p.first - 4, p.first - 1, p.second - 2, p.second + 2, kH, kW);
    add_rect(expected, p.first, p.first, p.second - 2, p.second - 1, kH, kW);
    INFO("p = (", p.first, ",", p.second, ") sees ", describe(seen));
    check_strictly_before(seen, p, kW);
    CHECK(seen == expected);
    if (p != Pos{0, 0}) CHECK(!seen.empty());
  }
}

TEST_CASE("Causality of the input stem: shift_down(down [2,5]) + shift_right(downright [3,2])") {
  Context<Cpu> ctx;
  Generator gen(9);
  nn::CausalConv2d<double> horizontal(3, 4, 2, 5, CausalPadding::Down);
  nn::CausalConv2d<double> vertical(3, 4, 3, 2, CausalPadding::DownRight);
  horizontal.init(gen);
  vertical.init(gen);
  TensorD x = test::random_tensor(nchw(2, 3, kH, kW), 10);
  for (Pos p : kProbes) {
    TensorD out_h = shift_down(horizontal.forward(ctx, x));
    TensorD out_v = shift_right(vertical.forward(ctx, x));
    REQUIRE(out_h.shape() == nchw(2, 4, kH, kW));
    REQUIRE(out_v.shape() == nchw(2, 4, kH, kW));
    TensorD dy = one_hot_grad(out_h.shape(), p);
    TensorD dx = horizontal.backward(ctx, shift_down_backward(dy)).clone();
    const TensorD& dx_v = vertical.backward(ctx, shift_right_backward(dy));
    for (std::int64_t i = 0; i < dx.numel(); ++i) dx[i] += dx_v[i];
    std::set<Pos> seen = seen_positions(dx);
    // Rows p-2..p-1 over columns p-2..p+2, and columns p-2..p-1 of rows p-2..p.
    std::set<Pos> expected;
    add_rect(expected, p.first - 2, p.first - 1, p.second - 2, p.second + 2, kH, kW);
    add_rect(expected, p.first - 2, p.first, p.second - 2, p.second - 1, kH, kW);
    INFO("p = (", p.first, ",", p.second, ") sees ", describe(seen));
    check_strictly_before(seen, p, kW);
    CHECK(seen == expected);
    if (p != Pos{0, 0}) CHECK(!seen.empty());
  }
}

TEST_CASE("Receptive fields of the raw 'down' and 'downright' convs (before the stem's shifts)") {
  // Neither is causal on its own: each sees the current pixel, which the stem's shifts remove.
  Context<Cpu> ctx;
  Generator gen(11);
  nn::CausalConv2d<double> down(3, 4, 2, 5, CausalPadding::Down);
  nn::CausalConv2d<double> downright(3, 4, 3, 2, CausalPadding::DownRight);
  down.init(gen);
  downright.init(gen);
  TensorD x = test::random_tensor(nchw(1, 3, kH, kW), 12);
  for (Pos p : kProbes) {
    down.forward(ctx, x);
    std::set<Pos> seen_d = seen_positions(down.backward(ctx, one_hot_grad(nchw(1, 4, kH, kW), p)));
    std::set<Pos> exp_d;
    add_rect(exp_d, p.first - 1, p.first, p.second - 2, p.second + 2, kH, kW);
    INFO("down: p = (", p.first, ",", p.second, ") sees ", describe(seen_d));
    CHECK(seen_d == exp_d);
    downright.forward(ctx, x);
    std::set<Pos> seen_dr = seen_positions(downright.backward(ctx, one_hot_grad(nchw(1, 4, kH, kW), p)));
    std::set<Pos> exp_dr;
    add_rect(exp_dr, p.first - 2, p.first, p.second - 1, p.second, kH, kW);
    INFO("downright: p = (", p.first, ",", p.second, ") sees ", describe(seen_dr));
    CHECK(seen_dr == exp_dr);
    // Nothing below the current row, and nothing right of p in downright.
    for (auto& q : seen_d) CHECK(q.first <= p.first);
    for (auto& q : seen_dr) CHECK((q.first <= p.first && q.second <= p.second));
  }
}

TEST_CASE("CausalConv2d rejects bad input with one clear sentence") {
  Context<Cpu> ctx;
  CHECK_THROWS_WITH_AS(nn::CausalConv2d<float>(3, 4, 1, 1, CausalPadding::Causal),
                       doctest::Contains("CausalConv2d: a 'causal' kernel must be larger than 1x1"), Error);
  CHECK_THROWS_WITH_AS(nn::CausalConv2d<float>(3, 4, 0, 3, CausalPadding::Down),
                       doctest::Contains("CausalConv2d: kernel sizes must be positive"), Error);
  CHECK_THROWS_AS(nn::CausalConv2d<float>(3, 4, 3, 3, static_cast<CausalPadding>(9)), Error);
  nn::CausalConv2d<float> conv(3, 4, 5, 5, CausalPadding::Causal);
  Generator gen(13);
  conv.init(gen);
  CHECK_THROWS_WITH_AS(conv.forward(ctx, Tensor<float>::zeros(nchw(1, 4, 6, 6))),
                       doctest::Contains("input has 4 channels but the weight [4, 3, 5, 5] expects 3"), Error);
  conv.forward(ctx, Tensor<float>::zeros(nchw(1, 3, 6, 6)));
  CHECK_THROWS_AS(conv.backward(ctx, Tensor<float>::zeros(nchw(1, 4, 5, 6))), Error);
}
