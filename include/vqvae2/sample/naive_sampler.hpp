// The reference sampler: for every raster position the whole prior runs again on
// the codes drawn so far, and only that position's logits are used. Correct by
// construction (the prior's causality makes later, not yet drawn codes irrelevant)
// and slow: H*W full forwards per batch. It is the yardstick the cached sampler
// (sample/cached_sampler.hpp) is held to, code for code.
#pragma once

#include <cstdint>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/sample/categorical.hpp"

namespace vqvae2::sample {

// What to sample: codes [B, H, W] holds the fixed prefix (positions < start, raster
// order) and receives the drawn codes; condition is the top codes for a bottom prior.
// Sample b of the batch draws its numbers as sample first_sample + b, so a set of
// images sampled in batches of any size gets the same codes.
struct SampleRequest {
  Tensor<std::int32_t, Cpu>* codes = nullptr;
  const Tensor<std::int32_t, Cpu>* condition = nullptr;
  std::int64_t start = 0;
  std::int64_t first_sample = 0;
};

template <class Model>
void check_request(const SampleRequest& r, const SampleOptions& opt) {
  using Config = typename Model::ConfigType;
  opt.validate(Config::n_class);
  VQVAE2_CHECK(r.codes && r.codes->rank() == 3 && r.codes->dim(1) == Config::height && r.codes->dim(2) == Config::width,
               "sampling: the code tensor must be [B, ", Config::height, ", ", Config::width, "].");
  const std::int64_t positions = std::int64_t{Config::height} * Config::width;
  VQVAE2_CHECK(r.start >= 0 && r.start <= positions, "sampling: the start position ", r.start,
               " is outside the map of ", positions, " positions.");
  if constexpr (Config::conditioned) {
    VQVAE2_CHECK(r.condition && r.condition->rank() == 3 && r.condition->dim(0) == r.codes->dim(0),
                 "sampling: this prior is conditioned on top codes, and none (or a batch of another size) were given.");
  }
  const std::int32_t* c = r.codes->data();
  for (std::int64_t b = 0; b < r.codes->dim(0); ++b)
    for (std::int64_t p = 0; p < r.start; ++p) {
      const std::int32_t v = c[b * positions + p];
      VQVAE2_CHECK(v >= 0 && v < Config::n_class, "sampling: the fixed code ", v, " at position ", p, " of sample ", b,
                   " is outside [0, ", Config::n_class, ").");
    }
}

template <class Model>
void sample_naive(Context<Cpu>& ctx, Model& model, const SampleRequest& r, const SampleOptions& opt) {
  using Config = typename Model::ConfigType;
  check_request<Model>(r, opt);
  const bool was_training = ctx.training;
  ctx.training = false;
  Tensor<std::int32_t, Cpu>& codes = *r.codes;
  const std::int64_t B = codes.dim(0), positions = std::int64_t{Config::height} * Config::width;
  // Not yet drawn positions hold code 0; causality makes their value irrelevant.
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = r.start; p < positions; ++p) codes[b * positions + p] = 0;
  DrawScratch scratch;
  for (std::int64_t p = r.start; p < positions; ++p) {
    const Tensor<float, Cpu>& logits = model.forward(ctx, codes, r.condition);
    for (std::int64_t b = 0; b < B; ++b) {
      const float* row = logits.data() + b * Config::n_class * positions + p;
      const double u = sampling_uniform(opt.seed, r.first_sample + b, p, positions);
      codes[b * positions + p] = draw_code(row, positions, Config::n_class, opt, u, scratch);
    }
  }
  ctx.training = was_training;
}

}  // namespace vqvae2::sample
