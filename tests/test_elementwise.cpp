// Element-wise math, activation/GLU/dropout layers and the shape layers.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/dropout.hpp"
#include "vqvae2/nn/glu.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/ops/cpu/map.hpp"
#include "vqvae2/ops/elementwise.hpp"

using namespace vqvae2;
using test::TensorD;
using TensorF = Tensor<float, Cpu>;

namespace {

// Values in [-1, -0.05] U [0.05, 1]: away from ReLU's kink, so that a
// finite-difference step never crosses it.
TensorD away_from_zero(const Shape& s, std::uint64_t seed) {
  TensorD t = test::random_tensor(s, seed);
  for (double& v : t) v = (v < 0 ? -0.05 : 0.05) + 0.95 * v;
  return t;
}

TensorF to_float(const TensorD& d) {
  TensorF f(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) f[i] = static_cast<float>(d[i]);
  return f;
}

// Gradient check of a one-input layer in double.
template <class Layer>
void check_layer_gradient(Layer& layer, TensorD x) {
  Context<Cpu> ctx;
  const TensorD* dx = nullptr;
  test::check_gradients([&] { return layer.forward(ctx, x); },
                        [&](const TensorD& dy) { dx = &layer.backward(ctx, dy); },
                        [&] {
                          return std::vector<test::GradTarget>{{"x", x, *dx}};
                        });
}

double ulp_error(float got, double want) {
  double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
  return std::abs(static_cast<double>(got) - want) / ulp;
}

}  // namespace

TEST_CASE("float exp, expm1, sigmoid and tanh stay within a few ulp of the double library") {
  double worst_exp = 0, worst_expm1 = 0, worst_tanh = 0, worst_sigmoid = 0;
  for (int i = -200000; i <= 200000; ++i) {
    float x = static_cast<float>(i) * 4.3e-4f;  // [-86, 86]
    worst_exp = std::max(worst_exp, ulp_error(ops::math::exp(x), std::exp(static_cast<double>(x))));
    worst_sigmoid = std::max(worst_sigmoid, ulp_error(ops::math::sigmoid(x), 1 / (1 + std::exp(-double(x)))));
    if (x != 0.0f) {
      worst_expm1 = std::max(worst_expm1, ulp_error(ops::math::expm1(x), std::expm1(static_cast<double>(x))));
      worst_tanh = std::max(worst_tanh, ulp_error(ops::math::tanh(x), std::tanh(static_cast<double>(x))));
    }
  }
  // Tiny arguments, where exp(x) - 1 and (1 - e) / (1 + e) would cancel.
  for (float x : {1e-7f, -3e-6f, 2e-4f, -0.01f, 0.49f, -0.51f}) {
    worst_expm1 = std::max(worst_expm1, ulp_error(ops::math::expm1(x), std::expm1(static_cast<double>(x))));
    worst_tanh = std::max(worst_tanh, ulp_error(ops::math::tanh(x), std::tanh(static_cast<double>(x))));
  }
  INFO("ulp: exp ", worst_exp, " expm1 ", worst_expm1, " tanh ", worst_tanh, " sigmoid ", worst_sigmoid);
  CHECK(worst_exp <= 2.0);
  CHECK(worst_expm1 <= 3.0);
  CHECK(worst_tanh <= 4.0);
  CHECK(worst_sigmoid <= 3.0);
  // Edges: overflow, underflow, NaN.
  CHECK(std::isinf(ops::math::exp(89.0f)));
  CHECK(std::isinf(ops::math::exp(std::numeric_limits<float>::infinity())));
  CHECK(ops::math::exp(-200.0f) == 0.0f);
  CHECK(ops::math::exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(std::isnan(ops::math::exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(ulp_error(ops::math::exp(88.5f), std::exp(88.5)) <= 2.0);
  CHECK(ops::math::sigmoid(-200.0f) == 0.0f);
  CHECK(ops::math::sigmoid(200.0f) == 1.0f);
  CHECK(ops::math::tanh(50.0f) == 1.0f);
  CHECK(ops::math::tanh(-50.0f) == -1.0f);
  CHECK(ops::math::expm1(-200.0f) == -1.0f);
  CHECK(ulp_error(ops::math::expm1(88.5f), std::expm1(88.5)) <= 2.0);
  CHECK(std::isinf(ops::math::expm1(89.0f)));
  CHECK(std::isnan(ops::math::expm1(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("map, zip and the arithmetic helpers agree with a scalar loop, serial and parallel") {
  for (std::int64_t n : {std::int64_t{37}, std::int64_t{100003}}) {  // below and above the parallel threshold
    TensorD a = test::random_tensor(Shape{n}, 1), b = test::random_tensor(Shape{n}, 2);
    TensorD y(Shape{n});
    ops::zip(a, b, y, [](double u, double v) { return u * v - 1.0; });
    ops::map_inplace(y, [](double u) { return 2 * u; });
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(y[i] == 2 * (a[i] * b[i] - 1.0));
    TensorD s(Shape{n});
    ops::add(a, b, s);
    ops::axpy(s, 0.5, a);
    ops::scale_inplace(s, 3.0);
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(s[i] == doctest::Approx(3 * (1.5 * a[i] + b[i])));
    double total = 0, sq = 0;
    for (std::int64_t i = 0; i < n; ++i) total += a[i], sq += (a[i] - b[i]) * (a[i] - b[i]);
    CHECK(ops::sum(a) == doctest::Approx(total).epsilon(1e-12));
    CHECK(ops::sum_squared_difference(a, b) == doctest::Approx(sq).epsilon(1e-12));
  }
  TensorF a(Shape{4}), b(Shape{5});
  CHECK_THROWS_WITH_AS(ops::add(a, a, b), doctest::Contains("different element counts"), Error);
}

TEST_CASE("activation layers: forward matches the formulas, backward passes the gradient check") {
  Context<Cpu> ctx;
  TensorD x = test::random_tensor(nchw(2, 3, 4, 5), 11, -3.0, 3.0);
  nn::ReLU<double> relu;
  nn::ELU<double> elu;
  nn::Sigmoid<double> sig;
  nn::Tanh<double> tanh_layer;
  const TensorD& r = relu.forward(ctx, x);
  const TensorD& e = elu.forward(ctx, x);
  const TensorD& s = sig.forward(ctx, x);
  const TensorD& t = tanh_layer.forward(ctx, x);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    REQUIRE(r[i] == std::max(x[i], 0.0));
    REQUIRE(e[i] == doctest::Approx(x[i] > 0 ? x[i] : std::exp(x[i]) - 1).epsilon(1e-14));
    REQUIRE(s[i] == doctest::Approx(1 / (1 + std::exp(-x[i]))).epsilon(1e-14));
    REQUIRE(t[i] == doctest::Approx(std::tanh(x[i])).epsilon(1e-14));
  }
  SUBCASE("ReLU") { check_layer_gradient(relu, away_from_zero(nchw(2, 3, 4, 5), 12)); }
  SUBCASE("ELU") { check_layer_gradient(elu, test::random_tensor(nchw(2, 3, 4, 5), 13, -3.0, 3.0)); }
  SUBCASE("Sigmoid") { check_layer_gradient(sig, test::random_tensor(nchw(2, 3, 4, 5), 14, -4.0, 4.0)); }
  SUBCASE("Tanh") { check_layer_gradient(tanh_layer, test::random_tensor(nchw(2, 3, 4, 5), 15, -2.0, 2.0)); }
}

TEST_CASE("float activations match the double formulas on a large tensor (vectorised, parallel path)") {
  Context<Cpu> ctx;
  TensorD xd = test::random_tensor(nchw(2, 16, 32, 32), 21, -6.0, 6.0);
  TensorF x = to_float(xd);
  TensorF dy = to_float(test::random_tensor(x.shape(), 22));
  nn::ELU<float> elu;
  nn::Sigmoid<float> sig;
  nn::Tanh<float> tnh;
  nn::ReLU<float> relu;
  const TensorF& e = elu.forward(ctx, x);
  const TensorF& de = elu.backward(ctx, dy);
  const TensorF& s = sig.forward(ctx, x);
  const TensorF& ds = sig.backward(ctx, dy);
  const TensorF& t = tnh.forward(ctx, x);
  const TensorF& r = relu.forward(ctx, x);
  const TensorF& dr = relu.backward(ctx, dy);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    double v = x[i], g = dy[i];
    double ev = v > 0 ? v : std::expm1(v), sv = 1 / (1 + std::exp(-v));
    REQUIRE(std::abs(e[i] - ev) <= 3e-7 * std::max(1.0, std::abs(ev)));
    REQUIRE(std::abs(de[i] - g * (v > 0 ? 1.0 : std::exp(v))) <= 1e-6);
    REQUIRE(std::abs(s[i] - sv) <= 2e-7);
    REQUIRE(std::abs(ds[i] - g * sv * (1 - sv)) <= 1e-6);
    REQUIRE(std::abs(t[i] - std::tanh(v)) <= 2e-7);
    REQUIRE(r[i] == static_cast<float>(std::max(v, 0.0)));
    REQUIRE(dr[i] == (v > 0 ? dy[i] : 0.0f));
  }
}

TEST_CASE("ELU and GLU match PyTorch within 1e-4 relative") {
  Context<Cpu> ctx;
  test::Golden gold("loss.bin");
  {
    nn::ELU<float> elu;
    TensorF x = gold.get_as<float>("elu.x"), dy = gold.get_as<float>("elu.dy");
    // float activations of O(1) values: ~1e-7 relative per entry; atol covers expm1 near 0.
    test::check_close(elu.forward(ctx, x), gold.get("elu.y"), 1e-7, 1e-4, "elu.y");
    test::check_close(elu.backward(ctx, dy), gold.get("elu.dx"), 1e-7, 1e-4, "elu.dx");
  }
  {
    nn::GLU<float> glu;
    TensorF x = gold.get_as<float>("glu.x"), dy = gold.get_as<float>("glu.dy");
    const TensorF& y = glu.forward(ctx, x);
    CHECK(y.shape() == gold.get("glu.y").shape());
    // a * sigmoid(b) in float: ~1e-7 relative per entry; atol for products near zero.
    test::check_close(y, gold.get("glu.y"), 1e-7, 1e-4, "glu.y");
    test::check_close(glu.backward(ctx, dy), gold.get("glu.dx"), 1e-7, 1e-4, "glu.dx");
  }
}

TEST_CASE("GLU: gradient check, and bad shapes throw one sentence") {
  Context<Cpu> ctx;
  nn::GLU<double> glu;
  check_layer_gradient(glu, test::random_tensor(nchw(2, 6, 3, 4), 31, -3.0, 3.0));
  TensorD odd(nchw(1, 5, 2, 2));
  CHECK_THROWS_WITH_AS(glu.forward(ctx, odd), doctest::Contains("even channel count"), Error);
  glu.forward(ctx, TensorD(nchw(1, 4, 2, 2)));
  CHECK_THROWS_WITH_AS(glu.backward(ctx, TensorD(nchw(1, 4, 2, 2))), doctest::Contains("[1, 2, 2, 2]"), Error);
}

TEST_CASE("Dropout: Philox mask per element, expected fraction, identity in eval, backward uses the same mask") {
  Context<Cpu> ctx;
  const double p = 0.1;
  const Shape shape = nchw(4, 8, 61, 67);  // odd element count: exercises the partial last Philox block
  TensorF x(shape);
  x.fill(1.0f);
  nn::Dropout<float> a(p, 1234), b(p, 1234);
  TensorF ya = a.forward(ctx, x).clone();
  const TensorF& yb = b.forward(ctx, x);
  std::int64_t kept = 0;
  const float scale = 1.0f / (1.0f - static_cast<float>(p));
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    REQUIRE(ya[i] == yb[i]);
    // The rule a CUDA kernel applies element by element.
    bool keep = philox_uniform(a.last_seed(), a.last_offset(), static_cast<std::uint64_t>(i)) > static_cast<float>(p);
    REQUIRE(ya[i] == (keep ? scale : 0.0f));
    REQUIRE(a.mask()[i] == (keep ? 1 : 0));
    kept += keep;
  }
  // Kept fraction within 5 standard deviations of 1 - p.
  const double n = static_cast<double>(x.numel()), frac = static_cast<double>(kept) / n;
  CHECK(std::abs(frac - (1 - p)) < 5 * std::sqrt(p * (1 - p) / n));

  // The next draw continues the stream: a different mask.
  const TensorF& y2 = a.forward(ctx, x);
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) differ += y2[i] != ya[i];
  CHECK(differ > x.numel() / 20);

  // Backward scales dy by the same mask.
  TensorF dy = to_float(test::random_tensor(shape, 41));
  const TensorF& dx = a.backward(ctx, dy);
  for (std::int64_t i = 0; i < x.numel(); ++i) REQUIRE(dx[i] == (a.mask()[i] ? dy[i] * scale : 0.0f));

  // Evaluation: identity forward and backward, no draw consumed.
  ctx.training = false;
  std::uint64_t before = a.generator().offset();
  TensorF xr = to_float(test::random_tensor(shape, 42));
  const TensorF& ye = a.forward(ctx, xr);
  const TensorF& de = a.backward(ctx, dy);
  for (std::int64_t i = 0; i < x.numel(); ++i) REQUIRE((ye[i] == xr[i] && de[i] == dy[i]));
  CHECK(a.generator().offset() == before);

  CHECK_THROWS_WITH_AS(nn::Dropout<float>(1.0), doctest::Contains("outside [0, 1)"), Error);
  CHECK_THROWS_AS(nn::Dropout<float>(-0.1), Error);
}

TEST_CASE("Dropout: init gives sibling layers different streams; a shared generator is used when set") {
  Context<Cpu> ctx;
  Generator g(5);
  nn::Dropout<float> a(0.5), b(0.5);
  a.init(g);
  b.init(g);
  TensorF x(Shape{1000});
  x.fill(1.0f);
  TensorF ya = a.forward(ctx, x).clone();
  const TensorF& yb = b.forward(ctx, x);
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) differ += ya[i] != yb[i];
  CHECK(differ > 300);
  Generator shared(77);
  a.use_generator(&shared);
  a.forward(ctx, x);
  CHECK(a.last_seed() == 77);
  CHECK(shared.offset() == 250);
}

TEST_CASE("Dropout: gradient check with the mask held fixed") {
  Context<Cpu> ctx;
  nn::Dropout<double> drop(0.3, 99);
  TensorD x = test::random_tensor(nchw(2, 3, 4, 5), 51);
  const TensorD* dx = nullptr;
  // Rewinding the generator before every forward keeps the mask of the analytic gradient.
  test::check_gradients(
      [&] {
        drop.generator().set_state(99, 0);
        return drop.forward(ctx, x);
      },
      [&](const TensorD& dy) { dx = &drop.backward(ctx, dy); },
      [&] {
        return std::vector<test::GradTarget>{{"x", x, *dx}};
      });
}

TEST_CASE("ChannelConcat: layout, split gradient, gradient check for 2 and 3 inputs, bad shapes") {
  Context<Cpu> ctx;
  TensorD a = test::random_tensor(nchw(2, 3, 4, 5), 61), b = test::random_tensor(nchw(2, 2, 4, 5), 62),
          c = test::random_tensor(nchw(2, 4, 4, 5), 63);
  nn::ChannelConcat<double> cat;
  const TensorD& y = cat.forward(ctx, a, b, c);
  REQUIRE(y.shape() == nchw(2, 9, 4, 5));
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t h = 0; h < 4; ++h)
      for (std::int64_t w = 0; w < 5; ++w) {
        for (std::int64_t k = 0; k < 3; ++k) REQUIRE(y.at(n, k, h, w) == a.at(n, k, h, w));
        for (std::int64_t k = 0; k < 2; ++k) REQUIRE(y.at(n, 3 + k, h, w) == b.at(n, k, h, w));
        for (std::int64_t k = 0; k < 4; ++k) REQUIRE(y.at(n, 5 + k, h, w) == c.at(n, k, h, w));
      }

  SUBCASE("three inputs") {
    test::check_gradients(
        [&] { return cat.forward(ctx, a, b, c); }, [&](const TensorD& dy) { cat.backward(ctx, dy); },
        [&] {
          return std::vector<test::GradTarget>{{"a", a, cat.grad_a()}, {"b", b, cat.grad_b()}, {"c", c, cat.grad_c()}};
        });
  }
  SUBCASE("two inputs") {
    test::check_gradients([&] { return cat.forward(ctx, a, b); }, [&](const TensorD& dy) { cat.backward(ctx, dy); },
                          [&] {
                            return std::vector<test::GradTarget>{{"a", a, cat.grad_a()}, {"b", b, cat.grad_b()}};
                          });
    CHECK_THROWS_WITH_AS(cat.grad_c(), doctest::Contains("not 3"), Error);
  }
  SUBCASE("mismatched inputs") {
    TensorD bad(nchw(2, 2, 4, 6));
    CHECK_THROWS_WITH_AS(cat.forward(ctx, a, bad), doctest::Contains("[2, 2, 4, 6]"), Error);
    CHECK_THROWS_AS(cat.forward(ctx, a, TensorD(Shape{2, 3, 4})), Error);
  }
}

TEST_CASE("Upsample2x: nearest-neighbour values and gradient check") {
  Context<Cpu> ctx;
  nn::Upsample2x<double> up;
  TensorD x = test::random_tensor(nchw(2, 3, 3, 5), 71);
  const TensorD& y = up.forward(ctx, x);
  REQUIRE(y.shape() == nchw(2, 3, 6, 10));
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < 6; ++i)
        for (std::int64_t j = 0; j < 10; ++j) REQUIRE(y.at(n, c, i, j) == x.at(n, c, i / 2, j / 2));
  check_layer_gradient(up, x);
  CHECK_THROWS_WITH_AS(up.forward(ctx, TensorD(Shape{3, 4})), doctest::Contains("NCHW"), Error);
}

TEST_CASE("ShiftDown and ShiftRight: PixelSNAIL's pad-and-crop shifts and their gradients") {
  Context<Cpu> ctx;
  TensorD x = test::random_tensor(nchw(2, 3, 4, 5), 81);
  nn::ShiftDown<double> down;
  nn::ShiftRight<double> right;
  const TensorD& d = down.forward(ctx, x);
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < 4; ++i)
        for (std::int64_t j = 0; j < 5; ++j) REQUIRE(d.at(n, c, i, j) == (i == 0 ? 0.0 : x.at(n, c, i - 1, j)));
  const TensorD& r = right.forward(ctx, x);
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < 4; ++i)
        for (std::int64_t j = 0; j < 5; ++j) REQUIRE(r.at(n, c, i, j) == (j == 0 ? 0.0 : x.at(n, c, i, j - 1)));
  check_layer_gradient(down, x);
  check_layer_gradient(right, x);
  down.forward(ctx, x);
  CHECK_THROWS_WITH_AS(down.backward(ctx, TensorD(nchw(2, 3, 5, 4))), doctest::Contains("does not match"), Error);
}

TEST_CASE("residual_add and accumulate check shapes and add") {
  TensorF a(nchw(1, 2, 3, 3)), b(nchw(1, 2, 3, 3)), out;
  a.fill(1.5f);
  b.fill(2.0f);
  nn::residual_add(a, b, out);
  CHECK(out.shape() == a.shape());
  CHECK(out[17] == 3.5f);
  nn::accumulate(out, a);
  CHECK(out[0] == 5.0f);
  TensorF c(nchw(1, 2, 3, 4));
  CHECK_THROWS_WITH_AS(nn::residual_add(a, c, out), doctest::Contains("[1, 2, 3, 4]"), Error);
  CHECK_THROWS_AS(nn::accumulate(out, c), Error);
}

TEST_CASE("layers reuse their buffers after the first step and keep no counted reference to their inputs") {
  Context<Cpu> ctx;
  TensorF x = to_float(test::random_tensor(nchw(2, 8, 16, 16), 91)), dy(nchw(2, 4, 16, 16));
  dy.fill(1.0f);
  nn::GLU<float> glu;
  nn::Dropout<float> drop(0.2);
  nn::ELU<float> elu;
  const float *y0 = nullptr, *dx0 = nullptr, *d0 = nullptr;
  for (int step = 0; step < 3; ++step) {
    const TensorF& h = elu.forward(ctx, x);
    const TensorF& y = drop.forward(ctx, glu.forward(ctx, h));
    const TensorF& dx = elu.backward(ctx, glu.backward(ctx, drop.backward(ctx, dy)));
    if (step == 0) {
      y0 = y.data();
      dx0 = dx.data();
      d0 = elu.output().data();
    }
    CHECK(y.data() == y0);
    CHECK(dx.data() == dx0);
    CHECK(elu.output().data() == d0);  // GLU's view of it did not force a reallocation
  }
}
