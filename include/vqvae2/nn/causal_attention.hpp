// PixelSNAIL's multi-head causal attention over a 2-D map (rosinality's CausalAttention).
//
// Position i of the raster-ordered map attends to positions j < i only; position 0
// attends to nothing and outputs zero. Per head: P = softmax_{j<i}(q_i . k_j / sqrt(d)),
// dropout on P, out_i = sum_j P_ij v_j.
//
// The core never holds the B*H*L*L score tensor (256 MB at 32x32, batch 8, 8 heads).
// It works per (batch, head) and per block of query rows, so one thread's scores fit in
// L2; for row block [i0, i1) only key columns j < i1 - 1 are computed, which skips the
// masked upper triangle up to the diagonal block. Forward keeps only the row
// log-sum-exp (B*H*L values) and, in training, the dropout mask as bits (8 MB at that
// size); backward recomputes the probabilities from the log-sum-exp (flash-attention
// style), which costs one more q k^T but no 128-256 MB of stored probabilities.
//
// The reference fills masked scores with -1e4 before a softmax over the whole row;
// exp(-1e4 - max) is exactly 0 in float and double, so a softmax over the unmasked
// prefix is the same function (and row 0, all masked, is zeroed by its start mask).
#pragma once

// GCC 12 reports Eigen's AVX-512 GEMM packing (_mm512_undefined_ps) as "maybe
// uninitialized" (plain "uninitialized" at -O2 with sanitizers): a known false
// positive, silenced for this header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#if !defined(__CUDACC__)
#include <Eigen/Core>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/wn_linear.hpp"

namespace vqvae2::ops {

// Dropout on the attention probabilities. Element (b, h, i, j) of the [B, H, L, L]
// probability tensor draws u = philox_uniform(seed, offset, ((b*H + h)*L + i)*L + j)
// and is kept (scaled by 1/(1-p)) when u > p, so backward can regenerate the mask.
struct AttentionDropout {
  double p = 0.0;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  bool active() const { return p > 0.0; }
};

// What the forward keeps for backward, and the scratch both reuse. lse holds each
// query row's log-sum-exp ([B, heads, L]), from which backward recomputes the
// probabilities; keep holds the dropout mask as bits, one 64-bit-aligned row per
// (batch, head, query) (8 MB at B = 8, 8 heads, L = 1024), so backward need not
// regenerate it.
template <class T, class Device = Cpu>
struct CausalAttentionState {
  AttentionDropout drop;
  Tensor<T, Device> lse;
  Tensor<std::uint64_t, Device> keep;
  Tensor<T, Device> scratch;
  Tensor<std::uint32_t, Device> words;
};

namespace attention_detail {

// The few dense kernels of the core, on row-major blocks with leading dimensions.
// Eigen (packed GEMM, vectorised exp) for the host compiler; plain loops when nvcc
// compiles the CPU path (nvcc 13 floods Eigen's headers with warnings, see linear.hpp).
#if !defined(__CUDACC__)
template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapM = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MapC = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using RowArray = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
#endif

// C[m x n] = alpha * A[m x k] * B[n x k]^T
template <class T>
void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda, const T* B,
             std::int64_t ldb, T* C, std::int64_t ldc) {
#if !defined(__CUDACC__)
  MapM<T>(C, m, n, Eigen::OuterStride<>(ldc)).noalias() =
      (alpha * MapC<T>(A, m, k, Eigen::OuterStride<>(lda))) * MapC<T>(B, n, k, Eigen::OuterStride<>(ldb)).transpose();
#else
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      T acc = 0;
      for (std::int64_t l = 0; l < k; ++l) acc += A[i * lda + l] * B[j * ldb + l];
      C[i * ldc + j] = alpha * acc;
    }
#endif
}

// C[m x n] = alpha * A[m x k] * B[k x n]
template <class T>
void gemm_nn(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda, const T* B,
             std::int64_t ldb, T* C, std::int64_t ldc) {
#if !defined(__CUDACC__)
  MapM<T>(C, m, n, Eigen::OuterStride<>(ldc)).noalias() =
      (alpha * MapC<T>(A, m, k, Eigen::OuterStride<>(lda))) * MapC<T>(B, k, n, Eigen::OuterStride<>(ldb));
#else
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      T acc = 0;
      for (std::int64_t l = 0; l < k; ++l) acc += A[i * lda + l] * B[l * ldb + j];
      C[i * ldc + j] = alpha * acc;
    }
#endif
}

// C[m x n] += alpha * A[k x m]^T * B[k x n]
template <class T>
void gemm_tn_add(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda, const T* B,
                 std::int64_t ldb, T* C, std::int64_t ldc) {
#if !defined(__CUDACC__)
  MapM<T>(C, m, n, Eigen::OuterStride<>(ldc)).noalias() +=
      (alpha * MapC<T>(A, k, m, Eigen::OuterStride<>(lda)).transpose()) * MapC<T>(B, k, n, Eigen::OuterStride<>(ldb));
#else
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      T acc = 0;
      for (std::int64_t l = 0; l < k; ++l) acc += A[l * lda + i] * B[l * ldb + j];
      C[i * ldc + j] += alpha * acc;
    }
#endif
}

// Rows of a [m x n] block with leading dimension ld set to zero.
template <class T>
void zero_rows(std::int64_t m, std::int64_t n, T* C, std::int64_t ld) {
  for (std::int64_t i = 0; i < m; ++i) std::fill(C + i * ld, C + i * ld + n, T(0));
}

// s[0..n) = softmax(s[0..n)) in place; returns the log-sum-exp. n >= 1.
template <class T>
T softmax_row(T* s, std::int64_t n) {
#if !defined(__CUDACC__)
  RowArray<T> a(s, n);
  const T mx = a.maxCoeff();
  a = (a - mx).exp();
  const T sum = a.sum();
  a *= T(1) / sum;
#else
  T mx = s[0];
  for (std::int64_t j = 1; j < n; ++j) mx = std::max(mx, s[j]);
  T sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
  for (std::int64_t j = 0; j < n; ++j) s[j] /= sum;
#endif
  return mx + std::log(sum);
}

// s[j] = exp(s[j] - lse): the probabilities again, from the forward's log-sum-exp.
template <class T>
void exp_shift_row(T* s, std::int64_t n, T lse) {
#if !defined(__CUDACC__)
  RowArray<T> a(s, n);
  a = (a - lse).exp();
#else
  for (std::int64_t j = 0; j < n; ++j) s[j] = std::exp(s[j] - lse);
#endif
}

// Softmax backward on one row, with optional dropout multipliers m (null: none).
// On entry p = probabilities, g = dL/d(dropped probabilities); on exit
// g = dL/dscores and p = dropped probabilities (m * p), which dV needs.
template <class T>
void softmax_backward_row(T* p, T* g, const T* m, std::int64_t n) {
#if !defined(__CUDACC__)
  RowArray<T> pa(p, n), ga(g, n);
  if (m) {
    Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>> ma(m, n);
    const T D = (pa * ma * ga).sum();  // sum_j p_j dp_j with dp = m * g
    ga = pa * (ga * ma - D);
    pa *= ma;
  } else {
    const T D = (pa * ga).sum();
    ga = pa * (ga - D);
  }
#else
  T D = 0;
  for (std::int64_t j = 0; j < n; ++j) D += p[j] * (m ? m[j] : T(1)) * g[j];
  for (std::int64_t j = 0; j < n; ++j) {
    const T mj = m ? m[j] : T(1);
    g[j] = p[j] * (g[j] * mj - D);
    p[j] *= mj;
  }
#endif
}

// Philox words of elements [base, base + n) of a draw at (seed, offset): word j is
// the one philox_uniform(seed, offset, base + j) turns into a float. buf needs n + 8
// entries; the returned pointer is into buf. The block loop is kept free of
// branches so the compiler vectorises it (Philox is most of dropout's cost).
inline const std::uint32_t* philox_words(std::uint64_t seed, std::uint64_t offset, std::uint64_t base, std::int64_t n,
                                         std::uint32_t* buf) {
  const std::uint64_t first = base / 4;
  const std::int64_t blocks = static_cast<std::int64_t>((base + static_cast<std::uint64_t>(n) + 3) / 4 - first);
  for (std::int64_t i = 0; i < blocks; ++i) {
    const PhiloxBlock b = philox4x32_10(offset + first + static_cast<std::uint64_t>(i), 0, seed);
    buf[4 * i] = b.v[0];
    buf[4 * i + 1] = b.v[1];
    buf[4 * i + 2] = b.v[2];
    buf[4 * i + 3] = b.v[3];
  }
  return buf + (base - 4 * first);
}

// Forward dropout on one probability row: s[j] *= keep_j / (1 - p), with keep_j = u_j > p,
// and the keep flags packed into bits (bit j % 64 of word j / 64) for backward.
// uint_to_unit(w) > p  <=>  (w >> 8) + 1 > p * 2^24  <=>  w >= floor(p * 2^24) << 8, an
// integer test that vectorises; two plain loops so that the compiler vectorises both.
template <class T>
void dropout_row_forward(const AttentionDropout& d, std::uint64_t base, std::int64_t n, T* s, std::uint64_t* bits,
                         std::uint32_t* buf) {
  const std::uint32_t* u = philox_words(d.seed, d.offset, base, n, buf);
  const std::uint32_t thr = static_cast<std::uint32_t>(std::floor(static_cast<float>(d.p) * 16777216.0f)) << 8;
  const T scale = static_cast<T>(1.0 / (1.0 - d.p));
  for (std::int64_t j = 0; j < n; ++j) s[j] = u[j] >= thr ? s[j] * scale : T(0);
  for (std::int64_t w = 0; w * 64 < n; ++w) {
    const std::int64_t j0 = w * 64, len = std::min<std::int64_t>(64, n - j0);
    std::uint64_t word = 0;
    for (std::int64_t l = 0; l < len; ++l) word |= static_cast<std::uint64_t>(u[j0 + l] >= thr) << l;
    bits[w] = word;
  }
}

// The multipliers keep_j / (1 - p) of a row from its forward bits.
template <class T>
void dropout_row_multipliers(const std::uint64_t* bits, std::int64_t n, T scale, T* m) {
  for (std::int64_t j = 0; j < n; ++j) m[j] = (bits[j / 64] >> (j % 64)) & 1u ? scale : T(0);
}

inline int thread_id() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// [B, C, H, W] -> [B*H*W, C] (channels last, raster order), tiled for the cache.
template <class T>
void nchw_to_tokens(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
  const std::int64_t B = x.dim(0), C = x.dim(1), L = x.dim(2) * x.dim(3);
  y.resize(Shape{B * L, C});
  const T* xp = x.data();
  T* yp = y.data();
  constexpr std::int64_t kTile = 32;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t l0 = 0; l0 < L; l0 += kTile)
      for (std::int64_t c0 = 0; c0 < C; c0 += kTile)
        for (std::int64_t l = l0; l < std::min(L, l0 + kTile); ++l)
          for (std::int64_t c = c0; c < std::min(C, c0 + kTile); ++c) yp[(b * L + l) * C + c] = xp[(b * C + c) * L + l];
}

// y[B, C, H, W] = a (+ b), a and b [B*H*W, C]; y must already have its shape.
template <class T>
void tokens_to_nchw(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>* b, Tensor<T, Cpu>& y) {
  const std::int64_t B = y.dim(0), C = y.dim(1), L = y.dim(2) * y.dim(3);
  const T* ap = a.data();
  const T* bp = b ? b->data() : nullptr;
  T* yp = y.data();
  constexpr std::int64_t kTile = 32;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
  for (std::int64_t n = 0; n < B; ++n)
    for (std::int64_t c0 = 0; c0 < C; c0 += kTile)
      for (std::int64_t l0 = 0; l0 < L; l0 += kTile)
        for (std::int64_t c = c0; c < std::min(C, c0 + kTile); ++c)
          for (std::int64_t l = l0; l < std::min(L, l0 + kTile); ++l) {
            const std::int64_t src = (n * L + l) * C + c;
            yp[(n * C + c) * L + l] = bp ? ap[src] + bp[src] : ap[src];
          }
}

template <class T>
void check_qkv(const char* where, const Tensor<T, Cpu>& q, const Tensor<T, Cpu>& k, const Tensor<T, Cpu>& v,
               int heads) {
  VQVAE2_CHECK(q.rank() == 3, where, ": expected q of shape [B, L, C], got ", q.shape().str(), ".");
  VQVAE2_CHECK(k.shape() == q.shape() && v.shape() == q.shape(), where, ": q ", q.shape().str(), ", k ",
               k.shape().str(), " and v ", v.shape().str(), " must have the same shape.");
  VQVAE2_CHECK(heads > 0 && q.dim(2) % heads == 0, where, ": ", q.dim(2), " channels do not split into ", heads,
               " heads.");
}

}  // namespace attention_detail

// Forward of the attention core. q, k, v: [B, L, C] with C = heads * dim_head, head h
// owning channels [h*d, (h+1)*d). Writes out [B, L, C]; state keeps what backward needs
// (drop is applied when active and remembered).
template <class T>
void causal_attention_forward(Context<Cpu>& ctx, const Tensor<T, Cpu>& q, const Tensor<T, Cpu>& k,
                              const Tensor<T, Cpu>& v, int heads, const AttentionDropout& drop, Tensor<T, Cpu>& out,
                              CausalAttentionState<T, Cpu>& state, std::int64_t row_block = 64) {
  using namespace attention_detail;
  check_qkv("causal_attention_forward", q, k, v, heads);
  VQVAE2_CHECK(row_block > 0, "causal_attention_forward: row_block must be positive, got ", row_block, ".");
  VQVAE2_CHECK(drop.p >= 0.0 && drop.p < 1.0, "causal_attention_forward: dropout probability ", drop.p,
               " is outside [0, 1).");
  const std::int64_t B = q.dim(0), L = q.dim(1), C = q.dim(2), d = C / heads;
  const std::int64_t R = std::min(row_block, std::max<std::int64_t>(L, 1));
  const std::int64_t per_thread = R * L, words_per_thread = L + 8, bit_words = (L + 63) / 64;
  const int threads = ctx.threads();
  state.drop = drop;
  out.resize(q.shape());
  state.lse.resize(Shape{B, heads, L});
  state.scratch.resize(Shape{threads * per_thread});
  state.words.resize(Shape{threads * words_per_thread});
  state.keep.resize(Shape{drop.active() ? B * heads * L * bit_words : 0});
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  const T* qp = q.data();
  const T* kp = k.data();
  const T* vp = v.data();
  T* op = out.data();
  T* lp = state.lse.data();
  T* ws = state.scratch.data();
  std::uint32_t* wp = state.words.data();
  std::uint64_t* keep = state.keep.data();
  const std::int64_t tasks = B * heads;

  // One task per (batch, head); dynamic, so a thread the OS preempts does not hold the
  // others at the barrier.
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t b = t / heads, h = t % heads;
    T* S = ws + thread_id() * per_thread;
    std::uint32_t* words = wp + thread_id() * words_per_thread;
    const std::int64_t head0 = b * L * C + h * d;  // element (b, 0, h*d)
    lp[t * L] = T(0);                              // position 0 has no softmax
    for (std::int64_t i0 = 0; i0 < L; i0 += R) {
      const std::int64_t rows = std::min(R, L - i0);
      const std::int64_t n = i0 + rows - 1;  // key columns [0, n) are visible to some row of the block
      if (n == 0) {                          // the block is position 0 alone
        zero_rows(rows, d, op + head0 + i0 * C, C);
        continue;
      }
      gemm_nt(rows, n, d, scale, qp + head0 + i0 * C, C, kp + head0, C, S, n);
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t i = i0 + r;  // row i sees columns [0, i)
        T* s = S + r * n;
        if (i > 0) {
          lp[t * L + i] = softmax_row(s, i);
          if (drop.active())
            dropout_row_forward(drop, static_cast<std::uint64_t>((t * L + i) * L), i, s, keep + (t * L + i) * bit_words,
                                words);
        }
        // Masked columns and the start mask's zero first row.
        std::fill(s + i, s + n, T(0));
      }
      gemm_nn(rows, d, n, T(1), S, n, vp + head0, C, op + head0 + i0 * C, C);
    }
  }
}

// Backward of the attention core: from dout [B, L, C] writes dq, dk, dv ([B, L, C]).
// q, k, v and state must be those of the forward.
template <class T>
void causal_attention_backward(Context<Cpu>& ctx, const Tensor<T, Cpu>& q, const Tensor<T, Cpu>& k,
                               const Tensor<T, Cpu>& v, const Tensor<T, Cpu>& dout, int heads,
                               CausalAttentionState<T, Cpu>& state, Tensor<T, Cpu>& dq, Tensor<T, Cpu>& dk,
                               Tensor<T, Cpu>& dv, std::int64_t row_block = 64) {
  using namespace attention_detail;
  check_qkv("causal_attention_backward", q, k, v, heads);
  VQVAE2_CHECK(dout.shape() == q.shape(), "causal_attention_backward: dout ", dout.shape().str(),
               " must match the forward's output ", q.shape().str(), ".");
  VQVAE2_CHECK(row_block > 0, "causal_attention_backward: row_block must be positive, got ", row_block, ".");
  const std::int64_t B = q.dim(0), L = q.dim(1), C = q.dim(2), d = C / heads;
  const std::int64_t bit_words = (L + 63) / 64;
  const AttentionDropout& drop = state.drop;
  VQVAE2_CHECK(state.lse.shape() == (Shape{B, heads, L}) &&
                   state.keep.numel() == (drop.active() ? B * heads * L * bit_words : 0),
               "causal_attention_backward: the saved state ", state.lse.shape().str(),
               " does not come from a forward on ", q.shape().str(), " with ", heads, " heads.");
  const std::int64_t R = std::min(row_block, std::max<std::int64_t>(L, 1));
  const std::int64_t per_thread = 2 * R * L + L;
  const int threads = ctx.threads();
  dq.resize(q.shape());
  dk.resize(q.shape());
  dv.resize(q.shape());
  state.scratch.resize(Shape{threads * per_thread});
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  const T keep_scale = static_cast<T>(1.0 / (1.0 - drop.p));
  const T* qp = q.data();
  const T* kp = k.data();
  const T* vp = v.data();
  const T* gp = dout.data();
  const T* lp = state.lse.data();
  const std::uint64_t* keep = state.keep.data();
  T* dqp = dq.data();
  T* dkp = dk.data();
  T* dvp = dv.data();
  T* ws = state.scratch.data();
  const std::int64_t tasks = B * heads;

#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (std::int64_t t = 0; t < tasks; ++t) {
    const std::int64_t b = t / heads, h = t % heads;
    T* P = ws + thread_id() * per_thread;
    T* G = P + R * L;
    T* mrow = G + R * L;
    const std::int64_t head0 = b * L * C + h * d;
    // dk and dv of this (batch, head) accumulate over the row blocks.
    zero_rows(L, d, dkp + head0, C);
    zero_rows(L, d, dvp + head0, C);
    for (std::int64_t i0 = 0; i0 < L; i0 += R) {
      const std::int64_t rows = std::min(R, L - i0);
      const std::int64_t n = i0 + rows - 1;
      T* dQb = dqp + head0 + i0 * C;
      if (n == 0) {
        zero_rows(rows, d, dQb, C);
        continue;
      }
      const T* Qb = qp + head0 + i0 * C;
      const T* dOb = gp + head0 + i0 * C;
      gemm_nt(rows, n, d, scale, Qb, C, kp + head0, C, P, n);  // scores again
      gemm_nt(rows, n, d, T(1), dOb, C, vp + head0, C, G, n);  // dL/d(dropped probabilities)
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t i = i0 + r;
        T* p = P + r * n;
        T* g = G + r * n;
        if (i > 0) {
          exp_shift_row(p, i, lp[t * L + i]);
          if (drop.active()) dropout_row_multipliers(keep + (t * L + i) * bit_words, i, keep_scale, mrow);
          softmax_backward_row(p, g, drop.active() ? mrow : static_cast<const T*>(nullptr), i);
        }
        std::fill(p + i, p + n, T(0));
        std::fill(g + i, g + n, T(0));
      }
      // P now holds the dropped probabilities and G holds dL/d(scaled scores).
      gemm_tn_add(n, d, rows, T(1), P, n, dOb, C, dvp + head0, C);
      gemm_nn(rows, d, n, scale, G, n, kp + head0, C, dQb, C);
      gemm_tn_add(n, d, rows, scale, G, n, Qb, C, dkp + head0, C);
    }
  }
}

}  // namespace vqvae2::ops

namespace vqvae2::nn {

// rosinality's CausalAttention(query_channel, key_channel, channel, n_head, dropout):
// query [B, Cq, H, W] and key [B, Ck, H, W] -> [B, channel, H, W]; q from the query
// map, k and v from the key map, each through a weight-normalised linear layer.
template <class T, class Device = Cpu>
class CausalAttention {
 public:
  using TensorT = Tensor<T, Device>;

  CausalAttention(int query_channel, int key_channel, int channel = 128, int heads = 8, double dropout = 0.1)
      : heads_(heads),
        channel_(channel),
        p_(dropout),
        query_(query_channel, channel),
        key_(key_channel, channel),
        value_(key_channel, channel) {
    VQVAE2_CHECK(heads > 0 && channel % heads == 0, "CausalAttention: ", channel, " channels do not split into ", heads,
                 " heads.");
    VQVAE2_CHECK(dropout >= 0.0 && dropout < 1.0, "CausalAttention: dropout ", dropout, " is outside [0, 1).");
  }

  // Also seeds the dropout stream from g, so that the attention blocks of a model,
  // initialised one after another, draw independent masks.
  void init(Generator& g) {
    query_.init(g);
    key_.init(g);
    value_.init(g);
    gen_.set_state(g.below(std::uint64_t{1} << 62), 0);
  }

  const TensorT& forward(Context<Device>& ctx, const TensorT& query, const TensorT& key) {
    VQVAE2_CHECK(query.rank() == 4 && key.rank() == 4 && query.dim(1) == query_.in_features() &&
                     key.dim(1) == key_.in_features() && query.dim(0) == key.dim(0) && query.dim(2) == key.dim(2) &&
                     query.dim(3) == key.dim(3),
                 "CausalAttention::forward: expected query [B, ", query_.in_features(), ", H, W] and key [B, ",
                 key_.in_features(), ", H, W], got ", query.shape().str(), " and ", key.shape().str(), ".");
    const std::int64_t B = key.dim(0), H = key.dim(2), W = key.dim(3), L = H * W;
    qshape_ = query.shape();
    kshape_ = key.shape();
    ops::attention_detail::nchw_to_tokens(query, qin_);
    ops::attention_detail::nchw_to_tokens(key, kin_);
    // Non-owning views both ways (the linears' inputs, their outputs): an owning alias
    // would make the owner's resize() reallocate every step (in eval mode too, where
    // no backward releases the linears' input aliases).
    const Shape tokens{B, L, channel_};
    q_ = wrap(query_.forward(ctx, wrap(qin_, qin_.shape())), tokens);
    k_ = wrap(key_.forward(ctx, wrap(kin_, kin_.shape())), tokens);
    v_ = wrap(value_.forward(ctx, wrap(kin_, kin_.shape())), tokens);
    ops::AttentionDropout drop;
    if (ctx.training && p_ > 0.0)
      drop = ops::AttentionDropout{p_, generator().seed(),
                                   generator().reserve(static_cast<std::uint64_t>(B * heads_ * L * L))};
    ops::causal_attention_forward(ctx, q_, k_, v_, heads_, drop, att_, state_, row_block_);
    out_.resize(nchw(B, channel_, H, W));
    ops::attention_detail::tokens_to_nchw(att_.reshape(Shape{B * L, channel_}), static_cast<const TensorT*>(nullptr),
                                          out_);
    return out_;
  }

  // Returns dL/dquery; dL/dkey is in grad_key().
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    expect_shape("CausalAttention::backward", dy, out_.shape());
    const std::int64_t B = dy.dim(0), L = dy.dim(2) * dy.dim(3);
    ops::attention_detail::nchw_to_tokens(dy, datt_);
    ops::causal_attention_backward(ctx, q_, k_, v_, datt_.reshape(Shape{B, L, channel_}), heads_, state_, dq_, dk_, dv_,
                                   row_block_);
    const Shape rows{B * L, channel_};
    const TensorT& dqin = query_.backward(ctx, dq_.reshape(rows));
    dquery_.resize(qshape_);
    ops::attention_detail::tokens_to_nchw(dqin, static_cast<const TensorT*>(nullptr), dquery_);
    const TensorT& dkin = key_.backward(ctx, dk_.reshape(rows));
    const TensorT& dvin = value_.backward(ctx, dv_.reshape(rows));
    dkey_.resize(kshape_);
    ops::attention_detail::tokens_to_nchw(dkin, &dvin, dkey_);
    return dquery_;
  }

  const TensorT& grad_key() const { return dkey_; }

  template <class F>
  void visit(F&& f) {
    visit_child(query_, "query", f);
    visit_child(key_, "key", f);
    visit_child(value_, "value", f);
  }

  // The dropout stream (seeded by init): each training forward reserves B*heads*L*L values of it.
  Generator& generator() { return shared_ ? *shared_ : gen_; }
  // Draw dropout from g (owned by the caller, outliving the layer) instead of the own
  // stream, so that one generator in a checkpoint restores a whole model's dropout; nullptr goes back.
  void use_generator(Generator* g) { shared_ = g; }
  // Query rows per block of the core (a tuning knob; results do not depend on it).
  void set_row_block(std::int64_t rows) { row_block_ = rows; }
  int heads() const { return heads_; }
  int channels() const { return channel_; }
  double dropout() const { return p_; }
  WNLinear<T, Device>& query() { return query_; }
  WNLinear<T, Device>& key() { return key_; }
  WNLinear<T, Device>& value() { return value_; }

 private:
  static TensorT wrap(const TensorT& t, const Shape& s) { return TensorT::wrap(const_cast<T*>(t.data()), s); }

  int heads_, channel_;
  double p_;
  std::int64_t row_block_ = 64;
  WNLinear<T, Device> query_, key_, value_;
  Generator gen_{0xA77E27ULL};
  Generator* shared_ = nullptr;
  ops::CausalAttentionState<T, Device> state_;
  Shape qshape_, kshape_;
  TensorT qin_, kin_, q_, k_, v_, att_, out_;
  TensorT datt_, dq_, dk_, dv_, dquery_, dkey_;
};

}  // namespace vqvae2::nn

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
