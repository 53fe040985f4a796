#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/conv2d.hpp"
#include "vqvae2/nn/conv_transpose2d.hpp"

using namespace vqvae2;
using vqvae2::test::check_gradients;
using vqvae2::test::GradTarget;
using vqvae2::test::max_rel_error;
using vqvae2::test::random_tensor;
using vqvae2::test::TensorD;

namespace {

ops::ConvGeometry geom(int stride, int top, int bottom, int left, int right) {
  return ops::ConvGeometry{stride, stride, top, bottom, left, right};
}

Tensor<float> to_float(const TensorD& d) {
  Tensor<float> f(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) f[i] = static_cast<float>(d[i]);
  return f;
}

template <class Layer>
void gradcheck_layer(Layer& layer, const Shape& xs, std::uint64_t seed) {
  Context<Cpu> ctx;
  Generator g(seed);
  layer.init(g);
  TensorD x = random_tensor(xs, seed + 1);
  if (layer.has_bias()) layer.bias().value.copy_from(random_tensor(layer.bias().shape(), seed + 2));
  check_gradients(
      [&] { return layer.forward(ctx, x); },
      [&](const TensorD& dy) {
        zero_grad(layer);
        layer.backward(ctx, dy);
      },
      [&] {
        std::vector<GradTarget> t{{"x", x, layer.input_grad()}, {"weight", layer.weight().value, layer.weight().grad}};
        if (layer.has_bias()) t.push_back({"bias", layer.bias().value, layer.bias().grad});
        return t;
      });
}

}  // namespace

TEST_CASE("Conv2d gradients match finite differences (double)") {
  struct Case {
    const char* name;
    int in, out, kh, kw;
    ops::ConvGeometry g;
    Shape x;
    bool bias;
  };
  const Case cases[] = {
      {"3x3 pad 1", 3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1), nchw(2, 3, 5, 6), true},
      {"4x4 stride 2 pad 1", 2, 3, 4, 4, ops::ConvGeometry::symmetric(2, 1), nchw(2, 2, 8, 6), true},
      {"1x1", 5, 3, 1, 1, ops::ConvGeometry::symmetric(1, 0), nchw(2, 5, 3, 4), true},
      {"asymmetric causal padding 3x5", 2, 3, 3, 5, geom(1, 2, 0, 2, 2), nchw(2, 2, 5, 6), true},
      {"stride 2, odd size, no bias", 3, 2, 3, 3, geom(2, 1, 0, 0, 1), nchw(1, 3, 7, 5), false},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      nn::Conv2d<double> layer(c.in, c.out, c.kh, c.kw, c.g, c.bias);
      gradcheck_layer(layer, c.x, 11);
    }
  }
}

TEST_CASE("ConvTranspose2d gradients match finite differences (double)") {
  struct Case {
    const char* name;
    int in, out, kh, kw;
    ops::ConvGeometry g;
    Shape x;
    bool bias;
  };
  const Case cases[] = {
      {"4x4 stride 2 pad 1", 3, 2, 4, 4, ops::ConvGeometry::symmetric(2, 1), nchw(2, 3, 4, 3), true},
      {"3x3 stride 1 pad 0", 2, 3, 3, 3, ops::ConvGeometry::symmetric(1, 0), nchw(2, 2, 3, 4), true},
      {"3x3 stride 2 asymmetric padding, no bias", 2, 2, 3, 3, geom(2, 1, 0, 0, 2), nchw(1, 2, 3, 3), false},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      nn::ConvTranspose2d<double> layer(c.in, c.out, c.kh, c.kw, c.g, c.bias);
      gradcheck_layer(layer, c.x, 23);
    }
  }
}

namespace {

// One fast-path (oneDNN, float) op against the reference loops run in double.
struct OpCase {
  const char* name;
  bool transposed;
  Shape x;
  std::int64_t out, kh, kw;
  ops::ConvGeometry g;
  bool bias;
};

void compare_with_reference(const OpCase& c) {
  Context<Cpu> ctx;
  const std::int64_t in = c.x[1];
  const Shape ws = c.transposed ? Shape{in, c.out, c.kh, c.kw} : Shape{c.out, in, c.kh, c.kw};
  TensorD x = random_tensor(c.x, 1), w = random_tensor(ws, 2, -0.3, 0.3), b = random_tensor(Shape{c.out}, 3);
  Tensor<float> xf = to_float(x), wf = to_float(w), bf = to_float(b);

  TensorD y_ref;
  Tensor<float> y;
  if (c.transposed) {
    ops::reference::conv_transpose2d_forward(x, w, c.bias ? &b : nullptr, y_ref, c.g);
    ops::conv_transpose2d_forward(ctx, xf, wf, c.bias ? &bf : nullptr, y, c.g);
  } else {
    ops::reference::conv2d_forward(x, w, c.bias ? &b : nullptr, y_ref, c.g);
    ops::conv2d_forward(ctx, xf, wf, c.bias ? &bf : nullptr, y, c.g);
  }
  REQUIRE(y.shape() == y_ref.shape());
  CHECK(max_rel_error(y, y_ref) < 1e-5);

  TensorD dy = random_tensor(y_ref.shape(), 4);
  Tensor<float> dyf = to_float(dy);
  TensorD dx_ref(c.x);
  Tensor<float> dx(c.x);
  dx.fill(123.0f);  // overwritten, not added to
  if (c.transposed) {
    ops::reference::conv_transpose2d_backward_data(dy, w, dx_ref, c.g);
    ops::conv_transpose2d_backward_data(ctx, dyf, wf, dx, c.g);
  } else {
    ops::reference::conv2d_backward_data(dy, w, dx_ref, c.g);
    ops::conv2d_backward_data(ctx, dyf, wf, dx, c.g);
  }
  CHECK(max_rel_error(dx, dx_ref) < 1e-5);

  // Overwrite mode, then accumulate mode on top of known values.
  TensorD dw_ref(ws), db_ref(Shape{c.out});
  auto ref_weights = [&](TensorD& dw_, TensorD* db_, bool acc) {
    if (c.transposed)
      ops::reference::conv_transpose2d_backward_weights(x, dy, dw_, db_, c.g, acc);
    else
      ops::reference::conv2d_backward_weights(x, dy, dw_, db_, c.g, acc);
  };
  auto fast_weights = [&](Tensor<float>& dw_, Tensor<float>* db_, bool acc) {
    if (c.transposed)
      ops::conv_transpose2d_backward_weights(ctx, xf, dyf, dw_, db_, c.g, acc);
    else
      ops::conv2d_backward_weights(ctx, xf, dyf, dw_, db_, c.g, acc);
  };
  ref_weights(dw_ref, c.bias ? &db_ref : nullptr, false);
  Tensor<float> dw(ws), db(Shape{c.out});
  dw.fill(-7.0f);
  db.fill(-7.0f);
  fast_weights(dw, c.bias ? &db : nullptr, false);
  CHECK(max_rel_error(dw, dw_ref) < 1e-5);
  if (c.bias) CHECK(max_rel_error(db, db_ref) < 1e-5);

  TensorD dw0 = random_tensor(ws, 5, -10, 10), db0 = random_tensor(Shape{c.out}, 6, -10, 10);
  TensorD dw_acc = dw0.clone(), db_acc = db0.clone();
  ref_weights(dw_acc, c.bias ? &db_acc : nullptr, true);
  Tensor<float> dwf = to_float(dw0), dbf = to_float(db0);
  fast_weights(dwf, c.bias ? &dbf : nullptr, true);
  CHECK(max_rel_error(dwf, dw_acc) < 1e-5);
  if (c.bias) CHECK(max_rel_error(dbf, db_acc) < 1e-5);
  // The accumulated result really contains the old values (not just the new gradient).
  CHECK(max_rel_error(dwf, dw_ref) > 1e-2);

  // The fused backward (dy reordered once for both ops) gives the same dx and accumulated dw, db.
  Tensor<float> dx2(c.x), dw2 = to_float(dw0), db2 = to_float(db0);
  dx2.fill(55.0f);
  if (c.transposed)
    ops::conv_transpose2d_backward(ctx, xf, wf, dyf, dx2, dw2, c.bias ? &db2 : nullptr, c.g, true);
  else
    ops::conv2d_backward(ctx, xf, wf, dyf, dx2, dw2, c.bias ? &db2 : nullptr, c.g, true);
  CHECK(max_rel_error(dx2, dx_ref) < 1e-5);
  CHECK(max_rel_error(dw2, dw_acc) < 1e-5);
  if (c.bias) CHECK(max_rel_error(db2, db_acc) < 1e-5);

  // A second call reuses the cached primitive and the workspace and gives the same forward.
  Tensor<float> y2;
  if (c.transposed)
    ops::conv_transpose2d_forward(ctx, xf, wf, c.bias ? &bf : nullptr, y2, c.g);
  else
    ops::conv2d_forward(ctx, xf, wf, c.bias ? &bf : nullptr, y2, c.g);
  CHECK(max_rel_error(y2, y) == 0.0);
}

}  // namespace

namespace {
// Every geometry the fast path must get right.
const std::vector<OpCase>& reference_cases() {
  static const std::vector<OpCase> cases = {
      {"3x3 pad 1, 32->48", false, nchw(2, 32, 9, 10), 48, 3, 3, ops::ConvGeometry::symmetric(1, 1), true},
      {"3x3 pad 1, 3->5 (unblocked channels)", false, nchw(3, 3, 7, 6), 5, 3, 3, ops::ConvGeometry::symmetric(1, 1),
       true},
      {"4x4 stride 2, 1->16 (first layer)", false, nchw(2, 1, 12, 10), 16, 4, 4, ops::ConvGeometry::symmetric(2, 1),
       true},
      {"4x4 stride 2, 16->32", false, nchw(2, 16, 8, 8), 32, 4, 4, ops::ConvGeometry::symmetric(2, 1), false},
      {"1x1, 48->16", false, nchw(2, 48, 5, 7), 16, 1, 1, ops::ConvGeometry::symmetric(1, 0), true},
      {"5x5 causal padding, 32->32", false, nchw(2, 32, 8, 8), 32, 5, 5, geom(1, 4, 0, 2, 2), true},
      {"odd stride-2 geometry", false, nchw(1, 17, 9, 7), 19, 3, 3, geom(2, 0, 1, 1, 0), true},
      {"transposed 4x4 stride 2, 32->16", true, nchw(2, 32, 6, 5), 16, 4, 4, ops::ConvGeometry::symmetric(2, 1), true},
      {"transposed 4x4 stride 2, 16->1", true, nchw(2, 16, 7, 8), 1, 4, 4, ops::ConvGeometry::symmetric(2, 1), true},
      {"transposed 3x3 stride 1, 5->7", true, nchw(2, 5, 6, 6), 7, 3, 3, ops::ConvGeometry::symmetric(1, 1), false},
      {"transposed asymmetric padding", true, nchw(1, 16, 5, 6), 16, 3, 3, geom(2, 1, 0, 0, 2), true},
  };
  return cases;
}
}  // namespace

TEST_CASE("oneDNN float convolutions agree with the reference loops") {
  for (const auto& c : reference_cases()) {
    SUBCASE(c.name) { compare_with_reference(c); }
  }
}

TEST_CASE("oneDNN float path: channels-last activations agree with the reference loops") {
  // The layout study's NHWC variant (brgemm kernels) must compute the same thing on every geometry.
  ops::onednn::clear_cache();
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::channels_last;
  for (const auto& c : reference_cases()) {
    SUBCASE(c.name) { compare_with_reference(c); }
  }
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::automatic;
  ops::onednn::clear_cache();
}

TEST_CASE("oneDNN float path: plain and blocked layouts agree") {
  // The plain-layout variant exists for measurements; it must compute the same thing.
  Context<Cpu> ctx;
  Tensor<float> x = to_float(random_tensor(nchw(2, 32, 8, 8), 7)), w = to_float(random_tensor(Shape{32, 32, 3, 3}, 8));
  Tensor<float> y_blocked, y_plain;
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::blocked;
  ops::conv2d_forward(ctx, x, w, nullptr, y_blocked, ops::ConvGeometry::symmetric(1, 1));
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::plain;
  ops::conv2d_forward(ctx, x, w, nullptr, y_plain, ops::ConvGeometry::symmetric(1, 1));
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::automatic;
  CHECK(max_rel_error(y_plain, y_blocked) < 1e-5);
}

TEST_CASE("oneDNN float path: the plain-layout fallback and the shifted-rows backward run where intended") {
  using ops::onednn::path_counts;
  auto fresh = [] {
    ops::onednn::clear_cache();  // plans are cached: build them again
    path_counts() = {};
  };
  // A 1-channel image blocked by 8 or 16 channels would be padded 8-16x: plain NCHW instead.
  fresh();
  compare_with_reference(
      {"4x4 stride 2, 1->16", false, nchw(2, 1, 12, 10), 16, 4, 4, ops::ConvGeometry::symmetric(2, 1), true});
  CHECK(path_counts().plain_fallback_plans > 0);
  CHECK(path_counts().shifted_rows_runs == 0);
  // 32 and 48 channels block without padding, and pad_top 1 <= (3 - 1) / 2 needs no shift.
  fresh();
  compare_with_reference(
      {"3x3 pad 1, 32->48", false, nchw(2, 32, 9, 10), 48, 3, 3, ops::ConvGeometry::symmetric(1, 1), true});
  CHECK(path_counts().plain_fallback_plans == 0);
  CHECK(path_counts().shifted_rows_runs == 0);
  // A 5x5 causal conv (pad_top 4 > 2): its backward-weights shifts the input where oneDNN
  // has the AVX-512 kernel (which rejects that padding); on other CPUs the kernel accepts
  // it and nothing is shifted.
  fresh();
  compare_with_reference({"5x5 causal, 32->32", false, nchw(2, 32, 8, 8), 32, 5, 5, geom(1, 4, 0, 2, 2), true});
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  const bool has_avx512 = (isa & avx512) == avx512;
  char isa_hex[16];
  std::snprintf(isa_hex, sizeof isa_hex, "0x%x", isa);
  MESSAGE("oneDNN ISA " << isa_hex << ": shifted-rows runs " << path_counts().shifted_rows_runs);
  CHECK((path_counts().shifted_rows_runs > 0) == has_avx512);
  CHECK(path_counts().plain_fallback_plans == 0);
  path_counts() = {};
}

namespace {

template <class T, class Layer>
void check_golden_case(const test::Golden& gold, const std::string& name, Layer& layer, double atol, double rtol) {
  Context<Cpu> ctx;
  INFO(name);
  layer.weight().value.copy_from(gold.get_as<T>(name + ".w"));
  layer.bias().value.copy_from(gold.get_as<T>(name + ".b"));
  Tensor<T> x = gold.get_as<T>(name + ".x");
  const Tensor<T>& y = layer.forward(ctx, x);
  REQUIRE(y.shape() == gold.get(name + ".y").shape());
  test::check_close(y, gold.get(name + ".y"), atol, rtol, name + ".y");
  // Gradients accumulate onto existing values: start from zero like PyTorch's .grad.
  zero_grad(layer);
  const Tensor<T>& dx = layer.backward(ctx, gold.get_as<T>(name + ".dy"));
  test::check_close(dx, gold.get(name + ".dx"), atol, rtol, name + ".dx");
  test::check_close(layer.weight().grad, gold.get(name + ".dw"), atol, rtol, name + ".dw");
  test::check_close(layer.bias().grad, gold.get(name + ".db"), atol, rtol, name + ".db");
}

}  // namespace

TEST_CASE("Conv2d and ConvTranspose2d match PyTorch (goldens, float and double)") {
  test::Golden gold("conv.bin");
  // Sums of <= 100 products of O(1) values: float rounds them to ~1e-6 absolute (where a
  // sum cancels), double to ~1e-14; rtol as before covers the rest.
  const double kFloatAtol = 1e-6, kDoubleAtol = 1e-13;
  struct ConvCase {
    const char* name;
    int in, out, kh, kw;
    ops::ConvGeometry g;
  };
  const ConvCase convs[] = {
      {"c3x3", 3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1)},
      {"c4x4s2", 3, 5, 4, 4, ops::ConvGeometry::symmetric(2, 1)},
      {"c1x1", 6, 3, 1, 1, ops::ConvGeometry::symmetric(1, 0)},
      {"causal", 3, 4, 3, 5, geom(1, 2, 0, 2, 2)},
  };
  for (const auto& c : convs) {
    nn::Conv2d<float> f(c.in, c.out, c.kh, c.kw, c.g);
    check_golden_case<float>(gold, c.name, f, kFloatAtol, 1e-4);
    nn::Conv2d<double> d(c.in, c.out, c.kh, c.kw, c.g);
    check_golden_case<double>(gold, c.name, d, kDoubleAtol, 1e-10);
  }
  const ConvCase tconvs[] = {
      {"t4x4s2", 3, 4, 4, 4, ops::ConvGeometry::symmetric(2, 1)},
      {"t3x3s1", 4, 3, 3, 3, ops::ConvGeometry::symmetric(1, 0)},
      {"t3x3s2", 2, 3, 3, 3, ops::ConvGeometry::symmetric(2, 1)},
  };
  for (const auto& c : tconvs) {
    nn::ConvTranspose2d<float> f(c.in, c.out, c.kh, c.kw, c.g);
    check_golden_case<float>(gold, c.name, f, kFloatAtol, 1e-4);
    nn::ConvTranspose2d<double> d(c.in, c.out, c.kh, c.kw, c.g);
    check_golden_case<double>(gold, c.name, d, kDoubleAtol, 1e-10);
  }
}

TEST_CASE("Convolutions reject bad input with a message naming the shapes") {
  Context<Cpu> ctx;
  nn::Conv2d<float> conv(3, 4, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  Tensor<float> x5 = Tensor<float>::zeros(nchw(2, 5, 6, 6));
  CHECK_THROWS_WITH_AS(conv.forward(ctx, x5), doctest::Contains("[2, 5, 6, 6]"), Error);
  CHECK_THROWS_WITH_AS(conv.forward(ctx, x5), doctest::Contains("[4, 3, 3, 3]"), Error);

  Tensor<float> w = Tensor<float>::zeros(Shape{4, 3, 3, 3}), y;
  CHECK_THROWS_WITH_AS(ops::conv2d_forward(ctx, x5, w, nullptr, y, ops::ConvGeometry::symmetric(1, 1)),
                       doctest::Contains("[4, 3, 3, 3]"), Error);
  Tensor<double> xd = Tensor<double>::zeros(nchw(1, 2, 4, 4)), wd = Tensor<double>::zeros(Shape{4, 3, 3, 3}), yd;
  CHECK_THROWS_AS(ops::conv2d_forward(ctx, xd, wd, nullptr, yd, ops::ConvGeometry{}), Error);

  // A wrong output gradient is named together with the shape the forward produced.
  Tensor<float> x = Tensor<float>::zeros(nchw(2, 3, 6, 6));
  conv.forward(ctx, x);
  CHECK_THROWS_WITH_AS(conv.backward(ctx, Tensor<float>::zeros(nchw(2, 4, 5, 6))), doctest::Contains("[2, 4, 5, 6]"),
                       Error);

  nn::ConvTranspose2d<float> tconv(3, 2, 4, 4, ops::ConvGeometry::symmetric(2, 1));
  CHECK_THROWS_WITH_AS(tconv.forward(ctx, x5), doctest::Contains("[2, 5, 6, 6]"), Error);
  Tensor<float> bias_wrong = Tensor<float>::zeros(Shape{7});
  CHECK_THROWS_WITH_AS(ops::conv2d_forward(ctx, x, w, &bias_wrong, y, ops::ConvGeometry::symmetric(1, 1)),
                       doctest::Contains("[7]"), Error);
}

TEST_CASE("Conv2d: PyTorch default init bounds, parameter names, and buffers reused across steps") {
  nn::Conv2d<float> conv(16, 8, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  Generator g(3);
  conv.init(g);
  const float bound = 1.0f / std::sqrt(16.0f * 9.0f);
  float wmax = 0, bmax = 0;
  for (float v : conv.weight().value) wmax = std::max(wmax, std::abs(v));
  for (float v : conv.bias().value) bmax = std::max(bmax, std::abs(v));
  CHECK(wmax <= bound);
  CHECK(wmax > 0.95f * bound);  // 1152 uniform draws reach close to the bound
  CHECK(bmax <= bound);
  CHECK(bmax > 0.2f * bound);

  nn::ConvTranspose2d<float> tconv(16, 4, 4, 4, ops::ConvGeometry::symmetric(2, 1));
  tconv.init(g);
  const float tbound = 1.0f / std::sqrt(4.0f * 16.0f);  // PyTorch's fan_in uses weight dim 1 (out channels)
  float tmax = 0;
  for (float v : tconv.weight().value) tmax = std::max(tmax, std::abs(v));
  CHECK(tmax <= tbound);
  CHECK(tmax > 0.95f * tbound);

  std::vector<std::string> names;
  conv.visit([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"weight", "bias"});
  nn::Conv2d<float> nobias(2, 2, 1, 1, ops::ConvGeometry{}, false);
  CHECK(parameter_count(nobias) == 4);

  // An upstream buffer resized every step keeps its storage once backward released the alias.
  Context<Cpu> ctx;
  Tensor<float> upstream(nchw(2, 16, 8, 8));
  const float* up0 = upstream.data();
  const float *y0 = nullptr, *dx0 = nullptr;
  for (int step = 0; step < 3; ++step) {
    upstream.resize(nchw(2, 16, 8, 8));
    upstream.fill(0.5f);
    const Tensor<float>& y = conv.forward(ctx, upstream);
    const Tensor<float>& dx = conv.backward(ctx, y);
    if (step == 0) y0 = y.data(), dx0 = dx.data();
    CHECK(y.data() == y0);
    CHECK(dx.data() == dx0);
    CHECK(upstream.data() == up0);
  }
}

TEST_CASE_TEMPLATE("An empty batch (N = 0) clears the weight gradients, or leaves them when accumulating", T, float,
                   double) {
  // float takes the oneDNN entry points (which skip the primitive and clear by hand),
  // double the reference loops; both lone backward-weights and the fused backward.
  Context<Cpu> ctx;
  const ops::ConvGeometry g = ops::ConvGeometry::symmetric(2, 1);
  for (bool transposed : {false, true})
    for (bool fused : {false, true})
      for (bool accumulate : {false, true}) {
        CAPTURE(transposed);
        CAPTURE(fused);
        CAPTURE(accumulate);
        const Tensor<T> x = Tensor<T>::zeros(nchw(0, 3, 6, 6));
        const Tensor<T> w = Tensor<T>::zeros(transposed ? Shape{3, 4, 4, 4} : Shape{4, 3, 4, 4});
        const Tensor<T> dy = Tensor<T>::zeros(transposed ? nchw(0, 4, 12, 12) : nchw(0, 4, 3, 3));
        Tensor<T> dx = Tensor<T>::zeros(x.shape()), dw(w.shape()), db(Shape{4});
        for (auto& v : dw) v = T(0.5);
        for (auto& v : db) v = T(0.25);
        if (transposed && fused)
          ops::conv_transpose2d_backward(ctx, x, w, dy, dx, dw, &db, g, accumulate);
        else if (transposed)
          ops::conv_transpose2d_backward_weights(ctx, x, dy, dw, &db, g, accumulate);
        else if (fused)
          ops::conv2d_backward(ctx, x, w, dy, dx, dw, &db, g, accumulate);
        else
          ops::conv2d_backward_weights(ctx, x, dy, dw, &db, g, accumulate);
        for (auto v : dw) REQUIRE(v == (accumulate ? T(0.5) : T(0)));
        for (auto v : db) REQUIRE(v == (accumulate ? T(0.25) : T(0)));
      }
}
