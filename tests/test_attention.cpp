#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/nn/causal_attention.hpp"

using namespace vqvae2;
using test::TensorD;

namespace {

// The reference algorithm written literally: full [L, L] scores, masked_fill(j >= i, -1e4),
// softmax over the whole row, the first row zeroed, dropout, then @ v.
template <class T>
Tensor<double> naive_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, int heads,
                               const ops::AttentionDropout& drop) {
  const std::int64_t B = q.dim(0), L = q.dim(1), C = q.dim(2), d = C / heads;
  Tensor<double> out = Tensor<double>::zeros(q.shape());
  std::vector<double> s(static_cast<std::size_t>(L));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < L; ++i) {
        double mx = -1e300;
        for (std::int64_t j = 0; j < L; ++j) {
          double acc = 0;
          for (std::int64_t c = 0; c < d; ++c)
            acc += static_cast<double>(q[(b * L + i) * C + h * d + c]) *
                   static_cast<double>(k[(b * L + j) * C + h * d + c]);
          s[j] = j < i ? acc / std::sqrt(static_cast<double>(d)) : -1e4;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (std::int64_t j = 0; j < L; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (std::int64_t j = 0; j < L; ++j) {
          double p = i == 0 ? 0.0 : s[j] / sum;
          if (drop.active()) {
            const std::uint64_t idx = static_cast<std::uint64_t>(((b * heads + h) * L + i) * L + j);
            p = philox_uniform(drop.seed, drop.offset, idx) > static_cast<float>(drop.p) ? p / (1.0 - drop.p) : 0.0;
          }
          for (std::int64_t c = 0; c < d; ++c)
            out[(b * L + i) * C + h * d + c] += p * static_cast<double>(v[(b * L + j) * C + h * d + c]);
        }
      }
  return out;
}

double max_abs_diff(const Tensor<double>& a, const Tensor<double>& b) {
  double e = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) e = std::max(e, std::abs(a[i] - b[i]));
  return e;
}

template <class T>
Tensor<T> random_as(const Shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor<T> t(s);
  Generator g(seed);
  g.uniform(t, static_cast<T>(lo), static_cast<T>(hi));
  return t;
}

}  // namespace

TEST_CASE("causal attention core: forward equals the literal masked-softmax reference, for every row block") {
  Context<Cpu> ctx;
  const int heads = 2;
  // Scores of a few units make the softmax far from uniform.
  TensorD q = random_as<double>(Shape{2, 13, 6}, 1, -2, 2), k = random_as<double>(Shape{2, 13, 6}, 2, -2, 2),
          v = random_as<double>(Shape{2, 13, 6}, 3);
  for (double p : {0.0, 0.3}) {
    ops::AttentionDropout drop{p, 99, 17};
    Tensor<double> ref = naive_attention(q, k, v, heads, drop);
    for (std::int64_t rb : {1, 2, 5, 13, 64}) {
      TensorD out;
      ops::CausalAttentionState<double> state;
      ops::causal_attention_forward(ctx, q, k, v, heads, drop, out, state, rb);
      INFO("dropout ", p, " row block ", rb);
      CHECK(max_abs_diff(out, ref) < 1e-12);
    }
  }
  // Position 0 attends to nothing: its output is exactly zero.
  TensorD out;
  ops::CausalAttentionState<double> state;
  ops::causal_attention_forward(ctx, q, k, v, heads, {}, out, state);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t c = 0; c < 6; ++c) CHECK(out[(b * 13) * 6 + c] == 0.0);
}

TEST_CASE("causal attention core in float matches the double reference") {
  Context<Cpu> ctx;
  const int heads = 4;
  Tensor<float> q = random_as<float>(Shape{2, 70, 16}, 4, -2, 2), k = random_as<float>(Shape{2, 70, 16}, 5, -2, 2),
                v = random_as<float>(Shape{2, 70, 16}, 6);
  Tensor<double> ref = naive_attention(q, k, v, heads, {});
  Tensor<float> out;
  ops::CausalAttentionState<float> state;
  ops::causal_attention_forward(ctx, q, k, v, heads, {}, out, state, 16);
  CHECK(test::max_rel_error(out, ref) < 1e-5);
}

TEST_CASE("causal attention core: gradients by finite differences (double), with and without dropout") {
  Context<Cpu> ctx;
  const int heads = 2;
  TensorD q = random_as<double>(Shape{2, 11, 6}, 7, -2, 2), k = random_as<double>(Shape{2, 11, 6}, 8, -2, 2),
          v = random_as<double>(Shape{2, 11, 6}, 9);
  for (double p : {0.0, 0.25}) {
    // Row block 4 spreads the 11 rows over several blocks, one partial.
    ops::AttentionDropout drop{p, 5, 3};
    TensorD out, dq, dk, dv;
    ops::CausalAttentionState<double> state;
    test::check_gradients(
        [&] {
          ops::causal_attention_forward(ctx, q, k, v, heads, drop, out, state, 4);
          return out;
        },
        [&](const TensorD& dy) { ops::causal_attention_backward(ctx, q, k, v, dy, heads, state, dq, dk, dv, 4); },
        [&] {
          return std::vector<test::GradTarget>{{"q", q, dq}, {"k", k, dk}, {"v", v, dv}};
        },
        {1e-6, 1e-6, 1e-9, 200});
  }
}

TEST_CASE("causal attention core: backward does not depend on the row block") {
  Context<Cpu> ctx;
  Tensor<float> q = random_as<float>(Shape{1, 40, 8}, 10), k = random_as<float>(Shape{1, 40, 8}, 11),
                v = random_as<float>(Shape{1, 40, 8}, 12), dy = random_as<float>(Shape{1, 40, 8}, 13);
  ops::AttentionDropout drop{0.2, 1, 0};
  Tensor<float> out, dq1, dk1, dv1, dq2, dk2, dv2;
  ops::CausalAttentionState<float> state;
  ops::causal_attention_forward(ctx, q, k, v, 2, drop, out, state, 64);
  ops::causal_attention_backward(ctx, q, k, v, dy, 2, state, dq1, dk1, dv1, 64);
  ops::causal_attention_forward(ctx, q, k, v, 2, drop, out, state, 7);
  ops::causal_attention_backward(ctx, q, k, v, dy, 2, state, dq2, dk2, dv2, 7);
  CHECK(test::max_rel_error(dq2, dq1) < 1e-5);
  CHECK(test::max_rel_error(dk2, dk1) < 1e-5);
  CHECK(test::max_rel_error(dv2, dv1) < 1e-5);
}

namespace {

struct ModuleCase {
  nn::CausalAttention<double> att{5, 7, 8, 2, 0.25};
  TensorD query = random_as<double>(nchw(2, 5, 3, 4), 21);
  TensorD key = random_as<double>(nchw(2, 7, 3, 4), 22);
  ModuleCase() {
    Generator g(3);
    att.init(g);
    // Move weight_g away from ||v|| (its initial value) so both enter the gradient.
    att.visit([&](std::string_view name, auto& p) {
      if (name.ends_with("weight_g"))
        for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] *= 0.6 + 0.1 * static_cast<double>(i % 7);
    });
  }
};

}  // namespace

TEST_CASE("CausalAttention module: gradients by finite differences for query, key and every parameter") {
  for (bool training : {false, true}) {
    ModuleCase m;
    Context<Cpu> ctx;
    ctx.training = training;
    const std::uint64_t seed = m.att.generator().seed();
    TensorD dquery, dkey;
    test::check_gradients(
        [&] {
          m.att.generator().set_state(seed, 0);  // the same dropout mask for every evaluation
          return m.att.forward(ctx, m.query, m.key);
        },
        [&](const TensorD& dy) {
          zero_grad(m.att);
          dquery = m.att.backward(ctx, dy);
          dkey = m.att.grad_key();
        },
        [&] {
          std::vector<test::GradTarget> t{{"query", m.query, dquery}, {"key", m.key, dkey}};
          m.att.visit([&](std::string_view name, auto& p) { t.push_back({std::string(name), p.value, p.grad}); });
          CHECK(t.size() == 11);  // query + key + 3 linears x (weight_g, weight_v, bias)
          return t;
        },
        // atol: central differences of a loss of size ~10 carry ~1e-16 * 10 / eps = 1e-9 of rounding.
        {1e-6, 1e-6, 1e-8, 64});
  }
}

TEST_CASE("CausalAttention module matches PyTorch (weight-normalised linears, eval mode) within 1e-4") {
  test::Golden g("attention.bin");
  nn::CausalAttention<float> att(6, 10, 32, 8);
  att.visit([&](std::string_view name, auto& p) {
    Tensor<float> src = g.get_as<float>("param." + std::string(name));
    REQUIRE(src.numel() == p.value.numel());
    p.value.copy_from(src.reshape(p.value.shape()));
  });
  Context<Cpu> ctx;
  ctx.training = false;
  const Tensor<float> query = g.get_as<float>("query"), key = g.get_as<float>("key"), dy = g.get_as<float>("dy");
  // float linears, softmax and products (~30 terms of O(1) per entry) against double:
  // ~1e-6 absolute where a sum cancels, ~1e-6 relative elsewhere.
  const double atol = 1e-6, rtol = 1e-4;
  test::check_close(att.forward(ctx, query, key), g.get("out"), atol, rtol, "out");
  test::check_close(att.backward(ctx, dy), g.get("dquery"), atol, rtol, "dquery");
  test::check_close(att.grad_key(), g.get("dkey"), atol, rtol, "dkey");
  int params = 0;
  att.visit([&](std::string_view name, auto& p) {
    INFO(name);
    const Tensor<double> ref = g.get("grad." + std::string(name));
    if (name == "key.bias") {
      // q.(k_j + b) shifts row i's scores by q_i.b for every j: softmax ignores it, so this
      // gradient is zero up to rounding in both implementations. Compare it on the scale
      // of the key weights' gradient instead of its own.
      const Tensor<double> wv = g.get("grad.key.weight_v");
      double scale = 0, ours = 0, theirs = 0;
      for (std::int64_t i = 0; i < wv.numel(); ++i) scale = std::max(scale, std::abs(wv[i]));
      for (std::int64_t i = 0; i < ref.numel(); ++i) {
        ours = std::max(ours, std::abs(static_cast<double>(p.grad[i])));
        theirs = std::max(theirs, std::abs(ref[i]));
      }
      CHECK(ours < 1e-4 * scale);
      CHECK(theirs < 1e-4 * scale);
    } else {
      test::check_close(p.grad, ref, atol, rtol, "grad." + std::string(name));
    }
    ++params;
  });
  CHECK(params == 9);
}

TEST_CASE("CausalAttention is causal: output p depends on key positions < p and on the query at p only") {
  // Double, so that "exactly zero" is not helped by float underflow. Training mode:
  // dropout must not break causality either.
  for (bool training : {false, true}) {
    nn::CausalAttention<double> att(3, 4, 8, 2, 0.2);
    Generator gen(5);
    att.init(gen);
    Context<Cpu> ctx;
    ctx.training = training;
    const std::int64_t B = 2, H = 4, W = 5, L = H * W;
    TensorD query = random_as<double>(nchw(B, 3, H, W), 31), key = random_as<double>(nchw(B, 4, H, W), 32);
    const TensorD probe = random_as<double>(nchw(B, 8, H, W), 33);
    const std::uint64_t seed = att.generator().seed();
    att.generator().set_state(seed, 0);
    const TensorD out = att.forward(ctx, query, key).clone();
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < 8; ++c) CHECK(out.at(b, c, 0, 0) == 0.0);  // position 0 sees nothing

    for (std::int64_t p = 0; p < L; ++p) {
      att.generator().set_state(seed, 0);
      att.forward(ctx, query, key);
      // dL/dout is non-zero only at output position p of batch element 1.
      TensorD dy = TensorD::zeros(probe.shape());
      for (std::int64_t c = 0; c < 8; ++c) dy.at(1, c, p / W, p % W) = probe.at(1, c, p / W, p % W);
      const TensorD dq = att.backward(ctx, dy).clone();
      const TensorD& dk = att.grad_key();
      bool key_before = false, query_at = false, key_leak = false, query_leak = false, batch_leak = false;
      std::int64_t keys_reached = 0;  // earlier key positions s < p with a non-zero gradient
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t s = 0; s < L; ++s) {
          bool reached = false;
          for (std::int64_t c = 0; c < 4; ++c) {
            const double g = dk.at(b, c, s / W, s % W);
            if (b == 0 && g != 0.0) batch_leak = true;
            if (b == 1 && s >= p && g != 0.0) key_leak = true;
            if (b == 1 && s < p && g != 0.0) key_before = reached = true;
          }
          keys_reached += reached;
          for (std::int64_t c = 0; c < 3; ++c) {
            const double g = dq.at(b, c, s / W, s % W);
            if (b == 0 && g != 0.0) batch_leak = true;
            if (b == 1 && s != p && g != 0.0) query_leak = true;
            if (b == 1 && s == p && g != 0.0) query_at = true;
          }
        }
      INFO("training ", training, " output position ", p);
      CHECK_FALSE(key_leak);
      CHECK_FALSE(query_leak);
      CHECK_FALSE(batch_leak);
      // Output 0 is constant; output 1 is v_0 whatever the query (a softmax over one key is 1).
      CHECK(key_before == (p >= 1));
      CHECK(query_at == (p >= 2));
      // Without dropout every earlier key reaches p (with it, a dropped weight may cut one).
      if (!training) CHECK(keys_reached == p);
    }
  }
}

TEST_CASE("CausalAttention: training draws fresh dropout masks, eval mode none; buffers are reused") {
  nn::CausalAttention<float> att(4, 6, 16, 4, 0.5);
  Generator gen(8);
  att.init(gen);
  Context<Cpu> ctx;
  Tensor<float> query = random_as<float>(nchw(2, 4, 4, 4), 41), key = random_as<float>(nchw(2, 6, 4, 4), 42);
  ctx.training = false;
  const Tensor<float> eval1 = att.forward(ctx, query, key).clone();
  const Tensor<float> eval2 = att.forward(ctx, query, key).clone();
  CHECK(test::max_rel_error(eval1, eval2) == 0.0);
  ctx.training = true;
  const Tensor<float> train1 = att.forward(ctx, query, key).clone();
  const Tensor<float> train2 = att.forward(ctx, query, key).clone();
  CHECK(test::max_rel_error(train1, eval1) > 1e-3);
  CHECK(test::max_rel_error(train2, train1) > 1e-3);
  // A second block initialised from the same generator draws another dropout stream.
  nn::CausalAttention<float> other(4, 6, 16, 4, 0.5);
  other.init(gen);
  CHECK(other.generator().seed() != att.generator().seed());

  // A training step allocates nothing after the first: outputs and gradients keep their storage.
  Tensor<float> dy = random_as<float>(nchw(2, 16, 4, 4), 43);
  const float* out_p = att.forward(ctx, query, key).data();
  const float* dq_p = att.backward(ctx, dy).data();
  const float* dk_p = att.grad_key().data();
  for (int step = 0; step < 3; ++step) {
    CHECK(att.forward(ctx, query, key).data() == out_p);
    CHECK(att.backward(ctx, dy).data() == dq_p);
    CHECK(att.grad_key().data() == dk_p);
  }
}

TEST_CASE("CausalAttention rejects bad input with one sentence naming the shapes") {
  CHECK_THROWS_AS(nn::CausalAttention<float>(4, 4, 30, 8), Error);
  CHECK_THROWS_AS(nn::CausalAttention<float>(4, 4, 32, 8, 1.0), Error);
  nn::CausalAttention<float> att(4, 6, 16, 4);
  Generator gen(1);
  att.init(gen);
  Context<Cpu> ctx;
  Tensor<float> query(nchw(1, 4, 3, 3)), key(nchw(1, 6, 3, 3)), wrong(nchw(1, 5, 3, 3)), other(nchw(1, 6, 3, 4));
  query.zero();
  key.zero();
  CHECK_THROWS_WITH_AS(att.forward(ctx, wrong, key), doctest::Contains("[1, 5, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(att.forward(ctx, query, other), doctest::Contains("[1, 6, 3, 4]"), Error);
  att.forward(ctx, query, key);
  Tensor<float> dy(nchw(1, 16, 3, 4));
  CHECK_THROWS_WITH_AS(att.backward(ctx, dy), doctest::Contains("CausalAttention::backward"), Error);
  Tensor<float> q(Shape{1, 9, 16}), k(Shape{1, 9, 12}), out;
  ops::CausalAttentionState<float> state;
  CHECK_THROWS_WITH_AS(ops::causal_attention_forward(ctx, q, k, q, 4, {}, out, state), doctest::Contains("[1, 9, 12]"),
                       Error);
}
