// Convolution benchmarks at the VQ-VAE-2 / PixelSNAIL shapes, batch 8, 2 OpenMP threads.
// Fwd = the layer's forward; Bwd = backward-data + backward-weights (+bias, accumulating),
// counted as twice the forward FLOPs. benchmarks/compare_pytorch.py times the same
// shapes in PyTorch and prints the ratio.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "vqvae2/nn/conv2d.hpp"
#include "vqvae2/nn/conv_transpose2d.hpp"

using namespace vqvae2;

namespace {

constexpr std::int64_t kBatch = 8;

Context<Cpu>& bench_context() {
  static Context<Cpu> ctx(2);
  return ctx;
}

Tensor<float> random(const Shape& s, std::uint64_t seed) {
  Tensor<float> t(s);
  Generator g(seed);
  g.uniform(t, -1.0f, 1.0f);
  return t;
}

struct ConvSpec {
  int in, out, k, h, w;  // square kernel, input h x w
  ops::ConvGeometry g;
  bool transposed = false;
};

// Multiply-adds x 2 of the forward pass.
double forward_flops(const ConvSpec& s) {
  if (s.transposed) return 2.0 * kBatch * s.in * s.out * s.k * s.k * s.h * s.w;  // per input pixel
  const double oh = static_cast<double>(s.g.conv_out_h(s.h, s.k)), ow = static_cast<double>(s.g.conv_out_w(s.w, s.k));
  return 2.0 * kBatch * s.in * s.out * s.k * s.k * oh * ow;
}

template <class Layer>
void run(benchmark::State& state, const ConvSpec& s, bool backward, ops::onednn::ConvLayout layout) {
  auto& ctx = bench_context();
  ops::onednn::conv_layout() = layout;
  Layer layer(s.in, s.out, s.k, s.k, s.g);
  Generator gen(1);
  layer.init(gen);
  Tensor<float> x = random(nchw(kBatch, s.in, s.h, s.w), 2);
  const Tensor<float>& y = layer.forward(ctx, x);
  Tensor<float> dy = random(y.shape(), 3), dx(x.shape());
  auto* bias_grad = &layer.bias().grad;
  for (auto _ : state) {
    if (!backward) {
      benchmark::DoNotOptimize(layer.forward(ctx, x).data());
    } else if constexpr (std::is_same_v<Layer, nn::Conv2d<float>>) {
      // What Conv2d::backward does, without needing a fresh forward per iteration.
      ops::conv2d_backward(ctx, x, layer.weight().value, dy, dx, layer.weight().grad, bias_grad, s.g, true);
    } else {
      ops::conv_transpose2d_backward(ctx, x, layer.weight().value, dy, dx, layer.weight().grad, bias_grad, s.g, true);
    }
    benchmark::ClobberMemory();
  }
  const double flops = forward_flops(s) * (backward ? 2.0 : 1.0);
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  ops::onednn::conv_layout() = ops::onednn::ConvLayout::automatic;
}

// VQVAE2_CONV_LAYOUT=blocked|plain|channels_last forces one layout choice for the layout study.
ops::onednn::ConvLayout layout_from_env() { return ops::onednn::conv_layout_from_env(); }

const auto kPad1 = ops::ConvGeometry::symmetric(1, 1);
const auto kDown = ops::ConvGeometry::symmetric(2, 1);
// PixelSNAIL causal 5x5: pad top 4, bottom 0, left 2, right 2.
const auto kCausal = ops::ConvGeometry{1, 1, 4, 0, 2, 2};

#define VQVAE2_CONV_BENCH(name, Layer, spec)                                                     \
  void BM_##name##_Fwd(benchmark::State& st) { run<Layer>(st, spec, false, layout_from_env()); } \
  void BM_##name##_Bwd(benchmark::State& st) { run<Layer>(st, spec, true, layout_from_env()); }  \
  BENCHMARK(BM_##name##_Fwd)->UseRealTime()->Unit(benchmark::kMillisecond);                      \
  BENCHMARK(BM_##name##_Bwd)->UseRealTime()->Unit(benchmark::kMillisecond);

VQVAE2_CONV_BENCH(Conv2d_3x3_128to128_64x64, nn::Conv2d<float>, (ConvSpec{128, 128, 3, 64, 64, kPad1}))
VQVAE2_CONV_BENCH(Conv2d_3x3_128to32_64x64, nn::Conv2d<float>, (ConvSpec{128, 32, 3, 64, 64, kPad1}))
VQVAE2_CONV_BENCH(Conv2d_4x4s2_1to64_256x256, nn::Conv2d<float>, (ConvSpec{1, 64, 4, 256, 256, kDown}))
VQVAE2_CONV_BENCH(Conv2d_4x4s2_64to128_128x128, nn::Conv2d<float>, (ConvSpec{64, 128, 4, 128, 128, kDown}))
VQVAE2_CONV_BENCH(Conv2d_4x4s2_128to64_64x64, nn::Conv2d<float>, (ConvSpec{128, 64, 4, 64, 64, kDown}))
VQVAE2_CONV_BENCH(Conv2d_5x5causal_256to256_32x32, nn::Conv2d<float>, (ConvSpec{256, 256, 5, 32, 32, kCausal}))
VQVAE2_CONV_BENCH(ConvTranspose2d_4x4s2_128to64_64x64, nn::ConvTranspose2d<float>,
                  (ConvSpec{128, 64, 4, 64, 64, kDown, true}))
VQVAE2_CONV_BENCH(ConvTranspose2d_4x4s2_64to1_128x128, nn::ConvTranspose2d<float>,
                  (ConvSpec{64, 1, 4, 128, 128, kDown, true}))
VQVAE2_CONV_BENCH(ConvTranspose2d_4x4s2_64to64_32x32, nn::ConvTranspose2d<float>,
                  (ConvSpec{64, 64, 4, 32, 32, kDown, true}))

// The plain-layout alternative (no reorders, oneDNN's NCHW kernels), for the layout decision.
void BM_Conv2d_3x3_128to128_64x64_PlainFwd(benchmark::State& st) {
  run<nn::Conv2d<float>>(st, ConvSpec{128, 128, 3, 64, 64, kPad1}, false, ops::onednn::ConvLayout::plain);
}
void BM_Conv2d_3x3_128to128_64x64_PlainBwd(benchmark::State& st) {
  run<nn::Conv2d<float>>(st, ConvSpec{128, 128, 3, 64, 64, kPad1}, true, ops::onednn::ConvLayout::plain);
}
BENCHMARK(BM_Conv2d_3x3_128to128_64x64_PlainFwd)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Conv2d_3x3_128to128_64x64_PlainBwd)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
