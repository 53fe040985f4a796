// PixelSNAIL's causal attention at the top prior's shape: batch 8, 32x32 map (L = 1024),
// query [out, background] = 258 channels, key [input, out, background] = 514 channels,
// 128 channels in 8 heads of 16, training mode (dropout 0.1 on the probabilities), 2 threads.
//
// FLOPs counted: the three projections (2*M*C*(Cq + 2*Ck)) plus q k^T and p v over the
// unmasked lower triangle only (2 * 2*B*L*(L-1)/2*C). Backward counts twice that (input
// and weight gradients; dP, dV, dQ, dK), not the recomputed scores, so its rate is the
// useful work per second.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "vqvae2/nn/causal_attention.hpp"

using namespace vqvae2;

namespace {

constexpr std::int64_t kBatch = 8, kSide = 32, kQuery = 258, kKey = 514, kChannel = 128, kHeads = 8;

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

double forward_flops() {
  const double L = kSide * kSide, M = kBatch * L;
  const double projections = 2.0 * M * kChannel * (kQuery + 2 * kKey);
  const double core = 2.0 * (2.0 * kBatch * (L * (L - 1) / 2) * kChannel);
  return projections + core;
}

struct Fixture {
  nn::CausalAttention<float> att{kQuery, kKey, kChannel, kHeads, 0.1};
  Tensor<float> query = random(nchw(kBatch, kQuery, kSide, kSide), 2);
  Tensor<float> key = random(nchw(kBatch, kKey, kSide, kSide), 3);
  Tensor<float> dy = random(nchw(kBatch, kChannel, kSide, kSide), 4);
  Fixture() {
    Generator g(1);
    att.init(g);
  }
};

void BM_CausalAttention_32x32_Fwd(benchmark::State& state) {
  auto& ctx = bench_context();
  ctx.training = true;
  Fixture f;
  f.att.forward(ctx, f.query, f.key);  // first step allocates
  for (auto _ : state) benchmark::DoNotOptimize(f.att.forward(ctx, f.query, f.key).data());
  state.counters["FLOPS"] = benchmark::Counter(forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_CausalAttention_32x32_Bwd(benchmark::State& state) {
  auto& ctx = bench_context();
  ctx.training = true;
  Fixture f;
  f.att.forward(ctx, f.query, f.key);
  f.att.backward(ctx, f.dy);
  for (auto _ : state) {
    // The linear layers release their inputs in backward, so every backward needs its forward.
    state.PauseTiming();
    f.att.forward(ctx, f.query, f.key);
    state.ResumeTiming();
    benchmark::DoNotOptimize(f.att.backward(ctx, f.dy).data());
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * forward_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_CausalAttention_32x32_Fwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CausalAttention_32x32_Bwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
