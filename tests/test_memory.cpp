// The memory savers of docs/layers.md (Memory): in-place activations, shared
// input-gradient buffers, the residual block's in-place sums and the models'
// shared gradient buffers give the same numbers as the plain layers, reuse
// their storage, and reject the aliasing they cannot handle.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "support/gradcheck.hpp"
#include "vqvae2/models/vqvae2.hpp"
#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/conv2d.hpp"
#include "vqvae2/nn/res_block.hpp"

using namespace vqvae2;
using vqvae2::test::check_gradients;
using vqvae2::test::GradTarget;
using vqvae2::test::random_tensor;
using vqvae2::test::TensorD;

namespace {

Tensor<float> random_float(const Shape& s, std::uint64_t seed) {
  Tensor<float> t(s);
  Generator g(seed);
  g.uniform(t, -1.0f, 1.0f);
  return t;
}

// Largest |a - b| / max(1, |b|) (the float paths below compute the same sums in the same order).
template <class T>
double max_diff(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
  return m;
}

template <class Act>
void check_inplace_activation() {
  Context<Cpu> ctx;
  const Shape s = nchw(2, 3, 5, 7);
  Tensor<float> x = random_float(s, 1), dy = random_float(s, 2);
  nn::Activation<Act, float> plain, inplace;
  const Tensor<float> y = plain.forward(ctx, x).clone();
  Tensor<float> xi = x.clone();
  Tensor<float>& yi = inplace.forward_inplace(ctx, xi);
  CHECK(&yi == &xi);
  CHECK(max_diff(xi, y) == 0.0);
  const Tensor<float> dx = plain.backward(ctx, dy).clone();
  Tensor<float> dyi = dy.clone();
  Tensor<float>& dxi = inplace.backward_inplace(ctx, dyi);
  CHECK(&dxi == &dyi);
  CHECK(max_diff(dyi, dx) == 0.0);
  // The next ordinary forward writes a tensor of its own, not the borrowed one.
  const Tensor<float> before = xi.clone();
  Tensor<float> other = random_float(s, 3);
  const auto& y2 = inplace.forward(ctx, other);
  CHECK(y2.data() != xi.data());
  CHECK(max_diff(xi, before) == 0.0);
}

}  // namespace

TEST_CASE("In-place ReLU and ELU give the out-of-place results and gradients") {
  check_inplace_activation<ops::Relu>();
  check_inplace_activation<ops::Elu>();
}

TEST_CASE("Activation and Conv2d write their input gradient into a shared buffer") {
  Context<Cpu> ctx;
  auto buffer = std::make_shared<Tensor<float>>();
  nn::ReLU<float> own, shared;
  shared.set_input_grad_buffer(buffer);
  Tensor<float> x = random_float(nchw(2, 4, 6, 6), 4), dy = random_float(nchw(2, 4, 6, 6), 5);
  own.forward(ctx, x);
  shared.forward(ctx, x);
  const auto& d_own = own.backward(ctx, dy);
  const auto& d_shared = shared.backward(ctx, dy);
  CHECK(&d_shared == buffer.get());
  CHECK(max_diff(d_shared, d_own) == 0.0);
  CHECK_THROWS_AS(shared.backward(ctx, *buffer), Error);

  nn::Conv2d<float> c_own(4, 6, 3, 3, ops::ConvGeometry::symmetric(1, 1)),
      c_shared(4, 6, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  Generator g(6);
  c_own.init(g);
  c_shared.weight().value.copy_from(c_own.weight().value);
  c_shared.bias().value.copy_from(c_own.bias().value);
  c_shared.set_input_grad_buffer(buffer);
  Tensor<float> gy = random_float(nchw(2, 6, 6, 6), 7);
  c_own.forward(ctx, x);
  c_shared.forward(ctx, x);
  const auto& dx_own = c_own.backward(ctx, gy);
  const auto& dx_shared = c_shared.backward(ctx, gy);
  CHECK(&dx_shared == buffer.get());
  CHECK(&c_shared.input_grad() == buffer.get());
  CHECK(max_diff(dx_shared, dx_own) == 0.0);
  CHECK(max_diff(c_shared.weight().grad, c_own.weight().grad) == 0.0);
  // The buffer cannot be both the output gradient and the input gradient.
  Tensor<float> x6 = random_float(nchw(2, 6, 6, 6), 8);
  nn::Conv2d<float> square(6, 6, 3, 3, ops::ConvGeometry::symmetric(1, 1));
  square.init(g);
  square.set_input_grad_buffer(buffer);
  square.forward(ctx, x6);
  buffer->resize(nchw(2, 6, 6, 6));
  CHECK_THROWS_AS(square.backward(ctx, *buffer), Error);
}

TEST_CASE("ResBlock equals relu -> conv3x3 -> relu -> conv1x1 plus skip, over two steps, own or shared buffers") {
  Context<Cpu> ctx(2);
  const int c = 16, rc = 8;
  const Shape s = nchw(2, c, 12, 10);
  nn::ResBlock<float> block(c, rc), shared_block(c, rc);
  Generator g(9);
  block.init(g);
  nn::ReLU<float> r1, r2;
  nn::Conv2d<float> c1(c, rc, 3, 3, ops::ConvGeometry::symmetric(1, 1)),
      c2(rc, c, 1, 1, ops::ConvGeometry::symmetric(1, 0));
  std::vector<Parameter<float>*> ref{&c1.weight(), &c1.bias(), &c2.weight(), &c2.bias()}, blk, shb;
  block.visit([&](std::string_view, Parameter<float>& p) { blk.push_back(&p); });
  shared_block.visit([&](std::string_view, Parameter<float>& p) { shb.push_back(&p); });
  REQUIRE(blk.size() == 4);
  for (int i = 0; i < 4; ++i) {
    ref[i]->value.copy_from(blk[i]->value);
    shb[i]->value.copy_from(blk[i]->value);
  }
  auto out_buf = std::make_shared<Tensor<float>>(), narrow = std::make_shared<Tensor<float>>();
  shared_block.set_grad_buffers(out_buf, narrow);
  auto branch = std::make_shared<Tensor<float>>();
  shared_block.set_branch_buffer(branch);

  const float* y_ptr = nullptr;
  const float* dx_ptr = nullptr;
  for (int step = 0; step < 2; ++step) {
    CAPTURE(step);
    Tensor<float> x = random_float(s, 10 + step), dy = random_float(s, 20 + step);
    Tensor<float> y_ref(s);
    ops::add(c2.forward(ctx, r2.forward(ctx, c1.forward(ctx, r1.forward(ctx, x)))), x, y_ref);
    const auto& y = block.forward(ctx, x);
    Tensor<float> stream = x.clone();
    Tensor<float>& ys = shared_block.forward_inplace(ctx, stream);
    CHECK(&ys == &stream);
    CHECK(&shared_block.mutable_output() == branch.get());
    CHECK(max_diff(y, y_ref) <= 1e-6);
    CHECK(max_diff(ys, y_ref) <= 1e-6);

    Tensor<float> dx_ref(s);
    ops::add(r1.backward(ctx, c1.backward(ctx, r2.backward(ctx, c2.backward(ctx, dy)))), dy, dx_ref);
    const auto& dx = block.backward(ctx, dy);
    const auto& dxs = shared_block.backward(ctx, dy);
    CHECK(&dxs == out_buf.get());
    CHECK(max_diff(dx, dx_ref) <= 1e-6);
    CHECK(max_diff(dxs, dx_ref) <= 1e-6);
    for (int i = 0; i < 4; ++i) {
      CHECK(max_diff(blk[i]->grad, ref[i]->grad) <= 1e-5);
      CHECK(max_diff(shb[i]->grad, ref[i]->grad) <= 1e-5);
    }
    // The second step reuses the storage of the first.
    if (step == 0) {
      y_ptr = y.data();
      dx_ptr = dx.data();
    } else {
      CHECK(y.data() == y_ptr);
      CHECK(dx.data() == dx_ptr);
    }
  }
  Tensor<float> x = random_float(s, 30);
  const auto& y = block.forward(ctx, x);
  CHECK_THROWS_AS(block.forward(ctx, y), Error);  // its own output is what it overwrites
  CHECK_THROWS_AS(shared_block.forward_inplace(ctx, *branch), Error);
  auto shared_dy = std::make_shared<Tensor<float>>(s);
  shared_block.set_grad_buffers(shared_dy, narrow);
  shared_block.forward(ctx, x);
  CHECK_THROWS_AS(shared_block.backward(ctx, *shared_dy), Error);
}

TEST_CASE("ResBlock gradients match finite differences (double)") {
  Context<Cpu> ctx;
  nn::ResBlock<double> block(6, 3);
  Generator g(12);
  block.init(g);
  TensorD x = random_tensor(nchw(2, 6, 5, 5), 13);
  TensorD x_grad;
  check_gradients(
      [&] { return block.forward(ctx, x); },
      [&](const TensorD& dy) {
        zero_grad(block);
        const auto& dx = block.backward(ctx, dy);
        x_grad = dx;
      },
      [&] {
        std::vector<GradTarget> t{{"x", x, x_grad}};
        block.visit([&](std::string_view n, Parameter<double>& p) { t.push_back({std::string(n), p.value, p.grad}); });
        return t;
      });
}

namespace {

// Finite-difference check of an encoder or decoder (double) through its input and every parameter.
template <class Module>
void gradcheck_module(Module& m, const Shape& xs, std::uint64_t seed) {
  Context<Cpu> ctx;
  Generator g(seed);
  m.init(g);
  TensorD x = random_tensor(xs, seed + 1);
  TensorD x_grad;
  test::GradCheckOptions opt;
  opt.max_elements = 12;
  check_gradients(
      [&] { return m.forward(ctx, x); },
      [&](const TensorD& dy) {
        zero_grad(m);
        x_grad = m.backward(ctx, dy);
      },
      [&] {
        std::vector<GradTarget> t{{"x", x, x_grad}};
        m.visit([&](std::string_view n, Parameter<double>& p) { t.push_back({std::string(n), p.value, p.grad}); });
        return t;
      },
      opt);
}

}  // namespace

TEST_CASE("Encoder and Decoder sharing one set of gradient buffers match finite differences (double)") {
  auto buffers = models::GradBuffers<double, Cpu>::make();
  models::Encoder<double, Cpu> enc4(1, 8, 2, 4, 4), enc2(8, 8, 1, 4, 2);
  models::Decoder<double, Cpu> dec4(4, 1, 8, 2, 4, 4), dec2(4, 4, 8, 1, 4, 2);
  enc4.set_needs_input_grad(true);
  enc4.set_grad_buffers(buffers);
  enc2.set_grad_buffers(buffers);
  dec4.set_grad_buffers(buffers);
  dec2.set_grad_buffers(buffers);
  SUBCASE("encoder, stride 4") { gradcheck_module(enc4, nchw(2, 1, 16, 16), 40); }
  SUBCASE("encoder, stride 2") { gradcheck_module(enc2, nchw(2, 8, 8, 8), 50); }
  SUBCASE("decoder, stride 4") { gradcheck_module(dec4, nchw(2, 4, 4, 4), 60); }
  SUBCASE("decoder, stride 2") { gradcheck_module(dec2, nchw(2, 4, 4, 4), 70); }
}

TEST_CASE("VQVAE2 training steps reuse their buffers and repeat exactly") {
  using Model = models::VQVAE2<float, Cpu, models::Tiny>;
  Context<Cpu> ctx(2);
  ctx.training = false;  // fixed code books: two identical steps must give identical numbers
  Model model;
  Generator g(80);
  model.init(g);
  model.set_input_grad(true);
  Tensor<float> x = random_float(nchw(2, 1, 16, 16), 81), drecon = random_float(nchw(2, 1, 16, 16), 82);
  const float* recon_ptr[2];
  const float* dx_ptr[2];
  Tensor<float> recon[2], dx[2];
  for (int step = 0; step < 2; ++step) {
    const auto& r = model.forward(ctx, x);
    recon_ptr[step] = r.data();
    recon[step] = r.clone();
    const auto& d = model.backward(ctx, drecon, 0.25);
    dx_ptr[step] = d.data();
    dx[step] = d.clone();
  }
  CHECK(recon_ptr[1] == recon_ptr[0]);
  CHECK(dx_ptr[1] == dx_ptr[0]);
  CHECK(max_diff(recon[1], recon[0]) == 0.0);
  CHECK(max_diff(dx[1], dx[0]) == 0.0);
  CHECK(dx[0].shape() == x.shape());
}
