// Vector quantiser at the bottom level of the OASIS model: 64 dims, 512 codes, 64x64 code
// maps, batch 8 and 32, 2 OpenMP threads. FLOPs count the distance GEMM only
// (2 * rows * 64 * 512), the part that dominates; the rest is O(rows * 64).
#include <benchmark/benchmark.h>

#include <cstdint>

#include "vqvae2/vq/vector_quantizer.hpp"

using namespace vqvae2;

namespace {

constexpr int kDim = 64, kCodes = 512, kSide = 64;
using Quantizer = vq::VectorQuantizer<float, Cpu, kDim, kCodes>;

Context<Cpu>& bench_context() {
  static Context<Cpu> ctx(2);
  return ctx;
}

// Encoder-like input: rows near (not on) the codes, so the assignment spreads over the book.
Tensor<float> encoder_output(const Quantizer& vq, std::int64_t batch) {
  Tensor<float> z(nchw(batch, kDim, kSide, kSide));
  Generator g(2);
  g.normal(z, 0.0f, 0.5f);
  const std::int64_t hw = kSide * kSide;
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t p = 0; p < hw; ++p) {
      const std::int64_t k = (n * hw + p) * 7919 % kCodes;
      for (int d = 0; d < kDim; ++d) z[(n * kDim + d) * hw + p] += const_cast<Quantizer&>(vq).embed()[d * kCodes + k];
    }
  return z;
}

void set_counters(benchmark::State& state, std::int64_t batch) {
  const double rows = static_cast<double>(batch * kSide * kSide);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * kDim * kCodes * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["img/s"] =
      benchmark::Counter(static_cast<double>(batch * state.iterations()), benchmark::Counter::kIsRate);
}

void BM_VqForwardTrain(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  auto& ctx = bench_context();
  Quantizer vq;
  Generator g(1);
  vq.init(g);
  Tensor<float> z = encoder_output(vq, batch);
  ctx.training = true;
  for (auto _ : state) benchmark::DoNotOptimize(vq.forward(ctx, z).data());
  state.counters["usage"] = static_cast<double>(vq.code_usage());
  set_counters(state, batch);
}

void BM_VqForwardEval(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  auto& ctx = bench_context();
  Quantizer vq;
  Generator g(1);
  vq.init(g);
  Tensor<float> z = encoder_output(vq, batch);
  ctx.training = false;
  for (auto _ : state) benchmark::DoNotOptimize(vq.forward(ctx, z).data());
  ctx.training = true;
  set_counters(state, batch);
}

void BM_VqBackward(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  auto& ctx = bench_context();
  Quantizer vq;
  Generator g(1);
  vq.init(g);
  Tensor<float> z = encoder_output(vq, batch);
  const Tensor<float>& q = vq.forward(ctx, z);
  for (auto _ : state) benchmark::DoNotOptimize(vq.backward(ctx, q, 0.25f).data());
  state.counters["GB/s"] =
      benchmark::Counter(3.0 * static_cast<double>(z.bytes()) * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_VqForwardTrain)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_VqForwardEval)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_VqBackward)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
