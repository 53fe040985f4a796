// --precision for the programs: fp32 or bf16 (core/precision.hpp), decided once at
// start-up with one sentence where this CPU changes what the flag means.
#pragma once

#include <cstdio>
#include <string>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/precision.hpp"
#include "vqvae2/ops/cpu/conv_dnnl.hpp"
#include "vqvae2/ops/cpu/peak.hpp"

namespace cli {

inline constexpr const char* kPrecisionHelp =
    "fp32, or bf16 (bf16 convolution inputs, fp32 accumulation, weights, optimiser, quantiser and losses)";

// The precision to run. Without AVX-512 BF16, bf16 runs in fp32 (said once). Where
// vdpbf16ps is not clearly faster than fp32 FMAs (measured, ~30 ms; some CPUs issue it
// at half their FMA rate) bf16 still runs as asked, with a note.
inline vqvae2::Precision resolve_precision(const char* program, const std::string& value) {
  const auto p = vqvae2::parse_precision(value);
  VQVAE2_CHECK(p.has_value(), program, ": --precision must be fp32 or bf16, got '", value, "'.");
  if (*p == vqvae2::Precision::fp32) return *p;
  if (!vqvae2::ops::onednn::bf16_native()) {
    std::fprintf(stderr, "%s: this CPU has no AVX-512 BF16 (vdpbf16ps), so --precision bf16 runs in fp32.\n", program);
    return vqvae2::Precision::fp32;
  }
  const auto peaks = vqvae2::ops::cpu::measure_peaks();
  if (peaks.bf16 < 1.25 * peaks.fp32)
    std::fprintf(stderr,
                 "%s: note: this CPU's bf16 multiply-adds (vdpbf16ps) peak at %.0f GFLOP/s per core against %.0f for "
                 "fp32 FMAs (measured now), so bf16 convolutions are unlikely to beat fp32 here.\n",
                 program, peaks.bf16, peaks.fp32);
  return *p;
}

}  // namespace cli
