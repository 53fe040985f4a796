// The machine's multiply-add peaks, the limit for every convolution benchmark: the
// kernels of ops/cpu/peak.hpp (fp32 FMA on 512- and 256-bit registers, bf16
// vdpbf16ps on 512-bit ones, 16 independent chains each) on 1 and 2 threads.
//
// Registered names (stable):
//   Peak_FP32_FMA512/threads:T/real_time   FLOPS = 2 per lane (16 lanes) per instruction
//   Peak_FP32_FMA256/threads:T/real_time   FLOPS = 2 per lane (8 lanes)
//   Peak_BF16_DP512/threads:T/real_time    FLOPS = 4 per fp32 lane (2 multiply-adds), 16 lanes
// T in {1, 2}. A case whose instructions this CPU lacks reports an error and no counter.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>

#include "vqvae2/ops/cpu/peak.hpp"

namespace {

using namespace vqvae2::ops::cpu;

constexpr std::int64_t kIterations = 1 << 20;  // per thread per benchmark iteration

template <float (*Kernel)(std::int64_t)>
void run_peak(benchmark::State& state, bool supported, double flops_per_instruction) {
  if (!supported) {
    state.SkipWithError("this CPU lacks the instructions");
    return;
  }
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += Kernel(kIterations);
    benchmark::DoNotOptimize(sink);
  }
  state.counters["FLOPS"] = benchmark::Counter(flops_per_instruction * kPeakChains * kIterations * threads,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Peak_FP32_FMA512(benchmark::State& s) { run_peak<peak_fma512>(s, has_avx512f(), kFma512Flops); }
void BM_Peak_FP32_FMA256(benchmark::State& s) { run_peak<peak_fma256>(s, has_fma256(), kFma256Flops); }
void BM_Peak_BF16_DP512(benchmark::State& s) { run_peak<peak_dpbf16>(s, has_avx512bf16(), kDpbf16Flops); }

}  // namespace

BENCHMARK(BM_Peak_FP32_FMA512)->Name("Peak_FP32_FMA512")->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_Peak_FP32_FMA256)->Name("Peak_FP32_FMA256")->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_Peak_BF16_DP512)->Name("Peak_BF16_DP512")->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK_MAIN();
