// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011). Value i of
// a draw depends only on (seed, offset, i), so a CPU loop and a CUDA kernel
// produce the same numbers, and a run resumed from a checkpoint (which stores
// the offset) continues the same stream.
#pragma once

#include <cmath>
#include <cstdint>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2 {

struct PhiloxBlock {
  std::uint32_t v[4];
};

VQVAE2_HD inline PhiloxBlock philox4x32_10(std::uint64_t counter_lo, std::uint64_t counter_hi, std::uint64_t key) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  std::uint32_t c0 = static_cast<std::uint32_t>(counter_lo), c1 = static_cast<std::uint32_t>(counter_lo >> 32);
  std::uint32_t c2 = static_cast<std::uint32_t>(counter_hi), c3 = static_cast<std::uint32_t>(counter_hi >> 32);
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c0;
    std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c2;
    std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() in Box-Muller is safe.
VQVAE2_HD inline float uint_to_unit(std::uint32_t x) { return (static_cast<float>(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }

// Element-wise draws: element i of a call with (seed, offset, stream) uses counter
// (i / 4 + offset, stream) and lane i % 4. Normal draws pair lanes (0,1), (2,3).
VQVAE2_HD inline float philox_uniform(std::uint64_t seed, std::uint64_t offset, std::uint64_t i) {
  PhiloxBlock b = philox4x32_10(offset + i / 4, 0, seed);
  return uint_to_unit(b.v[i % 4]);
}

VQVAE2_HD inline float philox_normal(std::uint64_t seed, std::uint64_t offset, std::uint64_t i) {
  PhiloxBlock b = philox4x32_10(offset + i / 4, 1, seed);
  int lane = static_cast<int>(i % 4);
  float u1 = uint_to_unit(b.v[lane & 2]);
  float u2 = uint_to_unit(b.v[(lane & 2) + 1]);
  float r = std::sqrt(-2.0f * std::log(u1));
  float theta = 6.28318530717958647692f * u2;
  return (lane & 1) ? r * std::sin(theta) : r * std::cos(theta);
}

// A generator: a seed and a position in its stream. Each fill consumes
// ceil(n / 4) counters, so successive fills draw fresh numbers.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0x5EEDULL) : seed_(seed) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  void set_state(std::uint64_t seed, std::uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }

  // Reserves n values and returns the offset to pass to philox_*.
  std::uint64_t reserve(std::uint64_t n) {
    std::uint64_t o = offset_;
    offset_ += (n + 3) / 4;
    return o;
  }

  template <class T>
  void uniform(Tensor<T, Cpu>& t, T lo, T hi) {
    std::uint64_t o = reserve(static_cast<std::uint64_t>(t.numel()));
    T* p = t.data();
    for (std::int64_t i = 0, n = t.numel(); i < n; ++i)
      p[i] = lo + (hi - lo) * static_cast<T>(philox_uniform(seed_, o, static_cast<std::uint64_t>(i)));
  }
  template <class T>
  void normal(Tensor<T, Cpu>& t, T mean, T stddev) {
    std::uint64_t o = reserve(static_cast<std::uint64_t>(t.numel()));
    T* p = t.data();
    for (std::int64_t i = 0, n = t.numel(); i < n; ++i)
      p[i] = mean + stddev * static_cast<T>(philox_normal(seed_, o, static_cast<std::uint64_t>(i)));
  }
  // One uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) {
    std::uint64_t o = reserve(2);
    PhiloxBlock b = philox4x32_10(o, 2, seed_);
    std::uint64_t x = (static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1];
    return x % n;
  }
  float uniform01() { return philox_uniform(seed_, reserve(1), 0); }

 private:
  std::uint64_t seed_;
  std::uint64_t offset_ = 0;
};

}  // namespace vqvae2
