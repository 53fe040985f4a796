// Element-wise layers and the cross-entropy at training sizes: activations
// over 8x128x64x64 (a VQ-VAE feature map), cross-entropy over 8x512x32x32
// (the top prior's logits). Counters: bytes moved per second (each tensor read
// or written once counted once) and elements per second.
#include <benchmark/benchmark.h>

#include <cmath>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/dropout.hpp"
#include "vqvae2/nn/glu.hpp"
#include "vqvae2/nn/loss.hpp"

using namespace vqvae2;
using TensorF = Tensor<float, Cpu>;

namespace {

const Shape kAct = nchw(8, 128, 64, 64);
const Shape kLogits = nchw(8, 512, 32, 32);

TensorF random(const Shape& s, std::uint64_t seed, float scale = 2.0f) {
  TensorF t(s);
  Generator g(seed);
  g.normal(t, 0.0f, scale);
  return t;
}

void set_counters(benchmark::State& state, std::int64_t elements, double bytes_per_element) {
  const auto iters = static_cast<double>(state.iterations());
  state.counters["bytes/s"] =
      benchmark::Counter(iters * static_cast<double>(elements) * bytes_per_element, benchmark::Counter::kIsRate);
  state.counters["elem/s"] = benchmark::Counter(iters * static_cast<double>(elements), benchmark::Counter::kIsRate);
}

template <class Layer>
void activation_forward(benchmark::State& state) {
  Context<Cpu> ctx;
  Layer layer;
  TensorF x = random(kAct, 1);
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(ctx, x).data());
  set_counters(state, x.numel(), 8);  // read x, write y
}

template <class Layer>
void activation_backward(benchmark::State& state) {
  Context<Cpu> ctx;
  Layer layer;
  TensorF x = random(kAct, 1), dy = random(kAct, 2);
  layer.forward(ctx, x);
  for (auto _ : state) benchmark::DoNotOptimize(layer.backward(ctx, dy).data());
  set_counters(state, x.numel(), 12);  // read y and dy, write dx
}

// The plain loop the ELU layer replaces: std::expm1 does not vectorise without -ffast-math.
void elu_forward_scalar_libm(benchmark::State& state) {
  TensorF x = random(kAct, 1), y(kAct);
  for (auto _ : state) {
    const float* xp = x.data();
    float* yp = y.data();
    const std::int64_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) yp[i] = xp[i] > 0 ? xp[i] : std::expm1(xp[i]);
    benchmark::DoNotOptimize(yp);
  }
  set_counters(state, x.numel(), 8);
}

void glu_forward_backward(benchmark::State& state) {
  Context<Cpu> ctx;
  nn::GLU<float> glu;
  TensorF x = random(nchw(8, 256, 64, 64), 3), dy = random(kAct, 4);
  for (auto _ : state) {
    glu.forward(ctx, x);
    benchmark::DoNotOptimize(glu.backward(ctx, dy).data());
  }
  // forward: read 2C, write C; backward: read 2C and C, write 2C (in units of the output size)
  set_counters(state, dy.numel(), 4.0 * (3 + 5));
}

void dropout_forward_backward(benchmark::State& state) {
  Context<Cpu> ctx;
  nn::Dropout<float> drop(0.1);
  TensorF x = random(kAct, 5), dy = random(kAct, 6);
  for (auto _ : state) {
    drop.forward(ctx, x);
    benchmark::DoNotOptimize(drop.backward(ctx, dy).data());
  }
  // forward: read x, write y and the byte mask; backward: read dy and mask, write dx
  set_counters(state, x.numel(), 4 + 4 + 1 + 4 + 1 + 4);
}

void cross_entropy_forward_backward(benchmark::State& state) {
  Context<Cpu> ctx;
  nn::SoftmaxCrossEntropy<float> ce;
  TensorF logits = random(kLogits, 7);
  Tensor<std::int32_t, Cpu> targets(Shape{8, 32, 32});
  for (std::int64_t i = 0; i < targets.numel(); ++i) targets[i] = static_cast<std::int32_t>((i * 7919) % 512);
  double loss = 0;
  for (auto _ : state) {
    loss += ce.forward(ctx, logits, targets);
    benchmark::DoNotOptimize(ce.backward(ctx).data());
  }
  benchmark::DoNotOptimize(loss);
  set_counters(state, logits.numel(), 4 + 4 + 4);  // forward reads logits; backward reads them and writes the gradient
}

void cross_entropy_forward(benchmark::State& state) {
  Context<Cpu> ctx;
  nn::SoftmaxCrossEntropy<float> ce;
  TensorF logits = random(kLogits, 7);
  Tensor<std::int32_t, Cpu> targets(Shape{8, 32, 32});
  for (std::int64_t i = 0; i < targets.numel(); ++i) targets[i] = static_cast<std::int32_t>((i * 7919) % 512);
  for (auto _ : state) benchmark::DoNotOptimize(ce.forward(ctx, logits, targets));
  set_counters(state, logits.numel(), 4);
}

}  // namespace

BENCHMARK(activation_forward<nn::ReLU<float>>)
    ->Name("ReLU/forward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(activation_backward<nn::ReLU<float>>)
    ->Name("ReLU/backward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(activation_forward<nn::ELU<float>>)
    ->Name("ELU/forward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(activation_backward<nn::ELU<float>>)
    ->Name("ELU/backward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(elu_forward_scalar_libm)
    ->Name("ELU/forward_std_expm1_loop/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(activation_forward<nn::Sigmoid<float>>)
    ->Name("Sigmoid/forward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(activation_forward<nn::Tanh<float>>)
    ->Name("Tanh/forward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(glu_forward_backward)->Name("GLU/forward+backward/8x256x64x64")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(dropout_forward_backward)
    ->Name("Dropout0.1/forward+backward/8x128x64x64")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cross_entropy_forward)
    ->Name("CrossEntropy/forward/8x512x32x32")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(cross_entropy_forward_backward)
    ->Name("CrossEntropy/forward+backward/8x512x32x32")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
