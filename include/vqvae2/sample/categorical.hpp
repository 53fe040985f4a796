// Drawing one code from a row of logits, reproducibly: the uniform number for
// (sample s, position p) is Philox(seed, counter = s * positions + p, stream 3),
// independent of batch size, of the order positions are visited and of which
// sampler (naive or cached) produced the logits. The draw is an inverse CDF in
// double over exp((logit - max) / temperature), restricted to the top-k logits
// (ties broken by the lower code), so two samplers whose logits agree to float
// rounding draw the same code unless u falls within that rounding of a CDF step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"

namespace vqvae2::sample {

struct SampleOptions {
  double temperature = 1.0;
  int top_k = 0;  // 0: all classes
  std::uint64_t seed = 1;

  // One clear sentence for a bad option; n_class is the prior's number of codes.
  void validate(int n_class) const {
    VQVAE2_CHECK(std::isfinite(temperature) && temperature > 0,
                 "sampling: the temperature must be a positive number, got ", temperature, ".");
    VQVAE2_CHECK(top_k >= 0 && top_k <= n_class, "sampling: top-k must be between 1 and ", n_class,
                 " (or 0 for all codes), got ", top_k, ".");
  }
};

// The uniform in (0, 1] that decides the code of sample `sample` at raster position `position`.
inline double sampling_uniform(std::uint64_t seed, std::int64_t sample, std::int64_t position, std::int64_t positions) {
  const std::uint64_t counter =
      static_cast<std::uint64_t>(sample) * static_cast<std::uint64_t>(positions) + static_cast<std::uint64_t>(position);
  PhiloxBlock b = philox4x32_10(counter, 3, seed);
  // 53 random bits: (k + 1) / 2^53 in (0, 1].
  const std::uint64_t bits = ((static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1]) >> 11;
  return (static_cast<double>(bits) + 1.0) * (1.0 / 9007199254740992.0);
}

// Reusable scratch so that a draw allocates nothing after the first.
struct DrawScratch {
  std::vector<double> weight;
  std::vector<int> order;
};

// Draws a code from n logits read with a stride (logits[k * stride], k < n).
template <class T>
int draw_code(const T* logits, std::int64_t stride, int n, const SampleOptions& opt, double u, DrawScratch& scratch) {
  scratch.weight.resize(static_cast<std::size_t>(n));
  double max_logit = -INFINITY;
  for (int k = 0; k < n; ++k) max_logit = std::max(max_logit, static_cast<double>(logits[k * stride]));
  VQVAE2_CHECK(std::isfinite(max_logit), "sampling: the prior produced a non-finite logit.");
  const double inv_t = 1.0 / opt.temperature;
  for (int k = 0; k < n; ++k)
    scratch.weight[static_cast<std::size_t>(k)] =
        std::exp((static_cast<double>(logits[k * stride]) - max_logit) * inv_t);
  if (opt.top_k > 0 && opt.top_k < n) {
    // Keep the k largest logits; a tie at the k-th value keeps the lower codes.
    scratch.order.resize(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) scratch.order[static_cast<std::size_t>(k)] = k;
    auto larger = [&](int a, int b) {
      const double la = static_cast<double>(logits[a * stride]), lb = static_cast<double>(logits[b * stride]);
      return la > lb || (la == lb && a < b);
    };
    std::nth_element(scratch.order.begin(), scratch.order.begin() + (opt.top_k - 1), scratch.order.end(), larger);
    const int kth = scratch.order[static_cast<std::size_t>(opt.top_k - 1)];
    for (int k = 0; k < n; ++k)
      if (larger(kth, k)) scratch.weight[static_cast<std::size_t>(k)] = 0.0;
  }
  double total = 0;
  for (int k = 0; k < n; ++k) total += scratch.weight[static_cast<std::size_t>(k)];
  const double target = u * total;
  double cum = 0;
  int last = 0;
  for (int k = 0; k < n; ++k) {
    const double w = scratch.weight[static_cast<std::size_t>(k)];
    if (w <= 0) continue;
    cum += w;
    last = k;
    if (cum >= target) return k;
  }
  return last;  // u * total rounded above the final sum
}

}  // namespace vqvae2::sample
