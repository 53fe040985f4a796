// BF16 mixed precision on the CPU (core/precision.hpp, ops/cpu/conv_dnnl.hpp): every
// convolution shape the models use, forward and backward, against double-precision
// results within a bound derived from bf16 rounding; the quantiser untouched by the
// policy; a short training run on real slices reaching the fp32 loss.
//
// The bound. bf16 keeps 8 significant bits, so rounding a float to bf16 (nearest even)
// has relative error at most u = 2^-8. A convolution output is a sum of K products
// x_i w_i; with both factors rounded, |fl(x) fl(w) - x w| <= (2u + u^2) |x w|, and the
// fp32 accumulation of K + 1 terms (products and bias) adds at most gamma = (K+1) e /
// (1 - (K+1) e) times the sum of their magnitudes (e = 2^-24). So each output element
// obeys |got - exact| <= ((2u + u^2)(1 + gamma) + gamma) * A, where A is the same
// convolution applied to |x| and |w| (plus |b|), computed here in double. The same holds
// for backward-data (dy and w rounded) and backward-weights (x and dy rounded).
//
// That bound also holds for fp32, so each check also asks that the error somewhere
// exceeds what fp32 can produce (2^-16 A, about 2^8 times fp32's worst case for these
// sums): the bf16 kernels really ran.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "support/gradcheck.hpp"
#include "support/real_slices.hpp"
#include "support/skip.hpp"
#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/models/pixelsnail_configs.hpp"
#include "vqvae2/models/vqvae2.hpp"
#include "vqvae2/nn/loss.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"

using namespace vqvae2;
using ops::onednn::ConvKey;
using ops::onednn::ConvOp;
using test::random_tensor;
using test::TensorD;

namespace {

constexpr double kBf16U = 1.0 / 256;               // unit roundoff of bf16
constexpr double kF32E = 1.0 / (1 << 24);          // unit roundoff of fp32
constexpr double kBf16Evidence = 1.0 / (1 << 16);  // error/A no fp32 sum of these sizes reaches

bool skip_without_bf16() {
  if (ops::onednn::bf16_native()) return false;
  test::skip_test("this CPU has no AVX-512 BF16 (oneDNN's ISA is below avx512_core_bf16)");
  return true;
}

Tensor<float> to_float(const TensorD& d) {
  Tensor<float> f(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) f[i] = static_cast<float>(d[i]);
  return f;
}
TensorD abs_of(const TensorD& d) {
  TensorD a(d.shape());
  for (std::int64_t i = 0; i < d.numel(); ++i) a[i] = std::abs(d[i]);
  return a;
}

// One convolution layer as the models instantiate it (spatial size aside).
struct ConvShape {
  bool transposed;
  std::int64_t cin, cout, kh, kw;
  ops::ConvGeometry g;
  bool bias;
  std::int64_t h, w;  // the input size the model ran it at
  std::string str() const {
    return std::string(transposed ? "convT " : "conv ") + std::to_string(cin) + "->" + std::to_string(cout) + " " +
           std::to_string(kh) + "x" + std::to_string(kw) + " s" + std::to_string(g.stride_h) + " pad " +
           std::to_string(g.pad_top) + "," + std::to_string(g.pad_bottom) + "," + std::to_string(g.pad_left) + "," +
           std::to_string(g.pad_right) + " at " + std::to_string(h) + "x" + std::to_string(w);
  }
};

// The convolution shapes of this thread's cached plans (one per layer shape, whichever
// op created the plan), and how many of the plans run bf16 inputs.
std::vector<ConvShape> cached_shapes(int* bf16_plans) {
  std::map<std::tuple<bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, int, int, int, int, int, int,
                      std::int64_t, std::int64_t>,
           ConvShape>
      unique;
  *bf16_plans = 0;
  for (const auto& [k, plan] : ops::onednn::conv_state().plans) {
    *bf16_plans += k.bf16;
    const bool t = k.op == ConvOp::tfwd || k.op == ConvOp::tbwd_data || k.op == ConvOp::tbwd_weights;
    const bool has_bias = k.op != ConvOp::bwd_data && k.op != ConvOp::tbwd_data && k.bias;
    auto key = std::make_tuple(t, k.cin, k.cout, k.kh, k.kw, k.g.stride_h, k.g.stride_w, k.g.pad_top, k.g.pad_bottom,
                               k.g.pad_left, k.g.pad_right, k.h, k.w);
    auto [it, fresh] = unique.try_emplace(key, ConvShape{t, k.cin, k.cout, k.kh, k.kw, k.g, has_bias, k.h, k.w});
    if (!fresh) it->second.bias |= has_bias;
  }
  std::vector<ConvShape> out;
  for (auto& [key, s] : unique) out.push_back(s);
  return out;
}

struct BoundCheck {
  double worst = 0;     // max |got - exact| / bound (must be <= 1)
  double evidence = 0;  // max |got - exact| / A (must exceed kBf16Evidence somewhere)
};

// |got - exact| <= c(K) A + slack per element; slack covers fp32 accumulation into prior values.
BoundCheck check_bound(const Tensor<float>& got, const TensorD& exact, const TensorD& a, std::int64_t terms,
                       const TensorD* prior = nullptr) {
  REQUIRE(got.shape() == exact.shape());
  REQUIRE(a.shape() == exact.shape());
  const double k = static_cast<double>(terms + 1) * kF32E, gamma = k / (1 - k);
  const double c = (2 * kBf16U + kBf16U * kBf16U) * (1 + gamma) + gamma;
  BoundCheck r;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - exact[i]);
    const double slack = prior ? 2 * kF32E * (std::abs((*prior)[i]) + std::abs(exact[i])) : 0.0;
    const double bound = c * a[i] + slack;
    if (bound > 0)
      r.worst = std::max(r.worst, err / bound);
    else
      CHECK(err == 0.0);
    if (a[i] > 0) r.evidence = std::max(r.evidence, err / a[i]);
  }
  return r;
}

// Forward, then the fused backward (dx overwritten, dw and db accumulated onto prior
// values, as the layers call it), in bf16, against double on the unrounded inputs.
void check_shape_bf16(const ConvShape& s) {
  CAPTURE(s.str());
  Context<Cpu> ctx;
  ctx.precision = Precision::bf16;
  // Small maps keep the double-precision loops quick; the widest layers (the reference
  // priors' 256 and 512 channels) get smaller ones still.
  const bool wide = s.cin * s.cout >= 256 * 256;
  const std::int64_t h = std::min<std::int64_t>(s.h, wide ? 7 : 12), w = std::min<std::int64_t>(s.w, wide ? 6 : 10);
  const Shape xs = nchw(2, s.cin, h, w);
  const Shape ws = s.transposed ? Shape{s.cin, s.cout, s.kh, s.kw} : Shape{s.cout, s.cin, s.kh, s.kw};
  TensorD x = random_tensor(xs, 11), wt = random_tensor(ws, 12, -0.3, 0.3), b = random_tensor(Shape{s.cout}, 13);
  Tensor<float> xf = to_float(x), wf = to_float(wt), bf = to_float(b);
  const TensorD* bias = s.bias ? &b : nullptr;
  const Tensor<float>* biasf = s.bias ? &bf : nullptr;
  TensorD ax = abs_of(x), aw = abs_of(wt), ab = abs_of(b);

  TensorD y, ay;
  Tensor<float> yf;
  if (s.transposed) {
    ops::reference::conv_transpose2d_forward(x, wt, bias, y, s.g);
    ops::reference::conv_transpose2d_forward(ax, aw, s.bias ? &ab : nullptr, ay, s.g);
    ops::conv_transpose2d_forward(ctx, xf, wf, biasf, yf, s.g);
  } else {
    ops::reference::conv2d_forward(x, wt, bias, y, s.g);
    ops::reference::conv2d_forward(ax, aw, s.bias ? &ab : nullptr, ay, s.g);
    ops::conv2d_forward(ctx, xf, wf, biasf, yf, s.g);
  }
  // Terms per output element: at most cin*kh*kw (conv) or cin*kh*kw (transposed, fewer with stride).
  const std::int64_t data_terms = std::max(s.cin, s.cout) * s.kh * s.kw;
  BoundCheck fwd = check_bound(yf, y, ay, data_terms);
  CHECK(fwd.worst <= 1.0);
  CHECK(fwd.evidence > kBf16Evidence);

  TensorD dy = random_tensor(y.shape(), 14), ady = abs_of(dy);
  Tensor<float> dyf = to_float(dy);
  TensorD dx(xs), adx(xs), dw0 = random_tensor(ws, 15, -2, 2), db0 = random_tensor(Shape{s.cout}, 16, -2, 2);
  TensorD dw = dw0.clone(), db = db0.clone(), adw(ws), adb(Shape{s.cout});
  Tensor<float> dxf(xs), dwf = to_float(dw0), dbf = to_float(db0);
  dxf.fill(99.0f);
  if (s.transposed) {
    ops::reference::conv_transpose2d_backward_data(dy, wt, dx, s.g);
    ops::reference::conv_transpose2d_backward_data(ady, aw, adx, s.g);
    ops::reference::conv_transpose2d_backward_weights(x, dy, dw, s.bias ? &db : nullptr, s.g, true);
    ops::reference::conv_transpose2d_backward_weights(ax, ady, adw, s.bias ? &adb : nullptr, s.g, false);
    ops::conv_transpose2d_backward(ctx, xf, wf, dyf, dxf, dwf, s.bias ? &dbf : nullptr, s.g, true);
  } else {
    ops::reference::conv2d_backward_data(dy, wt, dx, s.g);
    ops::reference::conv2d_backward_data(ady, aw, adx, s.g);
    ops::reference::conv2d_backward_weights(x, dy, dw, s.bias ? &db : nullptr, s.g, true);
    ops::reference::conv2d_backward_weights(ax, ady, adw, s.bias ? &adb : nullptr, s.g, false);
    ops::conv2d_backward(ctx, xf, wf, dyf, dxf, dwf, s.bias ? &dbf : nullptr, s.g, true);
  }
  BoundCheck bd = check_bound(dxf, dx, adx, data_terms);
  CHECK(bd.worst <= 1.0);
  CHECK(bd.evidence > kBf16Evidence);
  // Weight-gradient terms: one per (image, output position) of the convolution.
  const std::int64_t weight_terms = 2 * std::max(h * w, y.dim(2) * y.dim(3));
  BoundCheck bw = check_bound(dwf, dw, adw, weight_terms, &dw0);
  CHECK(bw.worst <= 1.0);
  CHECK(bw.evidence > kBf16Evidence);
  if (s.bias) {
    BoundCheck bb = check_bound(dbf, db, adb, weight_terms, &db0);
    CHECK(bb.worst <= 1.0);
  }
  MESSAGE(s.str() << ": error/bound fwd " << fwd.worst << ", bwd-data " << bd.worst << ", bwd-weights " << bw.worst);
}

// Runs `step` (one forward and backward of a model in bf16) on fresh plan caches and
// checks every convolution shape it used.
template <class Step>
void check_model_shapes(const std::string& name, Step&& step) {
  CAPTURE(name);
  ops::onednn::clear_cache();
  ops::onednn::path_counts() = {};
  step();
  int bf16_plans = 0;
  const std::vector<ConvShape> shapes = cached_shapes(&bf16_plans);
  MESSAGE(name << ": " << shapes.size() << " convolution shapes, " << bf16_plans << " bf16 plans");
  CHECK(bf16_plans > 0);
  // oneDNN has a bf16 kernel for every shape the model uses: none fell back to fp32.
  CHECK(ops::onednn::path_counts().bf16_fallback_plans == 0);
  for (const ConvShape& s : shapes) check_shape_bf16(s);
  ops::onednn::clear_cache();
}

template <class Config>
void vqvae_step_bf16() {
  Context<Cpu> ctx;
  models::VQVAE2<float, Cpu, Config> m;
  Generator g(5);
  m.init(g);
  m.set_precision(Precision::bf16);
  Tensor<float> x(nchw(1, 1, 64, 64));
  g.uniform(x, -1.0f, 1.0f);
  const auto& recon = m.forward(ctx, x);
  Tensor<float> d(recon.shape());
  d.fill(1e-3f);
  m.backward(ctx, d, 0.25);
  CHECK(ctx.precision == Precision::fp32);  // the model's scope restored the context
}

Tensor<std::int32_t> random_codes(const Shape& s, int n_class, std::uint64_t seed) {
  Tensor<std::int32_t> c(s);
  Generator g(seed);
  for (std::int64_t i = 0; i < c.numel(); ++i) c[i] = static_cast<std::int32_t>(g.below(n_class));
  return c;
}

template <class Config>
void prior_step_bf16() {
  Context<Cpu> ctx;
  models::PixelSNAIL<float, Cpu, Config> m;
  Generator g(6);
  m.init(g);
  m.set_precision(Precision::bf16);
  const auto codes = random_codes(Shape{1, Config::height, Config::width}, Config::n_class, 7);
  const auto cond = random_codes(Shape{1, Config::height / 2, Config::width / 2}, Config::n_class, 8);
  const auto& logits = m.forward(ctx, codes, Config::conditioned ? &cond : nullptr);
  Tensor<float> d(logits.shape());
  d.fill(1e-4f);
  m.backward(ctx, d);
}

}  // namespace

TEST_CASE("The policy: bf16 plans exactly where the CPU runs bf16 natively, scopes restore, names parse") {
  CHECK(parse_precision("fp32") == Precision::fp32);
  CHECK(parse_precision("bf16") == Precision::bf16);
  CHECK_FALSE(parse_precision("fp16").has_value());
  Context<Cpu> ctx;
  {
    const PrecisionScope<Context<Cpu>> scope(ctx, Precision::bf16);
    CHECK(ctx.precision == Precision::bf16);
  }
  CHECK(ctx.precision == Precision::fp32);
  ops::onednn::clear_cache();
  Tensor<float> x = to_float(random_tensor(nchw(1, 32, 8, 8), 1)), w = to_float(random_tensor(Shape{32, 32, 3, 3}, 2));
  Tensor<float> y;
  ops::conv2d_forward(ctx, x, w, nullptr, y, ops::ConvGeometry::symmetric(1, 1));
  ctx.precision = Precision::bf16;
  ops::conv2d_forward(ctx, x, w, nullptr, y, ops::ConvGeometry::symmetric(1, 1));
  int fp32_plans = 0, bf16_plans = 0;
  for (const auto& [k, plan] : ops::onednn::conv_state().plans) (k.bf16 ? bf16_plans : fp32_plans) += 1;
  // Without native bf16 both requests share one fp32 plan.
  CHECK(fp32_plans == 1);
  CHECK(bf16_plans == (ops::onednn::bf16_native() ? 1 : 0));
  ops::onednn::clear_cache();
}

TEST_CASE(
    "bf16 convolutions of the VQ-VAE-2, forward and backward, within the bf16 rounding bound (needs AVX-512 BF16)") {
  if (skip_without_bf16()) return;
  check_model_shapes("VQVAE2 small", vqvae_step_bf16<models::Small>);
  check_model_shapes("VQVAE2 oasis256", vqvae_step_bf16<models::Oasis256>);
}

TEST_CASE(
    "bf16 convolutions of the priors, forward and backward, within the bf16 rounding bound (needs AVX-512 BF16)") {
  if (skip_without_bf16()) return;
  check_model_shapes("PixelSNAIL top small", prior_step_bf16<models::TopSmall>);
  check_model_shapes("PixelSNAIL bottom small", prior_step_bf16<models::BottomSmall>);
  check_model_shapes("PixelSNAIL top reference", prior_step_bf16<models::TopReference>);
  check_model_shapes("PixelSNAIL bottom reference", prior_step_bf16<models::BottomReference>);
}

TEST_CASE("The quantiser gives identical codes, outputs and code books under both policies (needs AVX-512 BF16)") {
  if (skip_without_bf16()) return;
  vq::VectorQuantizer<float, Cpu, 64, 512> a, b;
  Generator g(9);
  a.init(g);
  b.visit_buffers([&](std::string_view name, auto& tensor) {
    a.visit_buffers([&](std::string_view other, auto& source) {
      if constexpr (std::is_same_v<std::decay_t<decltype(tensor)>, std::decay_t<decltype(source)>>)
        if (name == other) tensor.copy_from(source);
    });
  });
  Tensor<float> z(nchw(2, 64, 16, 16));
  g.normal(z, 0.0f, 1.0f);
  Context<Cpu> fp32, bf16;
  bf16.precision = Precision::bf16;
  for (int step = 0; step < 3; ++step) {
    const Tensor<float> qa = a.forward(fp32, z).clone();
    const Tensor<float> qb = b.forward(bf16, z).clone();
    REQUIRE(qa.numel() == qb.numel());
    bool same_q = true, same_codes = true;
    for (std::int64_t i = 0; i < qa.numel(); ++i) same_q &= qa[i] == qb[i];
    for (std::int64_t i = 0; i < a.indices().numel(); ++i) same_codes &= a.indices()[i] == b.indices()[i];
    CHECK(same_codes);
    CHECK(same_q);
    CHECK(a.commitment_loss() == b.commitment_loss());
  }
  bool same_books = true;
  for (std::int64_t i = 0; i < a.embed().numel(); ++i) same_books &= a.embed()[i] == b.embed()[i];
  CHECK(same_books);

  // Inside a bf16 VQ-VAE-2 the 1x1 convolutions feeding the quantisers stay fp32.
  ops::onednn::clear_cache();
  vqvae_step_bf16<models::Oasis256>();
  int pinned = 0, bf16_point = 0;
  for (const auto& [k, plan] : ops::onednn::conv_state().plans)
    if (k.kh == 1 && k.kw == 1 && k.cout == 64 && k.op == ConvOp::fwd) (k.bf16 ? bf16_point : pinned) += 1;
  CHECK(pinned == 2);      // quantize_conv_t and quantize_conv_b
  CHECK(bf16_point == 0);  // the residual blocks' 1x1 convolutions have 128 outputs
  ops::onednn::clear_cache();
}

TEST_CASE("bf16 training on real slices reaches the fp32 loss within 5% (needs AVX-512 BF16)") {
  if (skip_without_bf16()) return;
  const auto root = test::real_slice_root();
  if (!root) {
    test::skip_test("no real brain data on this machine (neither ../shared nor mricron-data)");
    return;
  }
  auto set = test::first_train_slices(*root, 16);
  const int steps = 48;
  auto run = [&](Precision p) {
    data::LoaderOptions lo;
    lo.batch_size = 4;
    train::VQVAETrainOptions opt;
    opt.lr = 3e-4;
    Context<Cpu> ctx(2);
    train::VQVAETrainer<models::Small> trainer(ctx, opt);
    trainer.model().set_precision(p);
    data::BatchLoader<float> loader(set, lo);
    std::vector<double> losses;
    for (int s = 0; s < steps; ++s) losses.push_back(trainer.step(loader.next()).loss);
    double tail = 0;
    for (int s = steps - 8; s < steps; ++s) tail += losses[s] / 8;
    return std::make_pair(losses.front(), tail);
  };
  const auto [first32, last32] = run(Precision::fp32);
  const auto [first16, last16] = run(Precision::bf16);
  MESSAGE("loss: fp32 " << first32 << " -> " << last32 << ", bf16 " << first16 << " -> " << last16
                        << " (mean of the last 8 of " << steps << " steps)");
  CHECK(last32 * 3 < first32);  // the run learned something
  // 5%: the two runs start from the same weights and batches; bf16 rounding alone moves
  // the mean of the last 8 losses by about 0.1% here, run-to-run noise of the loss is larger.
  CHECK(std::abs(last16 - last32) <= 0.05 * last32);
}
