// Precision policy of a model's convolutions (and, on the GPU, GEMMs): fp32, or
// bf16 inputs with fp32 accumulation and fp32 outputs. Master weights, optimiser
// state, losses, the quantiser and every element-wise map stay fp32 in both.
//
// A model holds its policy (set_precision) and applies it to the Context for the
// duration of its forward and backward (PrecisionScope), so two models sharing a
// context can run in different precisions. Ops read ctx.precision; a CPU without
// native bf16 multiply-add runs bf16 requests in fp32 (ops::onednn::bf16_native()).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vqvae2 {

enum class Precision : std::uint8_t { fp32, bf16 };

inline const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

inline std::optional<Precision> parse_precision(std::string_view s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  return std::nullopt;
}

// Sets ctx.precision for a scope and restores the previous value.
template <class Context>
class PrecisionScope {
 public:
  PrecisionScope(Context& ctx, Precision p) : ctx_(ctx), saved_(ctx.precision) { ctx.precision = p; }
  ~PrecisionScope() { ctx_.precision = saved_; }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Context& ctx_;
  Precision saved_;
};

}  // namespace vqvae2
