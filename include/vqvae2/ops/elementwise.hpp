// Element-wise math, written once as VQVAE2_HD functors: a CPU loop
// (ops/cpu/map.hpp) and a CUDA kernel apply the same arithmetic, so the CPU
// tests exercise the GPU's formulas too.
//
// Activations are structs with two static members:
//   T forward(T x)                the activation,
//   T backward(T y, T dy)         dL/dx from the OUTPUT y and dL/dy,
// so a layer needs to keep only its own output for backward. The float
// exponential is our own polynomial: std::exp does not vectorise without
// -ffast-math, and these loops run over every activation of every step.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "vqvae2/core/device.hpp"

namespace vqvae2::ops {

namespace math {

namespace detail {
VQVAE2_HD inline std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
VQVAE2_HD inline float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
}  // namespace detail

// Float exp and expm1, branch-free so that they vectorise. x = n ln2 + r
// with |r| <= ln2/2; exp(r) - 1 = r q(r) by the Taylor series to r^7
// (truncation r^8/8! < 6e-9 relative, below float's epsilon). 2^n is built
// from exponent bits, in two halves so that n = 128 and n = -149 stay in
// range. The rounding constant 1.5 * 2^23 turns x/ln2 into an integer without
// a float-to-int conversion (which NaN would make undefined).
struct ExpParts {
  float em1_r;   // exp(r) - 1
  float s1, s2;  // 2^n = s1 * s2, each a normal float
};
VQVAE2_HD inline ExpParts exp_parts(float x) {
  const float hi = 88.72283f, lo = -103.0f;    // exp overflows above hi and rounds to 0 below lo
  float xc = x > hi ? hi : (x < lo ? lo : x);  // NaN fails both comparisons and stays NaN
  const float round_magic = 12582912.0f;
  float t = xc * 1.44269504088896341f + round_magic;
  float n = t - round_magic;
  float r = xc - n * 0.693359375f;  // ln2 in two parts: n * 0.693359375 is exact
  r = r - n * -2.12194440e-4f;
  float q = 1.0f / 5040.0f;
  q = q * r + 1.0f / 720.0f;
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  q = q * r + 1.0f;
  auto k = static_cast<std::int32_t>(detail::float_bits(t) - detail::float_bits(round_magic));  // n
  std::int32_t k1 = k >> 1, k2 = k - k1;
  float s1 = detail::bits_float(static_cast<std::uint32_t>(k1 + 127) << 23);
  float s2 = detail::bits_float(static_cast<std::uint32_t>(k2 + 127) << 23);
  return ExpParts{q * r, s1, s2};
}

// exp(x) within ~2 ulp; 0 below -103, inf above 88.72.
VQVAE2_HD inline float exp_float(float x) {
  ExpParts e = exp_parts(x);
  float v = (e.em1_r + 1.0f) * e.s1 * e.s2;  // left to right: no intermediate overflow at n = 128
  v = x < -103.0f ? 0.0f : v;
  return x > 88.72283f ? INFINITY : v;
}

// expm1(x) = 2^n (exp(r) - 1) + (2^n - 1): for |x| < ln2/2 (n = 0) this is
// exp(r) - 1 itself, so small arguments keep their relative precision. Above
// 64 the -1 no longer matters and exp's overflow-safe order is used.
VQVAE2_HD inline float expm1_float(float x) {
  ExpParts e = exp_parts(x);
  float s = e.s1 * e.s2;
  float v = s * e.em1_r + (s - 1.0f);
  float big = (e.em1_r + 1.0f) * e.s1 * e.s2;
  v = x > 64.0f ? big : v;
  return x > 88.72283f ? INFINITY : v;
}

// exp, expm1, sigmoid, tanh for any scalar: float takes the vectorisable code
// above, double (the gradient checks) the standard library.
template <class T>
VQVAE2_HD inline T exp(T x) {
  return std::exp(x);
}
template <>
VQVAE2_HD inline float exp<float>(float x) {
  return exp_float(x);
}
template <class T>
VQVAE2_HD inline T expm1(T x) {
  return std::expm1(x);
}
template <>
VQVAE2_HD inline float expm1<float>(float x) {
  return expm1_float(x);
}

template <class T>
VQVAE2_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + math::exp(-x));
}

// tanh(|x|) = -m / (2 + m) with m = expm1(-2|x|): no cancellation near zero,
// and m -> -1 gives 1 for large |x|.
template <class T>
VQVAE2_HD inline T tanh(T x) {
  T a = x < T(0) ? -x : x;
  T m = math::expm1(T(-2) * a);
  T t = -m / (T(2) + m);
  return x < T(0) ? -t : t;
}
template <>
VQVAE2_HD inline double tanh<double>(double x) {
  return std::tanh(x);
}

}  // namespace math

// ---- activations (name: used in the layers' error messages) ----

struct Relu {
  static constexpr const char* name = "nn::ReLU";
  template <class T>
  VQVAE2_HD static T forward(T x) {
    return x > T(0) ? x : T(0);
  }
  // Select rather than multiply, so that an infinite dy of a dead unit gives 0 like PyTorch.
  template <class T>
  VQVAE2_HD static T backward(T y, T dy) {
    return y > T(0) ? dy : T(0);
  }
};

// ELU with alpha = 1: x for x > 0, expm1(x) otherwise; the derivative
// exp(x) = y + 1 on the negative side.
struct Elu {
  static constexpr const char* name = "nn::ELU";
  template <class T>
  VQVAE2_HD static T forward(T x) {
    return x > T(0) ? x : math::expm1(x);
  }
  template <class T>
  VQVAE2_HD static T backward(T y, T dy) {
    return y > T(0) ? dy : dy * (y + T(1));
  }
};

struct Sigmoid {
  static constexpr const char* name = "nn::Sigmoid";
  template <class T>
  VQVAE2_HD static T forward(T x) {
    return math::sigmoid(x);
  }
  template <class T>
  VQVAE2_HD static T backward(T y, T dy) {
    return dy * y * (T(1) - y);
  }
};

struct Tanh {
  static constexpr const char* name = "nn::Tanh";
  template <class T>
  VQVAE2_HD static T forward(T x) {
    return math::tanh(x);
  }
  template <class T>
  VQVAE2_HD static T backward(T y, T dy) {
    return dy * (T(1) - y * y);
  }
};

// Adapters from an activation to the callables the map loops take.
template <class Act>
struct ForwardOf {
  template <class T>
  VQVAE2_HD T operator()(T x) const {
    return Act::forward(x);
  }
};
template <class Act>
struct BackwardOf {
  template <class T>
  VQVAE2_HD T operator()(T y, T dy) const {
    return Act::backward(y, dy);
  }
};

// ---- binary and scaling functors ----

struct Plus {
  template <class T>
  VQVAE2_HD T operator()(T a, T b) const {
    return a + b;
  }
};
struct Minus {
  template <class T>
  VQVAE2_HD T operator()(T a, T b) const {
    return a - b;
  }
};
struct Times {
  template <class T>
  VQVAE2_HD T operator()(T a, T b) const {
    return a * b;
  }
};
template <class T>
struct Scale {
  T s;
  VQVAE2_HD T operator()(T a) const { return s * a; }
};
// a + s * b: accumulation of a scaled term (axpy).
template <class T>
struct PlusScaled {
  T s;
  VQVAE2_HD T operator()(T a, T b) const { return a + s * b; }
};

// ---- gated linear unit: out = a * sigmoid(b) ----

struct Glu {
  template <class T>
  VQVAE2_HD static T forward(T a, T b) {
    return a * math::sigmoid(b);
  }
  // dL/da = dy * s, dL/db = dy * a * s * (1 - s), s = sigmoid(b).
  template <class T>
  VQVAE2_HD static void backward(T a, T b, T dy, T& da, T& db) {
    T s = math::sigmoid(b);
    da = dy * s;
    db = dy * a * s * (T(1) - s);
  }
};

}  // namespace vqvae2::ops
