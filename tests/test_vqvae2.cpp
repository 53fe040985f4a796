#include <doctest/doctest.h>

#include <set>

#include "support/gradcheck.hpp"
#include "support/model_gradcheck.hpp"
#include "vqvae2/models/vqvae2.hpp"
#include "vqvae2/nn/loss.hpp"

using namespace vqvae2;
using TinyModelD = models::VQVAE2<double, Cpu, models::Tiny>;

namespace {

Tensor<double> tiny_images(std::int64_t n, std::int64_t size, std::uint64_t seed) {
  return test::random_tensor(nchw(n, 1, size, size), seed, -1.0, 1.0);
}

// Every prefix must match a parameter (REQUIREd by parameter_targets): a rename fails here.
std::vector<test::GradTarget> targets_with_prefix(TinyModelD& m, const std::vector<std::string>& prefixes) {
  return test::parameter_targets(m, prefixes);
}

}  // namespace

TEST_CASE("VQVAE2 shapes: reconstruction, code maps and decode_codes") {
  Context<Cpu> ctx(2);
  models::VQVAE2<float, Cpu, models::Tiny> model;
  Generator g(3);
  model.init(g);
  Tensor<float> x(nchw(2, 1, 32, 32));
  g.uniform(x, -1.0f, 1.0f);
  const auto& y = model.forward(ctx, x);
  CHECK(y.shape() == x.shape());
  Tensor<std::int32_t> top, bottom;
  ctx.training = false;
  model.encode(ctx, x, top, bottom);
  CHECK(top.shape() == Shape{2, 4, 4});
  CHECK(bottom.shape() == Shape{2, 8, 8});
  for (auto c : top) CHECK((c >= 0 && c < models::Tiny::num_codes));
  const auto& d = model.decode_codes(ctx, top, bottom);
  CHECK(d.shape() == x.shape());
  // Decoding the codes of x gives exactly the evaluation-mode reconstruction of x.
  Tensor<float> decoded = d.clone();
  const auto& y_eval = model.forward(ctx, x);
  for (std::int64_t i = 0; i < y_eval.numel(); ++i) REQUIRE(decoded[i] == doctest::Approx(y_eval[i]).epsilon(1e-6));
}

TEST_CASE("VQVAE2 rejects inputs of the wrong channel count or size with one sentence") {
  Context<Cpu> ctx(1);
  models::VQVAE2<float, Cpu, models::Tiny> model;
  Generator g(3);
  model.init(g);
  Tensor<float> bad_channels(nchw(1, 3, 32, 32)), bad_size(nchw(1, 1, 30, 32));
  bad_channels.zero();
  bad_size.zero();
  CHECK_THROWS_WITH_AS(model.forward(ctx, bad_channels), doctest::Contains("[1, 3, 32, 32]"), Error);
  CHECK_THROWS_WITH_AS(model.forward(ctx, bad_size), doctest::Contains("multiples of 8"), Error);
  Tensor<std::int32_t> top(Shape{1, 4, 4}), bottom(Shape{1, 4, 4});
  top.zero();
  bottom.zero();
  CHECK_THROWS_AS(model.decode_codes(ctx, top, bottom), Error);
}

// The straight-through estimator makes the reconstruction piecewise constant in
// everything upstream of a quantiser, so finite differences check the true
// gradient of three parts separately while the code assignment stays fixed:
//  - full loss MSE + b (commit_t + commit_b) w.r.t. the decoder (dec, upsample_t);
//  - b commit_t alone w.r.t. everything feeding the top quantiser (enc_b, enc_t, quantize_conv_t);
//  - b commit_b alone w.r.t. dec_t and quantize_conv_b (their only path to it is smooth).
// The straight-through pass itself is checked in test_vq.
TEST_CASE("VQVAE2 whole-model gradient check in double (tiny configuration)") {
  Context<Cpu> ctx(2);
  ctx.training = false;  // code books fixed: the function must not change between evaluations
  TinyModelD model;
  Generator g(11);
  model.init(g);
  Tensor<double> x = tiny_images(2, 16, 5);
  nn::MSELoss<double, Cpu> mse;
  const double beta = 0.25;

  enum class Part { Decoder, TopCommitment, BottomCommitment };
  for (Part part : {Part::Decoder, Part::TopCommitment, Part::BottomCommitment}) {
    CAPTURE(static_cast<int>(part));
    const double w_top = part == Part::BottomCommitment ? 0.0 : beta;
    const double w_bottom = part == Part::TopCommitment ? 0.0 : beta;
    auto forward = [&]() {
      const auto& y = model.forward(ctx, x);
      double loss = w_top * model.commitment_top() + w_bottom * model.commitment_bottom();
      if (part == Part::Decoder) loss += mse.forward(ctx, y, x);
      Tensor<double> out(Shape{1});
      out[0] = loss;
      return out;
    };
    auto backward = [&](const Tensor<double>& probe) {
      zero_grad(model);
      Tensor<double> drecon(x.shape());
      if (part == Part::Decoder) {
        const auto& d = mse.backward(ctx);
        for (std::int64_t i = 0; i < drecon.numel(); ++i) drecon[i] = d[i] * probe[0];
      } else {
        drecon.zero();
      }
      model.backward(ctx, drecon, w_top * probe[0], w_bottom * probe[0]);
    };
    auto targets = [&]() {
      switch (part) {
        case Part::Decoder:
          return targets_with_prefix(model, {"dec.", "upsample_t."});
        case Part::TopCommitment:
          return targets_with_prefix(model, {"enc_b.", "enc_t.", "quantize_conv_t."});
        default:
          return targets_with_prefix(model, {"dec_t.", "quantize_conv_b."});
      }
    };
    test::GradCheckOptions opt;
    opt.max_elements = 6;
    test::check_gradients(forward, backward, targets, opt);
  }
}

// The whole backward at once: with both quantisers in pass-through mode the model is
// smooth and the straight-through backward exact, so finite differences of the full
// loss MSE + w_t commit_t + w_b commit_b check every parameter and the input together:
// both sides of each gradient merge (the top codes feed upsample_t and dec_t, the bottom
// encoding feeds enc_t and quantize_conv_b) and the straight-through path into the encoders.
TEST_CASE("VQVAE2 full backward equals finite differences of the full loss (pass-through quantisers, double)") {
  Context<Cpu> ctx(2);
  ctx.training = false;  // code books fixed between evaluations
  TinyModelD model;
  Generator g(11);
  model.init(g);
  model.quantizer_top().set_pass_through(true);
  model.quantizer_bottom().set_pass_through(true);
  model.set_input_grad(true);
  Tensor<double> x = tiny_images(2, 16, 5);
  const Tensor<double> target = x.clone();  // a separate tensor: only the model reads x
  nn::MSELoss<double, Cpu> mse;
  // Different weights for the two commitment terms, so that swapping them would show.
  const double w_top = 0.25, w_bottom = 0.4;
  Tensor<double> dx;

  // Pass-through really is the identity: the reconstruction changes, the codes do not.
  {
    Tensor<std::int32_t> top, bottom;
    model.encode(ctx, x, top, bottom);
    model.forward(ctx, x);
    CHECK(model.commitment_top() > 0);  // z is not on a code, yet the output is z
    CHECK(model.commitment_bottom() > 0);
    REQUIRE(model.quantizer_top().indices().shape() == top.shape());
    for (std::int64_t i = 0; i < top.numel(); ++i) REQUIRE(model.quantizer_top().indices()[i] == top[i]);
  }

  test::ModelGradCheck check;
  check.loss = [&]() {
    const auto& y = model.forward(ctx, x);
    return mse.forward(ctx, y, target) + w_top * model.commitment_top() + w_bottom * model.commitment_bottom();
  };
  check.backward = [&](double scale) {
    const auto& d = mse.backward(ctx, static_cast<double>(scale));
    Tensor<double> drecon = d.clone();
    dx = model.backward(ctx, drecon, w_top * scale, w_bottom * scale);
  };
  // Every module by name, so that each is known to be covered.
  check.prefixes = {"enc_b.", "enc_t.", "quantize_conv_t.", "dec_t.", "quantize_conv_b.", "upsample_t.", "dec."};
  check.extra_targets = [&]() { return std::vector<test::GradTarget>{{"x", x, dx}}; };
  test::GradCheckOptions opt;
  opt.max_elements = 4;
  auto stats = test::check_model_gradients(model, check, opt);
  std::int64_t checked = 0, live = 0;
  for (const auto& s : stats) {
    checked += s.checked;
    live += s.nonzero;
  }
  MESSAGE(stats.size() << " targets, " << checked << " elements checked, " << live << " with a non-zero gradient");
  CHECK(live > checked / 2);
}
