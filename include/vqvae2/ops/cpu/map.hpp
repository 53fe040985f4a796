// CPU loops that apply element-wise functors (ops/elementwise.hpp) over
// tensors, and the data-movement ops of the layers in nn/activation.hpp,
// nn/glu.hpp, nn/dropout.hpp and nn/tensor_ops.hpp. A CUDA backend provides
// the same functions for Tensor<T, Cuda> and the layers stay unchanged.
//
// Outputs are never resized here: they may be views into a larger buffer
// (resize would silently detach them), so callers size them and the ops check.
// Every loop is OpenMP-parallel over large tensors and `simd` inside, and
// allocates nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/ops/elementwise.hpp"

namespace vqvae2::ops {

namespace map_detail {

// Below this many elements a parallel region costs more than it saves.
inline constexpr std::int64_t kParallelMin = std::int64_t{1} << 15;
// Inner chunk of the batched loops: both threads get work even when the outer
// count is 1, and a chunk of floats stays within L1/L2.
inline constexpr std::int64_t kChunk = 8192;

template <class A, class B>
void check_numel(const char* op, const Tensor<A, Cpu>& a, const Tensor<B, Cpu>& b) {
  VQVAE2_CHECK(a.numel() == b.numel(), op, ": operands ", a.shape().str(), " and ", b.shape().str(),
               " have different element counts.");
}

// body(b, j0, j1) for b in [0, outer) and [j0, j1) covering [0, inner) in chunks,
// spread over the threads as one flat list of (b, chunk) pairs.
template <class Body>
void parallel_blocks(std::int64_t outer, std::int64_t inner, Body body) {
  if (outer <= 0 || inner <= 0) return;
  const std::int64_t chunks = (inner + kChunk - 1) / kChunk;
  const std::int64_t total = outer * chunks;
#pragma omp parallel for schedule(static) if (outer * inner >= kParallelMin)
  for (std::int64_t t = 0; t < total; ++t) {
    std::int64_t b = t / chunks, c = t % chunks;
    body(b, c * kChunk, std::min(inner, (c + 1) * kChunk));
  }
}

// body(r) for every row r in [0, rows); row_elements sizes the work for the
// parallel-or-not decision.
template <class Body>
void parallel_rows(std::int64_t rows, std::int64_t row_elements, Body body) {
#pragma omp parallel for schedule(static) if (rows * row_elements >= kParallelMin)
  for (std::int64_t r = 0; r < rows; ++r) body(r);
}

inline void check_nchw(const char* op, const Shape& s) {
  VQVAE2_CHECK(s.rank == 4, op, ": expected a 4-D NCHW tensor, got ", s.str(), ".");
}

}  // namespace map_detail

// ---- generic maps ----

// y[i] = f(x[i]); y may be x.
template <class T, class U, class F>
void map(const Tensor<T, Cpu>& x, Tensor<U, Cpu>& y, F f) {
  map_detail::check_numel("ops::map", x, y);
  const T* xp = x.data();
  U* yp = y.data();
  const std::int64_t n = x.numel();
#pragma omp parallel for simd simdlen(16) schedule(static) if (n >= map_detail::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) yp[i] = f(xp[i]);
}

template <class T, class F>
void map_inplace(Tensor<T, Cpu>& x, F f) {
  map(x, x, f);
}

// y[i] = f(a[i], b[i]); y may be a or b.
template <class T, class F>
void zip(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y, F f) {
  map_detail::check_numel("ops::zip", a, b);
  map_detail::check_numel("ops::zip", a, y);
  const T* ap = a.data();
  const T* bp = b.data();
  T* yp = y.data();
  const std::int64_t n = a.numel();
#pragma omp parallel for simd simdlen(16) schedule(static) if (n >= map_detail::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) yp[i] = f(ap[i], bp[i]);
}

// a[i] = f(a[i], b[i]).
template <class T, class F>
void zip_inplace(Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, F f) {
  zip(a, b, a, f);
}

// y = a + b (y may alias either), used by residual connections.
template <class T>
void add(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y) {
  zip(a, b, y, Plus{});
}
// y += x (gradient accumulation where a tensor feeds two branches).
template <class T>
void add_inplace(Tensor<T, Cpu>& y, const Tensor<T, Cpu>& x) {
  zip(y, x, y, Plus{});
}
template <class T>
void sub(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y) {
  zip(a, b, y, Minus{});
}
template <class T>
void mul(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& y) {
  zip(a, b, y, Times{});
}
template <class T>
void scale_inplace(Tensor<T, Cpu>& x, T s) {
  map(x, x, Scale<T>{s});
}
// y += s * x.
template <class T>
void axpy(Tensor<T, Cpu>& y, T s, const Tensor<T, Cpu>& x) {
  zip(y, x, y, PlusScaled<T>{s});
}
// y = x (same element count; shapes may differ).
template <class T>
void copy(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map_detail::check_numel("ops::copy", x, y);
  if (x.data() == y.data()) return;
  const T* xp = x.data();
  T* yp = y.data();
  map_detail::parallel_blocks(1, x.numel(), [&](std::int64_t, std::int64_t j0, std::int64_t j1) {
    std::memcpy(static_cast<void*>(yp + j0), xp + j0, static_cast<std::size_t>(j1 - j0) * sizeof(T));
  });
}

// Sum of all elements, accumulated in double.
template <class T>
double sum(const Tensor<T, Cpu>& x) {
  const T* xp = x.data();
  const std::int64_t n = x.numel();
  double s = 0;
#pragma omp parallel for simd simdlen(16) schedule(static) reduction(+ : s) if (n >= map_detail::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(xp[i]);
  return s;
}

// Sum of (a[i] - b[i])^2, accumulated in double.
template <class T>
double sum_squared_difference(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b) {
  map_detail::check_numel("ops::sum_squared_difference", a, b);
  const T* ap = a.data();
  const T* bp = b.data();
  const std::int64_t n = a.numel();
  double s = 0;
#pragma omp parallel for simd simdlen(16) schedule(static) reduction(+ : s) if (n >= map_detail::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(ap[i]) - static_cast<double>(bp[i]);
    s += d * d;
  }
  return s;
}

// ---- activations ----

// y = Act::forward(x).
template <class Act, class T>
void activation_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map(x, y, ForwardOf<Act>{});
}
// dx = Act::backward(y, dy) from the forward's output y.
template <class Act, class T>
void activation_backward(const Tensor<T, Cpu>& y, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
  zip(y, dy, dx, BackwardOf<Act>{});
}

// ---- GLU over the channel dimension ----

// x [N, 2C, H, W] -> y [N, C, H, W] = x[:, :C] * sigmoid(x[:, C:]).
template <class T>
void glu_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map_detail::check_nchw("ops::glu_forward", x.shape());
  VQVAE2_CHECK(x.dim(1) % 2 == 0, "ops::glu_forward: input ", x.shape().str(), " has an odd channel count.");
  const std::int64_t half = x.dim(1) / 2, plane = x.dim(2) * x.dim(3), inner = half * plane;
  VQVAE2_CHECK(y.shape() == nchw(x.dim(0), half, x.dim(2), x.dim(3)), "ops::glu_forward: output ", y.shape().str(),
               " does not hold half the channels of ", x.shape().str(), ".");
  const T* xp = x.data();
  T* yp = y.data();
  map_detail::parallel_blocks(x.dim(0), inner, [&](std::int64_t n, std::int64_t j0, std::int64_t j1) {
    const T* a = xp + n * 2 * inner;
    const T* b = a + inner;
    T* o = yp + n * inner;
#pragma omp simd simdlen(16)
    for (std::int64_t j = j0; j < j1; ++j) o[j] = Glu::forward(a[j], b[j]);
  });
}

// dx [N, 2C, H, W] from x and dy [N, C, H, W].
template <class T>
void glu_backward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
  map_detail::check_nchw("ops::glu_backward", x.shape());
  VQVAE2_CHECK(x.dim(1) % 2 == 0, "ops::glu_backward: input ", x.shape().str(), " has an odd channel count.");
  const std::int64_t half = x.dim(1) / 2, plane = x.dim(2) * x.dim(3), inner = half * plane;
  VQVAE2_CHECK(dy.shape() == nchw(x.dim(0), half, x.dim(2), x.dim(3)) && dx.shape() == x.shape(),
               "ops::glu_backward: gradient shapes ", dy.shape().str(), " and ", dx.shape().str(),
               " do not fit the input ", x.shape().str(), ".");
  const T* xp = x.data();
  const T* dyp = dy.data();
  T* dxp = dx.data();
  map_detail::parallel_blocks(x.dim(0), inner, [&](std::int64_t n, std::int64_t j0, std::int64_t j1) {
    const T* a = xp + n * 2 * inner;
    const T* b = a + inner;
    const T* g = dyp + n * inner;
    T* da = dxp + n * 2 * inner;
    T* db = da + inner;
#pragma omp simd simdlen(16)
    for (std::int64_t j = j0; j < j1; ++j) Glu::backward(a[j], b[j], g[j], da[j], db[j]);
  });
}

// ---- channel blocks (concatenation and its backward) ----

// dst[:, offset : offset + src.C] = src; N, H, W must match.
template <class T>
void copy_channels(const Tensor<T, Cpu>& src, Tensor<T, Cpu>& dst, std::int64_t offset) {
  map_detail::check_nchw("ops::copy_channels", src.shape());
  map_detail::check_nchw("ops::copy_channels", dst.shape());
  VQVAE2_CHECK(src.dim(0) == dst.dim(0) && src.dim(2) == dst.dim(2) && src.dim(3) == dst.dim(3) && offset >= 0 &&
                   offset + src.dim(1) <= dst.dim(1),
               "ops::copy_channels: cannot place ", src.shape().str(), " at channel ", offset, " of ",
               dst.shape().str(), ".");
  const std::int64_t plane = src.dim(2) * src.dim(3), inner = src.dim(1) * plane, dstride = dst.dim(1) * plane;
  const T* s = src.data();
  T* d = dst.data() + offset * plane;
  map_detail::parallel_blocks(src.dim(0), inner, [&](std::int64_t n, std::int64_t j0, std::int64_t j1) {
    std::memcpy(static_cast<void*>(d + n * dstride + j0), s + n * inner + j0,
                static_cast<std::size_t>(j1 - j0) * sizeof(T));
  });
}

// dst = src[:, offset : offset + dst.C].
template <class T>
void extract_channels(const Tensor<T, Cpu>& src, std::int64_t offset, Tensor<T, Cpu>& dst) {
  map_detail::check_nchw("ops::extract_channels", src.shape());
  map_detail::check_nchw("ops::extract_channels", dst.shape());
  VQVAE2_CHECK(src.dim(0) == dst.dim(0) && src.dim(2) == dst.dim(2) && src.dim(3) == dst.dim(3) && offset >= 0 &&
                   offset + dst.dim(1) <= src.dim(1),
               "ops::extract_channels: cannot take ", dst.shape().str(), " from channel ", offset, " of ",
               src.shape().str(), ".");
  const std::int64_t plane = dst.dim(2) * dst.dim(3), inner = dst.dim(1) * plane, sstride = src.dim(1) * plane;
  const T* s = src.data() + offset * plane;
  T* d = dst.data();
  map_detail::parallel_blocks(dst.dim(0), inner, [&](std::int64_t n, std::int64_t j0, std::int64_t j1) {
    std::memcpy(static_cast<void*>(d + n * inner + j0), s + n * sstride + j0,
                static_cast<std::size_t>(j1 - j0) * sizeof(T));
  });
}

// ---- nearest-neighbour x2 upsampling ----

// y [N, C, 2H, 2W]: y[.., i, j] = x[.., i / 2, j / 2].
template <class T>
void upsample2x_nearest(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map_detail::check_nchw("ops::upsample2x_nearest", x.shape());
  VQVAE2_CHECK(y.shape() == nchw(x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)), "ops::upsample2x_nearest: output ",
               y.shape().str(), " is not twice the input ", x.shape().str(), ".");
  const std::int64_t h = x.dim(2), w = x.dim(3);
  const T* xp = x.data();
  T* yp = y.data();
  // One (plane, row) per iteration: the row is read once and written to two output rows.
  map_detail::parallel_rows(x.dim(0) * x.dim(1) * h, 4 * w, [&](std::int64_t r) {
    const T* src = xp + r * w;
    T* d0 = yp + r * 4 * w;  // rows 2i and 2i + 1 of the same plane
    T* d1 = d0 + 2 * w;
#pragma omp simd simdlen(16)
    for (std::int64_t j = 0; j < 2 * w; ++j) {
      T v = src[j / 2];
      d0[j] = v;
      d1[j] = v;
    }
  });
}

// dx[.., i, j] = sum of the 2x2 block dy[.., 2i:2i+2, 2j:2j+2].
template <class T>
void upsample2x_nearest_backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
  map_detail::check_nchw("ops::upsample2x_nearest_backward", dx.shape());
  VQVAE2_CHECK(dy.shape() == nchw(dx.dim(0), dx.dim(1), 2 * dx.dim(2), 2 * dx.dim(3)),
               "ops::upsample2x_nearest_backward: gradient ", dy.shape().str(), " is not twice the input ",
               dx.shape().str(), ".");
  const std::int64_t h = dx.dim(2), w = dx.dim(3);
  const T* gp = dy.data();
  T* dp = dx.data();
  map_detail::parallel_rows(dx.dim(0) * dx.dim(1) * h, 4 * w, [&](std::int64_t r) {
    const T* g0 = gp + r * 4 * w;
    const T* g1 = g0 + 2 * w;
    T* d = dp + r * w;
#pragma omp simd simdlen(16)
    for (std::int64_t j = 0; j < w; ++j) d[j] = (g0[2 * j] + g0[2 * j + 1]) + (g1[2 * j] + g1[2 * j + 1]);
  });
}

// ---- PixelSNAIL shifts: pad one row (column) at the top (left), crop back ----

// y[.., i, :] = x[.., i - 1, :], row 0 zero.
template <class T>
void shift_down(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map_detail::check_nchw("ops::shift_down", x.shape());
  VQVAE2_CHECK(y.shape() == x.shape(), "ops::shift_down: output ", y.shape().str(), " differs from input ",
               x.shape().str(), ".");
  const std::int64_t w = x.dim(3), plane = x.dim(2) * w;
  const T* xp = x.data();
  T* yp = y.data();
  map_detail::parallel_rows(x.dim(0) * x.dim(1), plane, [&](std::int64_t p) {
    T* d = yp + p * plane;
    std::memset(static_cast<void*>(d), 0, static_cast<std::size_t>(std::min(w, plane)) * sizeof(T));
    if (plane > w)
      std::memcpy(static_cast<void*>(d + w), xp + p * plane, static_cast<std::size_t>(plane - w) * sizeof(T));
  });
}
// dx[.., i, :] = dy[.., i + 1, :], last row zero.
template <class T>
void shift_down_backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
  map_detail::check_nchw("ops::shift_down_backward", dy.shape());
  VQVAE2_CHECK(dx.shape() == dy.shape(), "ops::shift_down_backward: input gradient ", dx.shape().str(),
               " differs from output gradient ", dy.shape().str(), ".");
  const std::int64_t w = dy.dim(3), plane = dy.dim(2) * w;
  const T* gp = dy.data();
  T* dp = dx.data();
  map_detail::parallel_rows(dy.dim(0) * dy.dim(1), plane, [&](std::int64_t p) {
    T* d = dp + p * plane;
    if (plane > w)
      std::memcpy(static_cast<void*>(d), gp + p * plane + w, static_cast<std::size_t>(plane - w) * sizeof(T));
    std::memset(static_cast<void*>(d + plane - std::min(w, plane)), 0,
                static_cast<std::size_t>(std::min(w, plane)) * sizeof(T));
  });
}

// y[.., :, j] = x[.., :, j - 1], column 0 zero.
template <class T>
void shift_right(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  map_detail::check_nchw("ops::shift_right", x.shape());
  VQVAE2_CHECK(y.shape() == x.shape(), "ops::shift_right: output ", y.shape().str(), " differs from input ",
               x.shape().str(), ".");
  const std::int64_t w = x.dim(3);
  const T* xp = x.data();
  T* yp = y.data();
  map_detail::parallel_rows(x.dim(0) * x.dim(1) * x.dim(2), w, [&](std::int64_t r) {
    const T* s = xp + r * w;
    T* d = yp + r * w;
    if (w > 0) d[0] = T(0);
#pragma omp simd simdlen(16)
    for (std::int64_t j = 1; j < w; ++j) d[j] = s[j - 1];
  });
}
// dx[.., :, j] = dy[.., :, j + 1], last column zero.
template <class T>
void shift_right_backward(const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx) {
  map_detail::check_nchw("ops::shift_right_backward", dy.shape());
  VQVAE2_CHECK(dx.shape() == dy.shape(), "ops::shift_right_backward: input gradient ", dx.shape().str(),
               " differs from output gradient ", dy.shape().str(), ".");
  const std::int64_t w = dy.dim(3);
  const T* gp = dy.data();
  T* dp = dx.data();
  map_detail::parallel_rows(dy.dim(0) * dy.dim(1) * dy.dim(2), w, [&](std::int64_t r) {
    const T* s = gp + r * w;
    T* d = dp + r * w;
#pragma omp simd simdlen(16)
    for (std::int64_t j = 0; j < w - 1; ++j) d[j] = s[j + 1];
    if (w > 0) d[w - 1] = T(0);
  });
}

// ---- dropout ----

namespace map_detail {
template <class T>
inline void dropout_one(std::uint32_t bits, float p, T scale, T x, T& y, std::uint8_t& m) {
  bool keep = uint_to_unit(bits) > p;
  m = keep ? 1 : 0;
  y = keep ? x * scale : T(0);
}

}  // namespace map_detail

// Element i is kept when philox_uniform(seed, offset, i) > p, the same rule a
// CUDA kernel applies per element. Here one Philox block serves four elements.
// mask[i] = 1 for kept elements; y = x * mask / (1 - p).
template <class T>
void dropout_forward(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y, Tensor<std::uint8_t, Cpu>& mask, std::uint64_t seed,
                     std::uint64_t offset, float p) {
  map_detail::check_numel("ops::dropout_forward", x, y);
  map_detail::check_numel("ops::dropout_forward", x, mask);
  VQVAE2_CHECK(p >= 0.0f && p < 1.0f, "ops::dropout_forward: probability ", p, " is outside [0, 1).");
  const T scale = T(1) / (T(1) - static_cast<T>(p));
  const T* xp = x.data();
  T* yp = y.data();
  std::uint8_t* mp = mask.data();
  const std::int64_t n = x.numel(), blocks = (n + 3) / 4, full = n / 4;
#pragma omp parallel for simd simdlen(8) schedule(static) if (n >= map_detail::kParallelMin)
  for (std::int64_t b = 0; b < full; ++b) {
    PhiloxBlock r = philox4x32_10(offset + static_cast<std::uint64_t>(b), 0, seed);
    // Lanes spelled out: constant indices keep the block in registers, so the loop vectorises
    // (over 8 blocks: measured faster than 16, whose 64-bit products need twice the registers).
    map_detail::dropout_one(r.v[0], p, scale, xp[4 * b], yp[4 * b], mp[4 * b]);
    map_detail::dropout_one(r.v[1], p, scale, xp[4 * b + 1], yp[4 * b + 1], mp[4 * b + 1]);
    map_detail::dropout_one(r.v[2], p, scale, xp[4 * b + 2], yp[4 * b + 2], mp[4 * b + 2]);
    map_detail::dropout_one(r.v[3], p, scale, xp[4 * b + 3], yp[4 * b + 3], mp[4 * b + 3]);
  }
  for (std::int64_t b = full; b < blocks; ++b) {
    PhiloxBlock r = philox4x32_10(offset + static_cast<std::uint64_t>(b), 0, seed);
    for (std::int64_t i = 4 * b; i < n; ++i) map_detail::dropout_one(r.v[i - 4 * b], p, scale, xp[i], yp[i], mp[i]);
  }
}

// dx = dy * mask / (1 - p), with the mask of the forward.
template <class T>
void dropout_backward(const Tensor<T, Cpu>& dy, const Tensor<std::uint8_t, Cpu>& mask, Tensor<T, Cpu>& dx, float p) {
  map_detail::check_numel("ops::dropout_backward", dy, mask);
  map_detail::check_numel("ops::dropout_backward", dy, dx);
  const T scale = T(1) / (T(1) - static_cast<T>(p));
  const T* gp = dy.data();
  const std::uint8_t* mp = mask.data();
  T* dp = dx.data();
  const std::int64_t n = dy.numel();
#pragma omp parallel for simd simdlen(16) schedule(static) if (n >= map_detail::kParallelMin)
  for (std::int64_t i = 0; i < n; ++i) dp[i] = mp[i] ? gp[i] * scale : T(0);
}

}  // namespace vqvae2::ops
