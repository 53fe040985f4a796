// Linear, WNLinear and WNConv2d: finite-difference gradients in double, PyTorch
// goldens in float (tests/golden/gen_weightnorm.py), initialisation, the +=
// gradient convention, buffer reuse and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/linear.hpp"
#include "vqvae2/nn/weight_norm.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"
#include "vqvae2/nn/wn_linear.hpp"

using namespace vqvae2;
using test::TensorD;

namespace {

// Checks dL/dx and dL/dθ of every visited parameter of a single-input layer.
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

// Sets the layer's parameters from the golden file, runs forward and backward with
// the golden probe, and compares everything with PyTorch within 1e-4 relative.
template <class Layer>
void check_golden(Layer& layer, const std::string& prefix) {
  test::Golden gd("weightnorm.bin");
  Context<Cpu> ctx;
  layer.visit([&](std::string_view name, auto& p) {
    Tensor<float> v = gd.get_as<float>(prefix + "." + std::string(name));
    REQUIRE(v.shape() == p.value.shape());
    p.value.copy_from(v);
  });
  Tensor<float> x = gd.get_as<float>(prefix + ".x");
  zero_grad(layer);
  const Tensor<float>& y = layer.forward(ctx, x);
  REQUIRE(y.shape() == gd.get(prefix + ".out").shape());
  // float sums of O(10) products of O(1) values: absolute rounding ~1e-6 where an output
  // cancels to near zero, ~1e-6 relative elsewhere.
  const double atol = 1e-6, rtol = 1e-4;
  test::check_close(y, gd.get(prefix + ".out"), atol, rtol, prefix + ".out");
  const Tensor<float>& dx = layer.backward(ctx, gd.get_as<float>(prefix + ".probe"));
  REQUIRE(dx.shape() == x.shape());
  test::check_close(dx, gd.get(prefix + ".grad_x"), atol, rtol, prefix + ".grad_x");
  layer.visit([&](std::string_view name, auto& p) {
    INFO(prefix, ".grad_", name);
    test::check_close(p.grad, gd.get(prefix + ".grad_" + std::string(name)), atol, rtol,
                      prefix + ".grad_" + std::string(name));
  });
}

double row_norm(const TensorD& v, std::int64_t row) {
  std::int64_t cols = v.numel() / v.dim(0);
  double s = 0;
  for (std::int64_t j = 0; j < cols; ++j) s += v[row * cols + j] * v[row * cols + j];
  return std::sqrt(s);
}

}  // namespace

TEST_CASE("weight_norm_forward: each row of w is g_i times the unit direction of v_i") {
  Context<Cpu> ctx;
  TensorD v = test::random_tensor(nchw(3, 2, 2, 2), 1);
  TensorD g = test::random_tensor(nchw(3, 1, 1, 1), 2, 0.5, 2.0);
  TensorD w, inv;
  nn::weight_norm_forward(ctx, g, v, w, inv);
  REQUIRE(w.shape() == v.shape());
  for (std::int64_t i = 0; i < 3; ++i) {
    CHECK(row_norm(w, i) == doctest::Approx(std::abs(g[i])).epsilon(1e-12));
    for (std::int64_t j = 0; j < 8; ++j) CHECK(w[i * 8 + j] * row_norm(v, i) == doctest::Approx(g[i] * v[i * 8 + j]));
  }
}

TEST_CASE("Linear: finite-difference gradients of input, weight and bias (double)") {
  nn::Linear<double> lin(6, 5);
  Generator gen(11);
  lin.init(gen);
  check_layer(lin, test::random_tensor(Shape{7, 6}, 12));
  nn::Linear<double> nobias(4, 3, false);
  nobias.init(gen);
  check_layer(nobias, test::random_tensor(Shape{5, 4}, 13));
}

TEST_CASE("WNLinear: finite-difference gradients of input, weight_g, weight_v and bias (double)") {
  nn::WNLinear<double> lin(6, 5);
  Generator gen(21);
  lin.init(gen);
  // Move g away from ||v|| so that the g-dependence is tested in general position.
  for (std::int64_t i = 0; i < 5; ++i) lin.weight_g().value[i] *= 0.5 + 0.3 * i;
  check_layer(lin, test::random_tensor(Shape{7, 6}, 22));
}

TEST_CASE("WNConv2d: finite-difference gradients of input, weight_g, weight_v and bias (double)") {
  Generator gen(31);
  SUBCASE("3x3, stride 1, padding 1") {
    nn::WNConv2d<double> conv(3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1));
    conv.init(gen);
    for (std::int64_t i = 0; i < 4; ++i) conv.weight_g().value[i] *= 1.5 - 0.25 * i;
    check_layer(conv, test::random_tensor(nchw(2, 3, 5, 6), 32));
  }
  SUBCASE("4x4, stride 2, asymmetric padding, no bias") {
    ops::ConvGeometry g{2, 2, 1, 0, 2, 1};
    nn::WNConv2d<double> conv(2, 3, 4, 4, g, false);
    conv.init(gen);
    check_layer(conv, test::random_tensor(nchw(2, 2, 7, 8), 33));
  }
}

TEST_CASE("Linear, WNLinear and WNConv2d match PyTorch (float, torch.nn.utils.weight_norm)") {
  SUBCASE("nn.Linear(6, 5)") {
    nn::Linear<float> lin(6, 5);
    check_golden(lin, "linear");
  }
  SUBCASE("weight_norm(nn.Linear(6, 5))") {
    nn::WNLinear<float> lin(6, 5);
    check_golden(lin, "wnlinear");
  }
  SUBCASE("weight_norm(nn.Conv2d(3, 4, 3, padding=1))") {
    nn::WNConv2d<float> conv(3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1));
    check_golden(conv, "wnconv");
  }
  SUBCASE("weight_norm(nn.Conv2d(2, 3, 4, stride=2))") {
    nn::WNConv2d<float> conv(2, 3, 4, 4, ops::ConvGeometry::symmetric(2, 0));
    check_golden(conv, "wnconv_s2");
  }
}

TEST_CASE("init: PyTorch's default bounds, and g = ||v|| so that the effective weight equals v") {
  Context<Cpu> ctx;
  Generator gen(41);
  nn::WNConv2d<double> conv(8, 6, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  conv.init(gen);
  const double bound = 1.0 / std::sqrt(8.0 * 9.0);
  double vmax = 0;
  for (double v : conv.weight_v().value) {
    REQUIRE(std::abs(v) <= bound);
    vmax = std::max(vmax, std::abs(v));
  }
  CHECK(vmax > 0.8 * bound);  // spread over the range, not a constant
  for (double b : conv.bias().value) REQUIRE(std::abs(b) <= bound);
  for (std::int64_t i = 0; i < 6; ++i)
    CHECK(conv.weight_g().value[i] == doctest::Approx(row_norm(conv.weight_v().value, i)));
  conv.forward(ctx, test::random_tensor(nchw(1, 8, 4, 4), 42));
  for (std::int64_t i = 0; i < conv.weight().numel(); ++i)
    REQUIRE(conv.weight()[i] == doctest::Approx(conv.weight_v().value[i]).epsilon(1e-12));

  nn::WNLinear<double> wl(10, 4);
  wl.init(gen);
  for (double v : wl.weight_v().value) REQUIRE(std::abs(v) <= 1.0 / std::sqrt(10.0));
  for (std::int64_t i = 0; i < 4; ++i)
    CHECK(wl.weight_g().value[i] == doctest::Approx(row_norm(wl.weight_v().value, i)));

  nn::Linear<float> l(16, 4);
  l.init(gen);
  for (float v : l.weight().value) REQUIRE(std::abs(v) <= 0.25f);
  for (float v : l.bias().value) REQUIRE(std::abs(v) <= 0.25f);
}

TEST_CASE("Parameter gradients accumulate (+=) and input gradients are written (=)") {
  Context<Cpu> ctx;
  Generator gen(51);
  nn::WNConv2d<double> conv(2, 3, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  conv.init(gen);
  TensorD x = test::random_tensor(nchw(1, 2, 4, 4), 52);
  TensorD dy = test::random_tensor(nchw(1, 3, 4, 4), 53);
  zero_grad(conv);
  conv.forward(ctx, x);
  TensorD dx1 = conv.backward(ctx, dy).clone();
  std::vector<TensorD> once;
  conv.visit([&](std::string_view, auto& p) { once.push_back(p.grad.clone()); });
  conv.forward(ctx, x);
  const TensorD& dx2 = conv.backward(ctx, dy);
  for (std::int64_t i = 0; i < dx1.numel(); ++i) REQUIRE(dx2[i] == dx1[i]);
  std::size_t k = 0;
  conv.visit([&](std::string_view name, auto& p) {
    INFO(name);
    for (std::int64_t i = 0; i < p.grad.numel(); ++i) REQUIRE(p.grad[i] == doctest::Approx(2 * once[k][i]));
    ++k;
  });
}

TEST_CASE("A training step reuses its buffers and releases the producer's buffer after backward") {
  Context<Cpu> ctx;
  Generator gen(61);
  nn::WNConv2d<float> conv(3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  nn::WNLinear<float> lin(5, 6);
  conv.init(gen);
  lin.init(gen);
  Tensor<float> x(nchw(2, 3, 6, 6)), dy(nchw(2, 4, 6, 6)), xl(Shape{7, 5}), dyl(Shape{7, 6});
  gen.uniform(x, -1.0f, 1.0f);
  gen.uniform(dy, -1.0f, 1.0f);
  gen.uniform(xl, -1.0f, 1.0f);
  gen.uniform(dyl, -1.0f, 1.0f);
  const float* y0 = conv.forward(ctx, x).data();
  const float* dx0 = conv.backward(ctx, dy).data();
  const float* yl0 = lin.forward(ctx, xl).data();
  const float* dxl0 = lin.backward(ctx, dyl).data();
  for (int step = 0; step < 3; ++step) {
    CHECK(conv.forward(ctx, x).data() == y0);
    CHECK(conv.backward(ctx, dy).data() == dx0);
    CHECK(lin.forward(ctx, xl).data() == yl0);
    CHECK(lin.backward(ctx, dyl).data() == dxl0);
  }
  // Backward drops the layers' aliases of their inputs: the producer can still resize in place.
  const float* px = x.data();
  x.resize(x.shape());
  CHECK(x.data() == px);
}

TEST_CASE("Bad input is rejected with one sentence naming the layer and the shapes") {
  Context<Cpu> ctx;
  nn::WNConv2d<float> conv(3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  Generator gen(71);
  conv.init(gen);
  CHECK_THROWS_WITH_AS(conv.forward(ctx, Tensor<float>::zeros(nchw(1, 2, 5, 5))),
                       doctest::Contains("WNConv2d::forward: input has 2 channels"), Error);
  CHECK_THROWS_WITH_AS(conv.forward(ctx, Tensor<float>::zeros(Shape{3, 5, 5})), doctest::Contains("4-D"), Error);
  conv.forward(ctx, Tensor<float>::zeros(nchw(1, 3, 5, 5)));
  CHECK_THROWS_WITH_AS(conv.backward(ctx, Tensor<float>::zeros(nchw(1, 4, 5, 4))),
                       doctest::Contains("WNConv2d::backward: output gradient [1, 4, 5, 4]"), Error);
  CHECK_THROWS_WITH_AS(conv.set_weight_mask(Tensor<float>::zeros(nchw(4, 3, 2, 3))),
                       doctest::Contains("does not match weight_v [4, 3, 3, 3]"), Error);
  CHECK_THROWS_AS(nn::WNConv2d<float>(3, 0, 3, 3), Error);

  nn::Linear<float> lin(6, 5);
  CHECK_THROWS_WITH_AS(lin.forward(ctx, Tensor<float>::zeros(Shape{4, 7})),
                       doctest::Contains("Linear::forward: expected input [M, 6] for weight [5, 6], got [4, 7]"),
                       Error);
  nn::WNLinear<float> wl(6, 5);
  CHECK_THROWS_WITH_AS(wl.forward(ctx, Tensor<float>::zeros(nchw(1, 6, 1, 1))), doctest::Contains("WNLinear::forward"),
                       Error);

  // A zero row of v has no direction: weight norm refuses instead of producing NaN.
  nn::WNLinear<float> zero(3, 2);
  zero.init(gen);
  for (std::int64_t j = 0; j < 3; ++j) zero.weight_v().value[3 + j] = 0.0f;
  CHECK_THROWS_WITH_AS(zero.forward(ctx, Tensor<float>::zeros(Shape{1, 3})), doctest::Contains("all zeros"), Error);
}
