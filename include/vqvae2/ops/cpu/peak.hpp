// The CPU's multiply-add peaks, measured: fp32 FMA (vfmadd231ps) on 512- and 256-bit
// registers and the bf16 dot-product-accumulate (vdpbf16ps: per fp32 lane, two bf16
// products added to an fp32 accumulator). Each kernel runs 16 independent accumulator
// chains (more than latency x ports on the x86 cores we know), so it is bound by
// throughput. benchmarks/bench_peak.cpp reports them as the yardstick for every
// convolution; the programs use measure_peaks() to say when bf16 cannot pay (some CPUs
// issue vdpbf16ps at half the rate of fp32 FMAs, so bf16 convolutions run slower there).
//
// Host code only (GCC target attributes; nothing here is a CUDA kernel).
#pragma once

#include <immintrin.h>

#include <chrono>
#include <cstdint>

namespace vqvae2::ops::cpu {

inline constexpr int kPeakChains = 16;

// Horizontal sum by hand: GCC 12's _mm512_reduce_add_ps warns (-Wuninitialized) inside its header.
__attribute__((target("avx512f"))) inline float sum_lanes(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float r = 0;
  for (float x : lanes) r += x;
  return r;
}

// Each returns a value depending on every chain, so the loop cannot be dropped.
__attribute__((target("avx512f"))) inline float peak_fma512(std::int64_t n) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(0.001f * static_cast<float>(c));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (std::int64_t i = 0; i < n; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kPeakChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return sum_lanes(s);
}

__attribute__((target("avx2,fma"))) inline float peak_fma256(std::int64_t n) {
  __m256 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm256_set1_ps(0.001f * static_cast<float>(c));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.0001f);
  for (std::int64_t i = 0; i < n; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kPeakChains; ++c) s = _mm256_add_ps(s, acc[c]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float r = 0;
  for (float v : lanes) r += v;
  return r;
}

__attribute__((target("avx512f,avx512bf16"))) inline float peak_dpbf16(std::int64_t n) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(0.001f * static_cast<float>(c));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.001f), _mm512_set1_ps(-0.001f));
  for (std::int64_t i = 0; i < n; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kPeakChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return sum_lanes(s);
}

// FLOPs per instruction of each kernel (a multiply-add counts 2).
inline constexpr double kFma512Flops = 2 * 16, kFma256Flops = 2 * 8, kDpbf16Flops = 4 * 16;

inline bool has_avx512f() { return __builtin_cpu_supports("avx512f"); }
inline bool has_fma256() { return __builtin_cpu_supports("fma"); }
inline bool has_avx512bf16() { return __builtin_cpu_supports("avx512bf16"); }

// Single-core peaks in GFLOP/s (0 where the instructions are missing): the best of
// three alternating rounds, so a busy moment or a frequency ramp does not decide the
// comparison; about 30 ms.
struct MultiplyAddPeaks {
  double fp32 = 0;  // the wider of the FMA kernels this CPU has
  double bf16 = 0;
};

inline MultiplyAddPeaks measure_peaks() {
  auto rate = [](float (*kernel)(std::int64_t), double flops_per_instruction) {
    const std::int64_t n = 1 << 17;
    const auto t0 = std::chrono::steady_clock::now();
    volatile float sink = kernel(n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (void)sink;
    return flops_per_instruction * kPeakChains * static_cast<double>(n) / s / 1e9;
  };
  MultiplyAddPeaks p;
  for (int round = 0; round < 3; ++round) {
    double fp32 = 0;
    if (has_avx512f())
      fp32 = rate(peak_fma512, kFma512Flops);
    else if (has_fma256())
      fp32 = rate(peak_fma256, kFma256Flops);
    p.fp32 = fp32 > p.fp32 ? fp32 : p.fp32;
    if (has_avx512bf16()) {
      const double bf16 = rate(peak_dpbf16, kDpbf16Flops);
      p.bf16 = bf16 > p.bf16 ? bf16 : p.bf16;
    }
  }
  return p;
}

}  // namespace vqvae2::ops::cpu
