// The PixelSNAIL prior and its layers: finite-difference gradients in double
// (GatedResBlock with aux and condition, PixelBlock with and without attention, the
// whole tiny top and bottom priors through the cross-entropy loss, dropout on with a
// fixed mask), the gather stem against the dense one-hot convolution, causality of
// the whole prior proven through gradients (with the exact receptive field derived
// from the architecture), PyTorch goldens of rosinality's modules, reproducible
// dropout, and the parameter counts of the reference priors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/nn/loss.hpp"
#include "vqvae2/train/adam.hpp"

using namespace vqvae2;
using test::TensorD;

namespace {

using Codes = Tensor<std::int32_t, Cpu>;

Codes random_codes(std::int64_t B, std::int64_t H, std::int64_t W, int n_class, std::uint64_t seed) {
  Codes c(Shape{B, H, W});
  Generator g(seed);
  for (std::int64_t i = 0; i < c.numel(); ++i) c[i] = static_cast<std::int32_t>(g.below(n_class));
  return c;
}

// Moves weight_g away from ||v|| and the biases away from their init, so that every parameter matters.
template <class Module>
void perturb(Module& m, std::uint64_t seed) {
  Generator g(seed);
  m.visit([&](std::string_view name, auto& p) {
    if (name.ends_with("weight_g")) {
      for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] *= 0.6 + 0.8 * g.uniform01();
    } else if (name.ends_with("bias")) {
      for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = -0.3 + 0.6 * g.uniform01();
    }
  });
}

template <class Module>
void add_parameter_targets(Module& m, std::vector<test::GradTarget>& t) {
  m.visit([&](std::string_view name, auto& p) { t.push_back({std::string(name), p.value, p.grad}); });
}

// Every parameter of the module has a gradient somewhere (the path is live).
template <class Module>
void check_all_parameters_reached(Module& m) {
  m.visit([&](std::string_view name, auto& p) {
    double s = 0;
    for (std::int64_t i = 0; i < p.grad.numel(); ++i) s += std::abs(p.grad[i]);
    INFO(name);
    CHECK(s > 0);
  });
}

// ---------------------------------------------------------------- receptive fields
// The set of input positions (and condition positions) each output position depends
// on, derived from the architecture alone: the stem's two windows, each causal
// convolution's window (minus its masked taps), 1x1 layers and residual sums
// position-wise, attention over every strictly earlier position, and the
// conditioning network's (2 n_cond + 1)-wide square around (i/2, j/2).
struct Deps {
  std::int64_t H, W, Hc, Wc;
  std::vector<std::vector<char>> d;  // [H*W][H*W + Hc*Wc]
  Deps(std::int64_t h, std::int64_t w, std::int64_t hc, std::int64_t wc)
      : H(h), W(w), Hc(hc), Wc(wc), d(h * w, std::vector<char>(h * w + hc * wc, 0)) {}
  static void merge(std::vector<char>& a, const std::vector<char>& b) {
    for (std::size_t k = 0; k < a.size(); ++k) a[k] |= b[k];
  }
};

// out(q) = union over the taps (ki, kj) of a kernel kh x kw with padding (top, left) of in(q + tap - pad),
// skipping the causal mask's taps when masked.
Deps conv_deps(const Deps& in, int kh, int kw, int pad_top, int pad_left, bool masked) {
  Deps out(in.H, in.W, in.Hc, in.Wc);
  for (std::int64_t i = 0; i < in.H; ++i)
    for (std::int64_t j = 0; j < in.W; ++j)
      for (int ki = 0; ki < kh; ++ki)
        for (int kj = 0; kj < kw; ++kj) {
          if (masked && ki == kh - 1 && kj >= kw / 2) continue;
          const std::int64_t si = i + ki - pad_top, sj = j + kj - pad_left;
          if (si < 0 || si >= in.H || sj < 0 || sj >= in.W) continue;
          Deps::merge(out.d[i * in.W + j], in.d[si * in.W + sj]);
        }
  return out;
}

template <class Config>
Deps expected_deps() {
  constexpr int K = Config::kernel, KS = K % 2 == 0 ? K + 1 : K;
  const std::int64_t H = Config::height, W = Config::width;
  const std::int64_t Hc = Config::conditioned ? H / 2 : 0, Wc = Config::conditioned ? W / 2 : 0;
  const std::int64_t L = H * W;
  // Identity on the input: position q depends on input q (before the stem).
  Deps x(H, W, Hc, Wc);
  for (std::int64_t q = 0; q < L; ++q) x.d[q][q] = 1;
  // Stem: shift_down(horizontal) + shift_right(vertical).
  Deps h = conv_deps(x, KS / 2, KS, KS / 2 - 1, KS / 2, false);
  Deps v = conv_deps(x, (KS + 1) / 2, KS / 2, (KS + 1) / 2 - 1, KS / 2 - 1, false);
  Deps out(H, W, Hc, Wc);
  for (std::int64_t i = 0; i < H; ++i)
    for (std::int64_t j = 0; j < W; ++j) {
      if (i > 0) Deps::merge(out.d[i * W + j], h.d[(i - 1) * W + j]);
      if (j > 0) Deps::merge(out.d[i * W + j], v.d[i * W + j - 1]);
    }
  // The condition at bottom position (i, j): top codes within the conditioning network's reach.
  Deps cond(H, W, Hc, Wc);
  if (Config::conditioned) {
    const std::int64_t R = 1 + Config::n_cond_res_block * 2;  // 3x3 convolutions: 1 + 2 per gated block
    for (std::int64_t i = 0; i < H; ++i)
      for (std::int64_t j = 0; j < W; ++j)
        for (std::int64_t a = std::max<std::int64_t>(0, i / 2 - R); a <= std::min(Hc - 1, i / 2 + R); ++a)
          for (std::int64_t b = std::max<std::int64_t>(0, j / 2 - R); b <= std::min(Wc - 1, j / 2 + R); ++b)
            cond.d[i * W + j][L + a * Wc + b] = 1;
  }
  for (int blk = 0; blk < Config::n_block; ++blk) {
    const Deps input = out;
    for (int r = 0; r < Config::n_res_block; ++r) {
      Deps c1 = conv_deps(out, K, K, K - 1, K / 2, true);
      Deps c2 = conv_deps(c1, K, K, K - 1, K / 2, true);
      for (std::int64_t q = 0; q < L; ++q) {
        Deps::merge(out.d[q], c2.d[q]);
        if (Config::conditioned) Deps::merge(out.d[q], cond.d[q]);
      }
    }
    if (Config::attention) {
      std::vector<char> prefix(out.d[0].size(), 0);  // union of the keys of positions < q
      Deps next = out;
      for (std::int64_t q = 0; q < L; ++q) {
        Deps::merge(next.d[q], prefix);
        Deps::merge(prefix, input.d[q]);
        Deps::merge(prefix, out.d[q]);
      }
      out = next;
    }
  }
  return out;
}

std::string positions(const std::vector<std::int64_t>& v, std::int64_t W) {
  std::ostringstream os;
  for (auto q : v) os << "(" << q / W << "," << q % W << ")";
  return os.str();
}

// For output position p: the gradient of the logits there (a random dlogits at p, zero
// elsewhere, batch 0 only) with respect to the one-hot input and condition, compared with
// the derived dependency set exactly (zero where the set says so, non-zero elsewhere).
template <class Config>
void check_causality(const std::vector<std::int64_t>& probes) {
  using Model = models::PixelSNAIL<double, Cpu, Config>;
  Context<Cpu> ctx;
  ctx.training = false;
  Model m;
  Generator gen(41);
  m.init(gen);
  perturb(m, 42);
  const std::int64_t B = 2, H = Config::height, W = Config::width, L = H * W, C = Config::n_class;
  TensorD x, c;
  nn::one_hot(random_codes(B, H, W, C, 43), C, x);
  if (Config::conditioned) nn::one_hot(random_codes(B, H / 2, W / 2, C, 44), C, c);
  const Deps deps = expected_deps<Config>();
  const std::int64_t Lc = Config::conditioned ? L / 4 : 0;
  for (std::int64_t p : probes) {
    INFO("output position (", p / W, ",", p % W, ")");
    const TensorD& logits = m.forward_onehot(ctx, x, Config::conditioned ? &c : nullptr);
    TensorD dl = TensorD::zeros(logits.shape());
    Generator g(100 + p);
    for (std::int64_t k = 0; k < C; ++k) dl[k * L + p] = 2 * g.uniform01() - 1;
    m.backward(ctx, dl);
    const TensorD& dx = m.input_grad();
    std::vector<std::int64_t> missing, extra, later;
    bool other_batch = false;
    for (std::int64_t q = 0; q < L; ++q) {
      bool seen = false;
      for (std::int64_t k = 0; k < C; ++k) {
        seen |= dx[k * L + q] != 0.0;
        other_batch |= dx[(C + k) * L + q] != 0.0;
      }
      if (seen && q >= p) later.push_back(q);
      if (seen && !deps.d[p][q]) extra.push_back(q);
      if (!seen && deps.d[p][q]) missing.push_back(q);
    }
    INFO("reached at or after p: ", positions(later, W));
    INFO("reached outside the derived set: ", positions(extra, W));
    INFO("derived but not reached: ", positions(missing, W));
    CHECK(later.empty());
    CHECK(extra.empty());
    CHECK(missing.empty());
    CHECK_FALSE(other_batch);
    if (Config::conditioned) {
      const TensorD& dc = m.condition_grad();
      std::vector<std::int64_t> cmissing, cextra;
      std::int64_t reached = 0;
      for (std::int64_t q = 0; q < Lc; ++q) {
        bool seen = false;
        for (std::int64_t k = 0; k < C; ++k) seen |= dc[k * Lc + q] != 0.0;
        reached += seen;
        if (seen && !deps.d[p][L + q]) cextra.push_back(q);
        if (!seen && deps.d[p][L + q]) cmissing.push_back(q);
      }
      INFO("condition reached outside the derived set: ", positions(cextra, W / 2));
      INFO("condition derived but not reached: ", positions(cmissing, W / 2));
      CHECK(cextra.empty());
      CHECK(cmissing.empty());
      CHECK(reached > 0);
      CHECK(deps.d[p][L + (p / W / 2) * (W / 2) + (p % W) / 2]);  // the top code above p
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- gradient checks

TEST_CASE("GatedResBlock: finite-difference gradients with aux and condition, dropout on with a fixed mask (double)") {
  struct Case {
    const char* name;
    nn::GatedConv kind;
    int kernel;
  };
  for (Case cs : {Case{"causal 3x3", nn::GatedConv::Causal, 3}, Case{"same 3x3", nn::GatedConv::Same, 3},
                  Case{"causal_downright 2x2", nn::GatedConv::CausalDownRight, 2}}) {
    INFO(cs.name);
    nn::GatedResBlock<double> blk(4, 5, cs.kernel, cs.kind, 0.3, /*aux=*/3, /*condition=*/2);
    Generator g(5);
    blk.init(g);
    perturb(blk, 6);
    Generator drop(77);
    blk.use_generator(&drop);
    Context<Cpu> ctx;
    TensorD x = test::random_tensor(nchw(2, 4, 5, 6), 7), aux = test::random_tensor(nchw(2, 3, 5, 6), 8),
            cond = test::random_tensor(nchw(2, 2, 5, 6), 9);
    const TensorD* dx = nullptr;
    test::check_gradients(
        [&] {
          drop.set_state(77, 0);  // the same dropout mask on every forward
          return blk.forward(ctx, x, &aux, &cond).clone();
        },
        [&](const TensorD& dy) {
          zero_grad(blk);
          dx = &blk.backward(ctx, dy);
        },
        [&] {
          std::vector<test::GradTarget> t{
              {"x", x, *dx}, {"aux", aux, blk.grad_aux()}, {"cond", cond, blk.grad_condition()}};
          add_parameter_targets(blk, t);
          return t;
        },
        test::GradCheckOptions{.max_elements = 24});
    // Dropout was on: some of the hidden units are zeroed.
    std::int64_t dropped = 0;
    for (std::int64_t i = 0; i < blk.dropout().mask().numel(); ++i) dropped += blk.dropout().mask()[i] == 0;
    CHECK(dropped > 0);
  }
}

TEST_CASE("PixelBlock: finite-difference gradients with and without attention, with a condition (double)") {
  for (auto [attention, n_res] : {std::pair{true, 2}, std::pair{true, 0}, std::pair{false, 1}}) {
    {
      INFO("attention ", attention, ", residual blocks ", n_res);
      nn::PixelBlock<double> pb(8, 6, 5, n_res, attention, 0.2, /*condition=*/3, /*heads=*/2);
      Generator g(11);
      pb.init(g);
      perturb(pb, 12);
      Generator drop(78);
      pb.use_generator(&drop);
      Context<Cpu> ctx;
      TensorD x = test::random_tensor(nchw(2, 8, 4, 5), 13), cond = test::random_tensor(nchw(2, 3, 4, 5), 14);
      TensorD bg = test::random_tensor(nchw(2, 2, 4, 5), 15);
      const TensorD* dx = nullptr;
      test::check_gradients(
          [&] {
            drop.set_state(78, 0);
            return pb.forward(ctx, x, bg, &cond).clone();
          },
          [&](const TensorD& dy) {
            zero_grad(pb);
            dx = &pb.backward(ctx, dy);
          },
          [&] {
            std::vector<test::GradTarget> t{{"x", x, *dx}};
            if (n_res > 0) t.push_back({"cond", cond, pb.grad_condition()});
            add_parameter_targets(pb, t);
            return t;
          },
          test::GradCheckOptions{.max_elements = 12});
    }
  }
}

template <class Config>
void check_whole_model_gradients() {
  models::PixelSNAIL<double, Cpu, Config> m;
  Generator g(21);
  m.init(g);
  perturb(m, 22);
  Context<Cpu> ctx;
  nn::SoftmaxCrossEntropy<double> ce;
  const Codes codes = random_codes(2, Config::height, Config::width, Config::n_class, 23);
  const Codes cond = random_codes(2, Config::height / 2, Config::width / 2, Config::n_class, 24);
  const Codes* c = Config::conditioned ? &cond : nullptr;
  const std::uint64_t seed = m.dropout_generator().seed();
  test::check_gradients(
      [&] {
        m.dropout_generator().set_state(seed, 0);  // dropout on, the same masks every time
        TensorD loss(Shape{1});
        loss[0] = ce.forward(ctx, m.forward(ctx, codes, c), codes);
        return loss;
      },
      [&](const TensorD& dy) {
        zero_grad(m);
        m.backward(ctx, ce.backward(ctx, dy[0]));
      },
      [&] {
        std::vector<test::GradTarget> t;
        add_parameter_targets(m, t);
        return t;
      },
      test::GradCheckOptions{.max_elements = 6});
  check_all_parameters_reached(m);
}

TEST_CASE("PixelSNAIL TopTiny: finite-difference gradients of every parameter through the cross-entropy (double)") {
  check_whole_model_gradients<models::TopTiny>();
}

TEST_CASE("PixelSNAIL BottomTiny: finite-difference gradients of every parameter through the cross-entropy (double)") {
  check_whole_model_gradients<models::BottomTiny>();
}

TEST_CASE("PixelSNAIL: the gather stem equals the dense one-hot convolution (forward and parameter gradients)") {
  std::vector<std::string> names;
  auto run = [&](auto& m, bool dense, const Codes& codes, const Codes* cond, TensorD& logits,
                 std::vector<TensorD>& grads) {
    using Cfg = typename std::remove_reference_t<decltype(m)>::ConfigType;
    Context<Cpu> ctx;
    ctx.training = false;
    zero_grad(m);
    TensorD x, c;
    const TensorD* y;
    if (dense) {
      nn::one_hot(codes, Cfg::n_class, x);
      if (cond) nn::one_hot(*cond, Cfg::n_class, c);
      y = &m.forward_onehot(ctx, x, cond ? &c : nullptr);
    } else {
      y = &m.forward(ctx, codes, cond);
    }
    logits = y->clone();
    m.backward(ctx, test::random_tensor(y->shape(), 5));
    grads.clear();
    m.visit([&](std::string_view name, auto& p) {
      grads.push_back(p.grad.clone());
      names.push_back(std::string(name));
    });
  };
  auto compare = [&](auto& m, const Codes& codes, const Codes* cond) {
    TensorD l1, l2;
    std::vector<TensorD> g1, g2;
    run(m, false, codes, cond, l1, g1);
    run(m, true, codes, cond, l2, g2);
    CHECK(test::max_rel_error(l1, l2) < 1e-12);
    REQUIRE(g1.size() == g2.size());
    // Absolute floor: the attention's key biases get a gradient of exactly zero in exact
    // arithmetic (a row's softmax ignores a constant added to its scores), roundoff here.
    for (std::size_t i = 0; i < g1.size(); ++i) {
      INFO(names[i]);
      double diff = 0, scale = 0;
      for (std::int64_t k = 0; k < g2[i].numel(); ++k) {
        diff = std::max(diff, std::abs(g1[i][k] - g2[i][k]));
        scale = std::max(scale, std::abs(g2[i][k]));
      }
      CHECK(diff <= 1e-14 + 1e-11 * scale);
    }
  };
  Generator g(31);
  models::PixelSNAIL<double, Cpu, models::TopTiny> top;
  top.init(g);
  compare(top, random_codes(2, 8, 8, 16, 32), nullptr);
  models::PixelSNAIL<double, Cpu, models::BottomTiny> bottom;
  bottom.init(g);
  const Codes cond = random_codes(2, 4, 4, 16, 34);
  compare(bottom, random_codes(2, 8, 8, 16, 33), &cond);
}

// ---------------------------------------------------------------- causality

TEST_CASE("PixelSNAIL TopTiny is causal: logits at p see no input at or after p, and the attention's exact reach") {
  // Every position of the first row, the row starts, the positions just before and after
  // the blind spot (column W-4 / W-3), and the last position.
  std::vector<std::int64_t> probes;
  for (std::int64_t q = 0; q < 8; ++q) probes.push_back(q);
  for (std::int64_t q : {8, 9, 12, 13, 21, 27, 29, 36, 40, 45, 56, 61, 63}) probes.push_back(q);
  check_causality<models::TopTiny>(probes);

  // With attention in evaluation mode every earlier position reaches p except one: the
  // last position of the previous row, for p in columns j < W - 3. Nothing at a later
  // position is read directly by the stem or the causal convolutions (their current-row
  // taps lie strictly left), and attention mixes only features of earlier positions,
  // which depend on strictly earlier inputs; so input (i-1, W-1) can reach (i, j) only
  // through a direct stem read at some (i, j'), j' <= j, and the stem's upper window is
  // 5 wide. The derived sets (checked exactly against the gradients above) say so:
  const Deps deps = expected_deps<models::TopTiny>();
  const std::int64_t W = 8, L = 64;
  for (std::int64_t p = 0; p < L; ++p)
    for (std::int64_t q = 0; q < p; ++q) {
      const bool blind = p / W >= 1 && p % W < W - 3 && q == (p / W) * W - 1;
      INFO("p (", p / W, ",", p % W, "), q (", q / W, ",", q % W, ")");
      CHECK(static_cast<bool>(deps.d[p][q]) == !blind);
    }
}

TEST_CASE("PixelSNAIL BottomTiny is causal through its receptive field, and the condition reaches every position") {
  std::vector<std::int64_t> probes;
  for (std::int64_t q : {0, 1, 2, 7, 8, 9, 15, 18, 27, 35, 42, 50, 57, 63}) probes.push_back(q);
  check_causality<models::BottomTiny>(probes);
  // The causal convolutions reach a bounded window only: far earlier positions do not.
  const Deps deps = expected_deps<models::BottomTiny>();
  std::int64_t earlier = 0, reached = 0;
  for (std::int64_t q = 0; q < 63; ++q) {
    ++earlier;
    reached += deps.d[63][q];
  }
  CHECK(reached > 0);
  CHECK(reached <= earlier);
}

// ---------------------------------------------------------------- goldens

namespace {

// |a - b| <= atol + rtol |b| per element, with a shape check; reports the worst element.
template <class A>
void check_close(const std::string& what, const Tensor<A>& a, const TensorD& b, double atol, double rtol) {
  INFO(what, ": shape ", a.shape().str(), " vs golden ", b.shape().str());
  REQUIRE(a.numel() == b.numel());
  bool same_shape = a.shape() == b.shape();
  if (!same_shape && b.rank() == 1 && a.rank() == 1) same_shape = true;
  CHECK(same_shape);
  std::int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]), tol = atol + rtol * std::abs(b[i]);
    if (d > tol) {
      ++bad;
      if (d - tol > worst_excess) {
        worst_excess = d - tol;
        worst = i;
      }
    }
  }
  INFO("elements outside tolerance: ", bad, (worst >= 0 ? ", worst at " + std::to_string(worst) : std::string()),
       worst >= 0 ? ": ours " + std::to_string(static_cast<double>(a[worst])) + ", golden " + std::to_string(b[worst])
                  : std::string());
  CHECK(bad == 0);
}

// Loads every parameter "prefix.param.<name>" and returns the number loaded.
template <class T, class Module>
std::int64_t load_parameters(Module& m, const test::Golden& gd, const std::string& prefix) {
  std::int64_t n = 0;
  m.visit([&](std::string_view name, auto& p) {
    const TensorD src = gd.get(prefix + "param." + std::string(name));
    INFO(name, ": ", p.value.shape().str(), " vs golden ", src.shape().str());
    REQUIRE(src.numel() == p.value.numel());
    for (std::int64_t i = 0; i < src.numel(); ++i) p.value[i] = static_cast<T>(src[i]);
    ++n;
  });
  return n;
}

template <class Module>
void check_parameter_grads(Module& m, const test::Golden& gd, const std::string& prefix, double atol, double rtol) {
  m.visit([&](std::string_view name, auto& p) {
    const TensorD ref = gd.get(prefix + "grad." + std::string(name));
    // atol scales with the array: gradients of one tensor share a magnitude.
    double scale = 0;
    for (std::int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::abs(ref[i]));
    check_close(prefix + "grad." + std::string(name), p.grad, ref, atol * std::max(scale, 1e-2), rtol);
  });
}

Codes load_codes(const test::Golden& gd, const std::string& name) {
  const TensorD d = gd.get(name);
  Codes c(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) c[i] = static_cast<std::int32_t>(d[i]);
  return c;
}

// Tolerances, |ours - golden| <= atol + rtol |golden| per element:
// double: the same arithmetic as PyTorch's double run up to summation order:
//   atol 1e-10, rtol 1e-8 (observed differences are ~1e-14).
// float: the production path (oneDNN convolutions, the gather, float accumulation over
//   up to 16 chained layers) against the double golden. The worst element observed is
//   within 2e-5 (atol 2e-5 and rtol 2e-5 pass everywhere except the attention's key
//   biases, whose gradient is exactly zero in exact arithmetic: a softmax row ignores a
//   constant added to its scores, so ours is float roundoff). We take rtol 1e-4 and, for
//   parameter gradients, atol 5e-5 times the array's largest magnitude (at least 0.01):
//   a 2.5-5x margin that still catches any wrong term (those are O(1) of the array).
template <class T>
struct Tol {
  static constexpr double atol = std::is_same_v<T, double> ? 1e-10 : 5e-5;
  static constexpr double rtol = std::is_same_v<T, double> ? 1e-8 : 1e-4;
};

template <class T>
void golden_gated_res_block() {
  test::Golden gd("pixelsnail.bin");
  nn::GatedResBlock<T> blk(6, 5, 3, nn::GatedConv::Causal, 0.1, 3, 4);
  CHECK(load_parameters<T>(blk, gd, "grb.") == 11);
  zero_grad(blk);
  Context<Cpu> ctx;
  ctx.training = false;
  const Tensor<T> x = gd.get_as<T>("grb.x"), aux = gd.get_as<T>("grb.aux"), cond = gd.get_as<T>("grb.cond");
  const TensorD out = gd.get("grb.out");
  check_close("grb.out", blk.forward(ctx, x, &aux, &cond), out, Tol<T>::atol, Tol<T>::rtol);
  check_close("grb.dx", blk.backward(ctx, gd.get_as<T>("grb.dy")), gd.get("grb.dx"), Tol<T>::atol, Tol<T>::rtol);
  check_close("grb.daux", blk.grad_aux(), gd.get("grb.daux"), Tol<T>::atol, Tol<T>::rtol);
  check_close("grb.dcond", blk.grad_condition(), gd.get("grb.dcond"), Tol<T>::atol, Tol<T>::rtol);
  check_parameter_grads(blk, gd, "grb.", Tol<T>::atol, Tol<T>::rtol);
}

template <class T>
void golden_pixel_block() {
  test::Golden gd("pixelsnail.bin");
  nn::PixelBlock<T> pb(8, 6, 5, 2, true, 0.1, 3, 2);
  CHECK(load_parameters<T>(pb, gd, "pb.") == 2 * 8 + 2 * 6 + 9 + 9);
  zero_grad(pb);
  Context<Cpu> ctx;
  ctx.training = false;
  const Tensor<T> x = gd.get_as<T>("pb.x"), bg = gd.get_as<T>("pb.bg"), cond = gd.get_as<T>("pb.cond");
  check_close("pb.out", pb.forward(ctx, x, bg, &cond), gd.get("pb.out"), Tol<T>::atol, Tol<T>::rtol);
  check_close("pb.dx", pb.backward(ctx, gd.get_as<T>("pb.dy")), gd.get("pb.dx"), Tol<T>::atol, Tol<T>::rtol);
  check_close("pb.dcond", pb.grad_condition(), gd.get("pb.dcond"), Tol<T>::atol, Tol<T>::rtol);
  check_parameter_grads(pb, gd, "pb.", Tol<T>::atol, Tol<T>::rtol);
}

template <class T, class Config>
void golden_model(const std::string& prefix) {
  test::Golden gd("pixelsnail.bin");
  models::PixelSNAIL<T, Cpu, Config> m;
  std::int64_t n_golden = 0;
  load_parameters<T>(m, gd, prefix);
  m.visit([&](std::string_view, auto&) { ++n_golden; });
  zero_grad(m);
  Context<Cpu> ctx;
  ctx.training = false;
  const Codes codes = load_codes(gd, prefix + "codes");
  Codes cond;
  if (Config::conditioned) cond = load_codes(gd, prefix + "condition");
  const auto& logits = m.forward(ctx, codes, Config::conditioned ? &cond : nullptr);
  CHECK(logits.shape() == nchw(2, Config::n_class, Config::height, Config::width));
  check_close(prefix + "logits", logits, gd.get(prefix + "logits"), Tol<T>::atol, Tol<T>::rtol);
  m.backward(ctx, gd.get_as<T>(prefix + "dlogits"));
  check_parameter_grads(m, gd, prefix, Tol<T>::atol, Tol<T>::rtol);
}

}  // namespace

TEST_CASE("GatedResBlock matches rosinality's module in PyTorch (causal 3x3, aux, condition)") {
  SUBCASE("double") { golden_gated_res_block<double>(); }
  SUBCASE("float") { golden_gated_res_block<float>(); }
}

TEST_CASE("PixelBlock with attention matches rosinality's module in PyTorch") {
  SUBCASE("double") { golden_pixel_block<double>(); }
  SUBCASE("float") { golden_pixel_block<float>(); }
}

TEST_CASE("PixelSNAIL TopTiny matches rosinality's PixelSNAIL in PyTorch: logits and every parameter gradient") {
  SUBCASE("double") { golden_model<double, models::TopTiny>("top."); }
  SUBCASE("float") { golden_model<float, models::TopTiny>("top."); }
}

TEST_CASE("PixelSNAIL BottomTiny matches rosinality's PixelSNAIL in PyTorch: logits and every parameter gradient") {
  SUBCASE("double") { golden_model<double, models::BottomTiny>("bottom."); }
  SUBCASE("float") { golden_model<float, models::BottomTiny>("bottom."); }
}

// ---------------------------------------------------------------- dropout, sizes, names

TEST_CASE("PixelSNAIL: dropout is reproducible from the dropout generator's state, and off in evaluation") {
  models::PixelSNAIL<float, Cpu, models::TopTiny> m;
  Generator g(51);
  m.init(g);
  Context<Cpu> ctx;
  const Codes codes = random_codes(2, 8, 8, 16, 52);
  const std::uint64_t seed = m.dropout_generator().seed(), offset = m.dropout_generator().offset();
  const Tensor<float> a = m.forward(ctx, codes).clone();
  const std::uint64_t after = m.dropout_generator().offset();
  CHECK(after > offset);
  const Tensor<float> b = m.forward(ctx, codes).clone();  // a fresh mask
  m.dropout_generator().set_state(seed, offset);          // as a resumed run would
  const Tensor<float> c = m.forward(ctx, codes).clone();
  CHECK(m.dropout_generator().offset() == after);
  CHECK(test::max_rel_error(a, c) == 0.0);
  CHECK(test::max_rel_error(a, b) > 0.0);
  ctx.training = false;
  const Tensor<float> e1 = m.forward(ctx, codes).clone();
  const Tensor<float> e2 = m.forward(ctx, codes).clone();
  CHECK(test::max_rel_error(e1, e2) == 0.0);
  CHECK(m.dropout_generator().offset() == after);
}

TEST_CASE("PixelSNAIL: parameter counts of the reference priors, names, fingerprints and bad input") {
  {
    models::PixelSNAIL<float, Cpu, models::TopReference> top;
    const std::int64_t n = top.parameter_count();
    MESSAGE("TopReference parameters: ", n);
    CHECK(n == 84873280);  // rosinality's module (tests/golden/gen_pixelsnail.py --count)
    CHECK(std::abs(static_cast<double>(n) - 84.9e6) < 0.1e6);
  }
  {
    models::PixelSNAIL<float, Cpu, models::BottomReference> bottom;
    const std::int64_t n = bottom.parameter_count();
    MESSAGE("BottomReference parameters: ", n);
    CHECK(n == 89762816);
    CHECK(std::abs(static_cast<double>(n) - 89.8e6) < 0.1e6);
  }
  models::PixelSNAIL<float, Cpu, models::TopTiny> top;
  std::set<std::string> names;
  top.visit([&](std::string_view name, auto&) { names.insert(std::string(name)); });
  for (const char* n : {"horizontal.weight_v", "vertical.bias", "blocks.0.resblocks.1.conv1.weight_v",
                        "blocks.1.key_resblock.conv2.weight_g", "blocks.0.causal_attention.value.bias",
                        "blocks.1.out_resblock.aux_conv.weight_v", "out.0.conv1.weight_g", "out.2.weight_v"}) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }
  models::PixelSNAIL<float, Cpu, models::BottomTiny> bottom;
  names.clear();
  bottom.visit([&](std::string_view name, auto&) { names.insert(std::string(name)); });
  for (const char* n : {"cond_resnet.blocks.0.weight_v", "cond_resnet.blocks.1.conv2.bias",
                        "blocks.0.resblocks.0.condition.weight_g", "blocks.1.out.weight_v", "out.1.bias"}) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }
  CHECK(names.count("blocks.0.resblocks.0.condition.bias") == 0);
  const std::string fp = models::PixelSNAIL<float, Cpu, models::TopSmall>::fingerprint();
  CHECK(fp.rfind("pixelsnail/top_small/", 0) == 0);
  CHECK(fp != models::PixelSNAIL<float, Cpu, models::BottomSmall>::fingerprint());

  Generator g(61);
  bottom.init(g);
  Context<Cpu> ctx;
  const Codes codes = random_codes(1, 8, 8, 16, 62);
  CHECK_THROWS_WITH_AS(bottom.forward(ctx, codes), doctest::Contains("needs the top codes"), Error);
  Codes bad = codes.clone();
  bad[5] = 16;
  const Codes cond = random_codes(1, 4, 4, 16, 63);
  CHECK_THROWS_WITH_AS(bottom.forward(ctx, bad, &cond), doctest::Contains("outside [0, 16)"), Error);
  CHECK_THROWS_WITH_AS(bottom.forward(ctx, random_codes(1, 8, 6, 16, 64), &cond), doctest::Contains("expected codes"),
                       Error);
  top.init(g);
  CHECK_THROWS_WITH_AS(top.forward(ctx, codes, &cond), doctest::Contains("takes no condition"), Error);
}

// The small configurations run in float end to end (oneDNN, the gather, attention) and
// learn: a few Adam steps on one fixed batch of structured codes lower the loss well
// below its start near ln(512). A smoke test of the training path, not a quality claim.
template <class Config>
void check_small_learns(std::int64_t batch, int steps) {
  models::PixelSNAIL<float, Cpu, Config> m;
  Generator g(71);
  m.init(g);
  train::Adam<float> opt(m, {.lr = 2e-3});
  nn::SoftmaxCrossEntropy<float> ce;
  Context<Cpu> ctx;
  const std::int64_t H = Config::height, W = Config::width;
  Codes codes(Shape{batch, H, W}), cond(Shape{batch, H / 2, W / 2});
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < H; ++i)
      for (std::int64_t j = 0; j < W; ++j)
        codes[(b * H + i) * W + j] = static_cast<std::int32_t>((i / 4 + j / 4 + b) % 8);
    for (std::int64_t i = 0; i < H / 2; ++i)
      for (std::int64_t j = 0; j < W / 2; ++j)
        cond[(b * H / 2 + i) * W / 2 + j] = static_cast<std::int32_t>((i / 2 + j / 2 + b) % 8);
  }
  const Codes* c = Config::conditioned ? &cond : nullptr;
  double first = 0, last = 0;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    const double loss = ce.forward(ctx, m.forward(ctx, codes, c), codes);
    REQUIRE(std::isfinite(loss));
    m.backward(ctx, ce.backward(ctx));
    opt.step();
    if (s == 0) first = loss;
    last = loss;
  }
  MESSAGE(std::string(Config::name), ": loss ", first, " -> ", last, " in ", steps, " steps");
  CHECK(first > 5.5);
  CHECK(last < 0.8 * first);
}

TEST_CASE("PixelSNAIL TopSmall and BottomSmall train in float: the loss falls on a fixed batch") {
  check_small_learns<models::TopSmall>(2, 8);
  check_small_learns<models::BottomSmall>(1, 8);
}
