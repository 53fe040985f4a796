// Softmax cross-entropy over channels and the MSE loss: PyTorch goldens,
// double-precision gradient checks, an independent scalar reference on a
// large (parallel) case, and bad-input errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/loss.hpp"

using namespace vqvae2;
using test::TensorD;
using TensorF = Tensor<float, Cpu>;
using TensorI = Tensor<std::int32_t, Cpu>;

namespace {

TensorI targets_from(const TensorD& d) {
  TensorI t(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) t[i] = static_cast<std::int32_t>(d[i]);
  return t;
}

TensorI random_targets(const Shape& s, std::int32_t k, std::uint64_t seed) {
  TensorD u = test::random_tensor(s, seed, 0.0, 1.0);
  TensorI t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = std::min(k - 1, static_cast<std::int32_t>(u[i] * k));
  return t;
}

}  // namespace

TEST_CASE("SoftmaxCrossEntropy matches torch.nn.functional.cross_entropy (loss, dlogits, accuracy)") {
  Context<Cpu> ctx;
  test::Golden gold("loss.bin");
  for (const char* prefix : {"ce_small.", "ce_512."}) {
    CAPTURE(prefix);
    auto name = [&](const char* s) { return std::string(prefix) + s; };
    TensorF logits = gold.get_as<float>(name("logits"));
    TensorI targets = targets_from(gold.get(name("targets")));
    nn::SoftmaxCrossEntropy<float> ce;
    double loss = ce.forward(ctx, logits, targets);
    CHECK(std::abs(loss - gold.get(name("loss"))[0]) <= 1e-4 * std::abs(gold.get(name("loss"))[0]));
    CHECK(ce.accuracy() == doctest::Approx(gold.get(name("accuracy"))[0]).epsilon(1e-12));
    // float softmax against a double golden: each entry p/numel is good to ~1e-6 relative,
    // so 1e-4 relative holds per entry; atol only for entries that underflow (p ~ e^-100).
    test::check_close(ce.backward(ctx), gold.get(name("dlogits")), 1e-12, 1e-4, name("dlogits"));
  }
}

TEST_CASE("softmax_channels with a temperature matches torch.softmax(x / T, dim=1)") {
  test::Golden gold("loss.bin");
  TensorF x = gold.get_as<float>("softmax.x");
  TensorF y(x.shape());
  ops::softmax_channels(x, y, static_cast<float>(gold.get("softmax.temperature")[0]));
  // float exp of O(1) arguments: ~1e-6 relative per entry; atol for underflowed entries only.
  test::check_close(y, gold.get("softmax.y"), 1e-12, 1e-4, "softmax.y");
  ops::softmax_channels(x, x, 1.0f);  // in place
  for (std::int64_t p = 0; p < 15; ++p) {
    double s = 0;
    for (std::int64_t k = 0; k < 7; ++k) s += x[k * 15 + p];
    CHECK(s == doctest::Approx(1.0).epsilon(1e-6));
  }
  CHECK_THROWS_WITH_AS(ops::softmax_channels(x, y, 0.0f), doctest::Contains("positive temperature"), Error);
}

TEST_CASE("SoftmaxCrossEntropy: gradient check in double, scaled backward") {
  Context<Cpu> ctx;
  TensorD logits = test::random_tensor(nchw(2, 5, 3, 4), 7, -3.0, 3.0);
  TensorI targets = random_targets(Shape{2, 3, 4}, 5, 8);
  nn::SoftmaxCrossEntropy<double> ce;
  TensorD out(Shape{1});
  const TensorD* grad = nullptr;
  test::check_gradients(
      [&] {
        out[0] = ce.forward(ctx, logits, targets);
        return out;
      },
      [&](const TensorD& dy) { grad = &ce.backward(ctx, dy[0]); },
      [&] {
        return std::vector<test::GradTarget>{{"logits", logits, *grad}};
      });
}

TEST_CASE("SoftmaxCrossEntropy on a large float batch agrees with a scalar double reference") {
  Context<Cpu> ctx;
  const std::int64_t n = 3, k = 512, h = 11, w = 13;  // plane 143: one full tile of 128 and a partial one
  TensorD ld = test::random_tensor(nchw(n, k, h, w), 17, -10.0, 10.0);
  TensorF logits(ld.shape());
  for (std::int64_t i = 0; i < ld.numel(); ++i) logits[i] = static_cast<float>(ld[i]);
  TensorI targets = random_targets(Shape{n, h, w}, static_cast<std::int32_t>(k), 18);
  // Make some targets the arg-max so that the accuracy is not trivially 0.
  for (std::int64_t p = 0; p < 40; ++p) logits.at(1, targets[h * w + p], p / w, p % w) = 50.0f;

  nn::SoftmaxCrossEntropy<float> ce;
  const double loss = ce.forward(ctx, logits, targets);
  const TensorF& grad = ce.backward(ctx, 2.0f);

  double ref_loss = 0;
  std::int64_t hits = 0;
  const double m_count = static_cast<double>(n * h * w);
  double max_grad_err = 0;
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t i = 0; i < h; ++i)
      for (std::int64_t j = 0; j < w; ++j) {
        double mx = -1e300;
        std::int64_t arg = 0;
        for (std::int64_t c = 0; c < k; ++c)
          if (logits.at(b, c, i, j) > mx) mx = logits.at(b, c, i, j), arg = c;
        double s = 0;
        for (std::int64_t c = 0; c < k; ++c) s += std::exp(logits.at(b, c, i, j) - mx);
        const std::int32_t t = targets[(b * h + i) * w + j];
        ref_loss += mx + std::log(s) - logits.at(b, t, i, j);
        hits += arg == t;
        for (std::int64_t c = 0; c < k; ++c) {
          double g = 2.0 / m_count * (std::exp(logits.at(b, c, i, j) - mx) / s - (c == t ? 1.0 : 0.0));
          max_grad_err = std::max(max_grad_err, std::abs(grad.at(b, c, i, j) - g));
        }
      }
  ref_loss /= m_count;
  CHECK(loss == doctest::Approx(ref_loss).epsilon(1e-5));
  CHECK(ce.accuracy() == doctest::Approx(static_cast<double>(hits) / m_count));
  CHECK(hits >= 40);
  // Gradient entries are at most 2 / m_count in size; 1e-4 of that.
  CHECK(max_grad_err < 1e-4 * 2.0 / m_count);
}

TEST_CASE("SoftmaxCrossEntropy rejects bad shapes and out-of-range targets with one sentence") {
  Context<Cpu> ctx;
  nn::SoftmaxCrossEntropy<float> ce;
  TensorF logits(nchw(2, 4, 3, 3));
  logits.fill(0.0f);
  TensorI targets(Shape{2, 3, 3});
  targets.fill(1);
  CHECK(ce.forward(ctx, logits, targets) == doctest::Approx(std::log(4.0)));
  CHECK_THROWS_WITH_AS(ce.forward(ctx, logits, TensorI(Shape{2, 3, 4})),
                       doctest::Contains("do not fit (expected [N, K, H, W] and [N, H, W])"), Error);
  targets[5] = 4;
  CHECK_THROWS_WITH_AS(ce.forward(ctx, logits, targets), doctest::Contains("target 4 at position 5 is outside [0, 4)"),
                       Error);
  targets[5] = -1;
  CHECK_THROWS_AS(ce.forward(ctx, logits, targets), Error);
  nn::SoftmaxCrossEntropy<float> fresh;
  CHECK_THROWS_WITH_AS(fresh.backward(ctx), doctest::Contains("before forward"), Error);
}

TEST_CASE("MSELoss matches torch.nn.functional.mse_loss and passes the gradient check") {
  Context<Cpu> ctx;
  test::Golden gold("loss.bin");
  {
    nn::MSELoss<float> mse;
    TensorF pred = gold.get_as<float>("mse.pred"), target = gold.get_as<float>("mse.target");
    double loss = mse.forward(ctx, pred, target);
    CHECK(std::abs(loss - gold.get("mse.loss")[0]) <= 1e-4 * gold.get("mse.loss")[0]);
    // 2 (pred - target) / numel in float: ~1e-7 relative except where pred ~ target cancels
    // (absolute error ~ eps_float |pred| / numel ~ 1e-9).
    test::check_close(mse.backward(ctx), gold.get("mse.dpred"), 1e-8, 1e-4, "mse.dpred");
  }
  nn::MSELoss<double> mse;
  TensorD pred = test::random_tensor(nchw(2, 1, 4, 5), 3), target = test::random_tensor(nchw(2, 1, 4, 5), 4);
  TensorD out(Shape{1});
  const TensorD* grad = nullptr;
  test::check_gradients(
      [&] {
        out[0] = mse.forward(ctx, pred, target);
        return out;
      },
      [&](const TensorD& dy) { grad = &mse.backward(ctx, dy[0]); },
      [&] {
        return std::vector<test::GradTarget>{{"pred", pred, *grad}};
      });
  CHECK_THROWS_WITH_AS(mse.forward(ctx, pred, TensorD(nchw(2, 1, 5, 4))), doctest::Contains("differ in shape"), Error);
  nn::MSELoss<double> fresh;
  CHECK_THROWS_WITH_AS(fresh.backward(ctx), doctest::Contains("before forward"), Error);
}
