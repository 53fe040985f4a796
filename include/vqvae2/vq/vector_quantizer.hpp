// VectorQuantizer<T, Device, EmbedDim, NumCodes>: the VQ-VAE-2 quantiser with an
// EMA code book (van den Oord et al. 2017, appendix; Razavi et al. 2019), following
// the reference implementation (REFERENCE.md, rosinality's Quantize):
//
//   rows x_i     = z[n, :, h, w]                      (NCHW input, EmbedDim channels)
//   index_i      = argmin_k ||x_i - e_k||^2           (ties -> lowest k)
//   q[n,:,h,w]   = e_{index_i}                        (code book from BEFORE the update)
//   commitment   = mean((sg[q] - z)^2)                (unweighted; the model weights it)
//   training:      cluster_size = d*cluster_size + (1-d)*counts
//                  embed_avg    = d*embed_avg + (1-d)*x^T onehot
//                  cs_smoothed  = (cluster_size + eps) / (n + K*eps) * n,  n = sum(cluster_size)
//                  embed        = embed_avg / cs_smoothed
//   backward:      dz = dq + w * 2 (z - q) / numel    (straight-through + commitment)
//
// Buffers keep PyTorch's layout: embed and embed_avg [EmbedDim, NumCodes], cluster_size
// [NumCodes], so a reference state dict maps one to one. They are state, not
// parameters: visit() is empty and visit_buffers() walks them for checkpoints.
//
// Arithmetic runs in fp32 for float (and reduced-precision T) and in double for
// double, so the finite-difference checks see exact double math.
#pragma once

// GCC 12 reports Eigen's AVX-512 GEMM packing (_mm512_undefined_ps) as "maybe
// uninitialized": a known false positive, silenced for this header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2::vq {

namespace detail {
// 64-byte SIMD vectors through the GCC/Clang vector extension (one AVX-512 register;
// two AVX2 ones elsewhere). Other compilers take the scalar loop.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__)
#define VQVAE2_VQ_SIMD 1
template <class Acc>
struct SimdLanes;
template <>
struct SimdLanes<float> {
  typedef float V __attribute__((vector_size(64)));
  static constexpr int n = 16;
};
template <>
struct SimdLanes<double> {
  typedef double V __attribute__((vector_size(64)));
  static constexpr int n = 8;
};
#else
#define VQVAE2_VQ_SIMD 0
#endif
}  // namespace detail

// The quantiser's arithmetic type: double stays double, everything else is fp32.
template <class T>
using vq_compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// dz = dq + scale * (z - q), with the residual r = z - q stored by forward.
template <class T>
struct CommitmentGrad {
  T scale;
  VQVAE2_HD T operator()(T dq, T r) const { return dq + scale * r; }
};

template <class T, class Device, int EmbedDim, int NumCodes>
class VectorQuantizer {
  static_assert(EmbedDim > 0 && NumCodes > 0, "VectorQuantizer: EmbedDim and NumCodes must be positive");

 public:
  using Acc = vq_compute_t<T>;
  static constexpr int embed_dim = EmbedDim;
  static constexpr int num_codes = NumCodes;
  // Rows per work item: a [kChunk, NumCodes] score block (512 KB in fp32 at 512 codes)
  // stays in L2 while its argmin and scatter read it.
  static constexpr std::int64_t kChunk = 256;

  explicit VectorQuantizer(double decay = 0.99, double eps = 1e-5)
      : decay_(static_cast<Acc>(decay)),
        one_minus_decay_(static_cast<Acc>(1.0 - decay)),
        eps_(static_cast<Acc>(eps)),
        embed_(Tensor<Acc, Device>::zeros(Shape{EmbedDim, NumCodes})),
        cluster_size_(Tensor<Acc, Device>::zeros(Shape{NumCodes})),
        embed_avg_(Tensor<Acc, Device>::zeros(Shape{EmbedDim, NumCodes})),
        counts_(Tensor<std::int64_t, Cpu>::zeros(Shape{NumCodes})),
        unused_steps_(Tensor<std::int32_t, Cpu>::zeros(Shape{NumCodes})) {
    VQVAE2_CHECK(decay >= 0.0 && decay < 1.0 && eps > 0.0, "VectorQuantizer: decay must be in [0, 1) and eps > 0, got ",
                 decay, " and ", eps, ".");
    restarted_.reserve(NumCodes);
  }

  // Code book ~ N(0, 1) as the reference's randn(dim, n_embed); embed_avg starts as a
  // copy and cluster_size at zero. The dead-code restart generator is seeded from g.
  void init(Generator& g) {
    static_assert(is_cpu_v<Device>, "VectorQuantizer::init on this device needs its backend");
    g.normal(embed_, Acc(0), Acc(1));
    embed_avg_.copy_from(embed_);
    cluster_size_.zero();
    unused_steps_.zero();
    restart_gen_ = Generator(g.below(~0ULL));
  }

  // Dead-code restart: after `after_steps` consecutive training steps in which a code
  // got no row, it is re-seeded from a uniformly drawn row x_r of the current batch:
  // embed[:, k] = embed_avg[:, k] = x_r and cluster_size[k] = 1, i.e. the code restarts
  // as if it had been the EMA of one row. cluster_size = 1 (not 0) keeps it from being
  // divided back to ~0 by the smoothing at the next update. Rows are drawn with
  // replacement; two codes drawing the same row is harmless (the later one stays
  // unused and is re-seeded again). 0 disables the restart (the reference's behaviour).
  void set_dead_code_restart(int after_steps) {
    VQVAE2_CHECK(after_steps >= 0, "VectorQuantizer::set_dead_code_restart: steps must be >= 0, got ", after_steps,
                 ".");
    restart_after_ = after_steps;
  }
  int dead_code_restart() const { return restart_after_; }
  Generator& restart_generator() { return restart_gen_; }

  // Test hook: forward outputs z itself instead of q (code assignment, residual z - q,
  // commitment and EMA update are unchanged). The output is then the identity of z,
  // so the straight-through backward is the exact gradient and finite differences
  // can check a whole model's backward (tests/support/model_gradcheck.hpp).
  void set_pass_through(bool on) { pass_through_ = on; }
  bool pass_through() const { return pass_through_; }

  // z: [N, EmbedDim, H, W]. Returns q (same shape); indices(), commitment_loss(),
  // code_usage() and perplexity() describe this batch. ctx.training applies the EMA update.
  // Backward needs z - q, which is stored rather than an alias of z: an alias would pin
  // the producer's output buffer, and its next resize() would then allocate.
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& z) {
    static_assert(is_cpu_v<Device>, "VectorQuantizer::forward on this device needs its backend");
    VQVAE2_CHECK(z.rank() == 4 && z.dim(1) == EmbedDim && z.numel() > 0,
                 "VectorQuantizer::forward: expected input [N, ", EmbedDim, ", H, W], got ", z.shape().str(), ".");
    const std::int64_t N = z.dim(0), HW = z.dim(2) * z.dim(3), M = N * HW;
    const std::int64_t chunk = std::min(kChunk, HW);
    const std::int64_t chunks_per_image = (HW + chunk - 1) / chunk;
    const std::int64_t items = N * chunks_per_image;
    const bool training = ctx.training;
    const int threads = std::max(1, ctx.threads());

    out_.resize(z.shape());
    residual_.resize(z.shape());
    indices_.resize(Shape{z.dim(0), z.dim(2), z.dim(3)});
    prepare_workspace(threads, chunk);
    prepare_code_book();

    const T* zp = z.data();
    T* qp = out_.data();
    T* rp = residual_.data();
    std::int32_t* ip = indices_.data();
    const Acc* emb = embed_.data();
    const Acc* emb_m2 = embed_m2_.data();
    const Acc* emb_t = embed_t_.data();
    const Acc* enorm = embed_norm_.data();
    Acc* ws = workspace_.data();
    std::int64_t* cnt = partial_counts_.data();
    double* loss = partial_loss_.data();
    const std::int64_t ws_stride = workspace_stride(chunk);
    // Partials are cleared for every slot, not by their threads: OpenMP may run the
    // region with fewer threads than asked, and unused slots must still read as zero.
    std::fill(cnt, cnt + std::int64_t{threads} * NumCodes, std::int64_t{0});
    std::fill(loss, loss + threads, 0.0);
    if (training)
      for (int t = 0; t < threads; ++t) {
        Acc* psum = ws + t * ws_stride + psum_offset_of(chunk);
        std::fill(psum, psum + std::int64_t{NumCodes} * EmbedDim, Acc(0));
      }

#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
    {
#if defined(_OPENMP)
      const int tid = omp_get_thread_num();
#else
      const int tid = 0;
#endif
      Acc* xc = ws + tid * ws_stride;             // [chunk, D] rows of this item
      Acc* sc = xc + chunk * EmbedDim;            // [chunk, K] scores -2 x.e
      Acc* psum = xc + psum_offset_of(chunk);     // [K, D] this thread's x^T onehot
      std::int64_t* pcnt = cnt + tid * NumCodes;  // [K] this thread's histogram
      double ploss = 0;

#if defined(_OPENMP)
#pragma omp for schedule(static)
#endif
      for (std::int64_t item = 0; item < items; ++item) {
        const std::int64_t n = item / chunks_per_image;
        const std::int64_t p0 = (item % chunks_per_image) * chunk;
        const std::int64_t len = std::min(chunk, HW - p0);
        const T* zn = zp + n * EmbedDim * HW + p0;
        // Gather the NCHW slab into contiguous rows: the GEMM and the scatter both want rows.
        for (std::int64_t d = 0; d < EmbedDim; ++d)
          for (std::int64_t i = 0; i < len; ++i) xc[i * EmbedDim + d] = static_cast<Acc>(zn[d * HW + i]);
        using RowMat = Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using Vec = Eigen::Map<const Eigen::Matrix<Acc, EmbedDim, 1>>;
        Eigen::Map<RowMat> S(sc, len, NumCodes);
        S.noalias() =
            Eigen::Map<const RowMat>(xc, len, EmbedDim) * Eigen::Map<const RowMat>(emb_m2, EmbedDim, NumCodes);
        std::int32_t* idx = ip + n * HW + p0;
        for (std::int64_t i = 0; i < len; ++i) {
          // ||x||^2 is the same for every code, so it is left out of the argmin: this
          // changes no comparison in exact arithmetic and avoids rounding it into the gaps.
          const int bk = nearest_code(sc + i * NumCodes, enorm);
          idx[i] = bk;
          ++pcnt[bk];
          const Acc* x = xc + i * EmbedDim;
          // Eigen's reduction is vectorised; a plain loop would be one serial FMA chain.
          ploss += static_cast<double>((Vec(x) - Vec(emb_t + std::int64_t{bk} * EmbedDim)).squaredNorm());
          if (training) {
            Acc* acc = psum + std::int64_t{bk} * EmbedDim;
            for (int d = 0; d < EmbedDim; ++d) acc[d] += x[d];
          }
        }
        // Output and residual, back in NCHW; q comes from the pre-update code book.
        T* qn = qp + n * EmbedDim * HW + p0;
        T* rn = rp + n * EmbedDim * HW + p0;
        for (std::int64_t d = 0; d < EmbedDim; ++d) {
          const Acc* row = emb + d * NumCodes;
          for (std::int64_t i = 0; i < len; ++i) {
            const Acc e = row[idx[i]];
            qn[d * HW + i] = pass_through_ ? zn[d * HW + i] : static_cast<T>(e);
            rn[d * HW + i] = static_cast<T>(xc[i * EmbedDim + d] - e);
          }
        }
      }
      loss[tid] = ploss;
    }

    // Reductions in thread order: deterministic for a given thread count.
    double total = 0;
    for (int t = 0; t < threads; ++t) total += loss[t];
    commitment_ = total / static_cast<double>(M * EmbedDim);
    std::int64_t* counts = counts_.data();
    for (int k = 0; k < NumCodes; ++k) {
      std::int64_t c = 0;
      for (int t = 0; t < threads; ++t) c += cnt[t * NumCodes + k];
      counts[k] = c;
    }
    batch_rows_ = M;
    compute_statistics();
    restarted_.clear();
    if (training) {
      ema_update(threads, chunk);
      track_and_restart(z);
    }
    return out_;
  }

  // Straight-through: dz = dq + weight * d(commitment)/dz = dq + weight * 2 (z - q) / numel.
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dq, T commitment_weight) {
    static_assert(is_cpu_v<Device>, "VectorQuantizer::backward on this device needs its backend");
    VQVAE2_CHECK(residual_.rank() == 4, "VectorQuantizer::backward: called before forward.");
    VQVAE2_CHECK(dq.shape() == residual_.shape(), "VectorQuantizer::backward: gradient ", dq.shape().str(),
                 " does not match the forward's output ", residual_.shape().str(), ".");
    dz_.resize(dq.shape());
    const CommitmentGrad<T> f{
        static_cast<T>(2.0 * static_cast<double>(commitment_weight) / static_cast<double>(residual_.numel()))};
    const T* g = dq.data();
    const T* r = residual_.data();
    T* o = dz_.data();
    const std::int64_t n = dq.numel();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(std::max(1, ctx.threads()))
#endif
    for (std::int64_t i = 0; i < n; ++i) o[i] = f(g[i], r[i]);
    return dz_;
  }

  // Code vectors of an index map: indices [N, H, W] -> [N, EmbedDim, H, W] (decoding
  // sampled codes). Writes its own tensor, so forward's output stays valid.
  const Tensor<T, Device>& lookup(Context<Device>& ctx, const Tensor<std::int32_t, Device>& indices) {
    static_assert(is_cpu_v<Device>, "VectorQuantizer::lookup on this device needs its backend");
    VQVAE2_CHECK(indices.rank() == 3 && indices.numel() > 0,
                 "VectorQuantizer::lookup: expected indices [N, H, W], got ", indices.shape().str(), ".");
    const std::int32_t* ip = indices.data();
    for (std::int64_t i = 0; i < indices.numel(); ++i)
      VQVAE2_CHECK(ip[i] >= 0 && ip[i] < NumCodes, "VectorQuantizer::lookup: index ", ip[i], " at position ", i, " of ",
                   indices.shape().str(), " is outside the code book of ", NumCodes, " codes.");
    const std::int64_t N = indices.dim(0), HW = indices.dim(1) * indices.dim(2);
    lookup_out_.resize(Shape{N, EmbedDim, indices.dim(1), indices.dim(2)});
    T* o = lookup_out_.data();
    const Acc* emb = embed_.data();
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(std::max(1, ctx.threads()))
#endif
    for (std::int64_t nd = 0; nd < N * EmbedDim; ++nd) {
      const std::int64_t n = nd / EmbedDim, d = nd % EmbedDim;
      const Acc* row = emb + d * NumCodes;
      const std::int32_t* idx = ip + n * HW;
      T* dst = o + nd * HW;
      for (std::int64_t i = 0; i < HW; ++i) dst[i] = static_cast<T>(row[idx[i]]);
    }
    return lookup_out_;
  }

  // Results of the last forward.
  const Tensor<T, Device>& output() const { return out_; }
  const Tensor<std::int32_t, Device>& indices() const { return indices_; }
  double commitment_loss() const { return commitment_; }
  // Rows per code in the last batch, the number of distinct codes used, and the
  // perplexity exp(-sum p log p) of that histogram (1 = one code, NumCodes = uniform).
  const Tensor<std::int64_t, Cpu>& code_counts() const { return counts_; }
  std::int64_t code_usage() const { return usage_; }
  double perplexity() const { return perplexity_; }
  // Consecutive training steps each code has gone unused, and the codes re-seeded by the last step.
  const Tensor<std::int32_t, Cpu>& unused_steps() const { return unused_steps_; }
  const std::vector<std::int32_t>& restarted_codes() const { return restarted_; }

  // EMA code books have no gradient parameters.
  template <class F>
  void visit(F&&) {}
  // Checkpoint state: f(name, Tensor&) for "embed", "cluster_size", "embed_avg" (Acc) and
  // "unused_steps" (int32); the restart generator's state is restart_generator().
  template <class F>
  void visit_buffers(F&& f) {
    f(std::string_view("embed"), embed_);
    f(std::string_view("cluster_size"), cluster_size_);
    f(std::string_view("embed_avg"), embed_avg_);
    // Dead-code restart state, so a resumed run restarts the same codes at the same steps.
    f(std::string_view("unused_steps"), unused_steps_);
  }
  Tensor<Acc, Device>& embed() { return embed_; }
  Tensor<Acc, Device>& cluster_size() { return cluster_size_; }
  Tensor<Acc, Device>& embed_avg() { return embed_avg_; }

 private:
  // argmin_k (s[k] + enorm[k]), ties to the lowest k. Each SIMD lane l keeps the first
  // minimum among codes k = l (mod lanes) (strict <, so a later equal value never wins);
  // the lane reduction prefers the smaller value, then the smaller index. Indices ride
  // in the value type (exact: NumCodes < 2^24).
  static int nearest_code(const Acc* s, const Acc* enorm) {
    Acc best = std::numeric_limits<Acc>::infinity();
    int bk = 0;
    int done = 0;
#if VQVAE2_VQ_SIMD
    using V = typename detail::SimdLanes<Acc>::V;
    constexpr int kLanes = detail::SimdLanes<Acc>::n;
    constexpr int kFull = NumCodes / kLanes * kLanes;
    if constexpr (kFull > 0) {
      auto load = [](const Acc* p) {
        V v;
        std::memcpy(&v, p, sizeof(V));
        return v;
      };
      V kv;
      for (int l = 0; l < kLanes; ++l) kv[l] = static_cast<Acc>(l);
      V best_v = load(s) + load(enorm), best_k = kv;
      for (int k = kLanes; k < kFull; k += kLanes) {
        kv += static_cast<Acc>(kLanes);
        const V v = load(s + k) + load(enorm + k);
        const auto better = v < best_v;
        best_v = better ? v : best_v;
        best_k = better ? kv : best_k;
      }
      best = best_v[0];
      bk = static_cast<int>(best_k[0]);
      for (int l = 1; l < kLanes; ++l) {
        const int kl = static_cast<int>(best_k[l]);
        if (best_v[l] < best || (best_v[l] == best && kl < bk)) {
          best = best_v[l];
          bk = kl;
        }
      }
      done = kFull;
    }
#endif
    for (int k = done; k < NumCodes; ++k) {  // scalar path and tail: indices above every lane's
      const Acc v = s[k] + enorm[k];
      if (v < best || k == 0) {
        best = v;
        bk = k;
      }
    }
    return bk;
  }

  static std::int64_t psum_offset_of(std::int64_t chunk) { return chunk * EmbedDim + chunk * NumCodes; }
  static std::int64_t workspace_stride(std::int64_t chunk) {
    // Rounded to 16 elements so each thread's block starts on its own cache line.
    std::int64_t s = chunk * EmbedDim + chunk * NumCodes + std::int64_t{NumCodes} * EmbedDim;
    return (s + 15) / 16 * 16;
  }

  void prepare_workspace(int threads, std::int64_t chunk) {
    workspace_.resize(Shape{threads * workspace_stride(chunk)});
    partial_counts_.resize(Shape{std::int64_t{threads} * NumCodes});
    partial_loss_.resize(Shape{threads});
    embed_m2_.resize(Shape{EmbedDim, NumCodes});
    embed_t_.resize(Shape{NumCodes, EmbedDim});
    embed_norm_.resize(Shape{NumCodes});
    smoothed_.resize(Shape{NumCodes});
  }

  // -2E for the GEMM (exact scaling), E^T for row access, and ||e_k||^2.
  void prepare_code_book() {
    const Acc* e = embed_.data();
    Acc* m2 = embed_m2_.data();
    Acc* t = embed_t_.data();
    Acc* nrm = embed_norm_.data();
    std::fill(nrm, nrm + NumCodes, Acc(0));
    for (int d = 0; d < EmbedDim; ++d)
      for (int k = 0; k < NumCodes; ++k) {
        const Acc v = e[d * NumCodes + k];
        m2[d * NumCodes + k] = Acc(-2) * v;
        t[std::int64_t{k} * EmbedDim + d] = v;
        nrm[k] += v * v;
      }
  }

  void compute_statistics() {
    const std::int64_t* counts = counts_.data();
    usage_ = 0;
    double h = 0;
    for (int k = 0; k < NumCodes; ++k) {
      if (counts[k] == 0) continue;
      ++usage_;
      const double p = static_cast<double>(counts[k]) / static_cast<double>(batch_rows_);
      h -= p * std::log(p);
    }
    perplexity_ = std::exp(h);
  }

  // The reference's EMA step; the per-thread x^T onehot partials are summed here.
  void ema_update(int threads, std::int64_t chunk) {
    const std::int64_t stride = workspace_stride(chunk);
    const Acc* ws = workspace_.data();
    const std::int64_t psum_offset = psum_offset_of(chunk);
    const std::int64_t* counts = counts_.data();
    Acc* cs = cluster_size_.data();
    Acc* avg = embed_avg_.data();
    Acc* emb = embed_.data();
    Acc* sm = smoothed_.data();
    for (int k = 0; k < NumCodes; ++k) cs[k] = decay_ * cs[k] + one_minus_decay_ * static_cast<Acc>(counts[k]);
    for (int k = 0; k < NumCodes; ++k)
      for (int d = 0; d < EmbedDim; ++d) {
        Acc s = 0;
        for (int t = 0; t < threads; ++t) s += ws[t * stride + psum_offset + std::int64_t{k} * EmbedDim + d];
        Acc& a = avg[std::int64_t{d} * NumCodes + k];
        a = decay_ * a + one_minus_decay_ * s;
      }
    Acc n = 0;
    for (int k = 0; k < NumCodes; ++k) n += cs[k];
    const Acc denom = n + static_cast<Acc>(NumCodes) * eps_;
    for (int k = 0; k < NumCodes; ++k) sm[k] = (cs[k] + eps_) / denom * n;
    for (int d = 0; d < EmbedDim; ++d)
      for (int k = 0; k < NumCodes; ++k) emb[d * NumCodes + k] = avg[d * NumCodes + k] / sm[k];
  }

  void track_and_restart(const Tensor<T, Device>& z) {
    const std::int64_t* counts = counts_.data();
    std::int32_t* unused = unused_steps_.data();
    const std::int64_t HW = z.dim(2) * z.dim(3);
    for (int k = 0; k < NumCodes; ++k) {
      unused[k] = counts[k] > 0 ? 0 : unused[k] + 1;
      if (restart_after_ <= 0 || unused[k] < restart_after_) continue;
      const std::int64_t r = static_cast<std::int64_t>(restart_gen_.below(static_cast<std::uint64_t>(batch_rows_)));
      const T* x = z.data() + (r / HW) * EmbedDim * HW + r % HW;
      for (int d = 0; d < EmbedDim; ++d) {
        const Acc v = static_cast<Acc>(x[d * HW]);
        embed_[std::int64_t{d} * NumCodes + k] = v;
        embed_avg_[std::int64_t{d} * NumCodes + k] = v;
      }
      cluster_size_[k] = Acc(1);
      unused[k] = 0;
      restarted_.push_back(k);
    }
  }

  Acc decay_, one_minus_decay_, eps_;
  Tensor<Acc, Device> embed_, cluster_size_, embed_avg_;
  Tensor<std::int64_t, Cpu> counts_;
  Tensor<std::int32_t, Cpu> unused_steps_;
  std::vector<std::int32_t> restarted_;
  int restart_after_ = 0;
  bool pass_through_ = false;
  Generator restart_gen_{0x7E57A87ULL};

  Tensor<T, Device> out_, residual_, dz_, lookup_out_;
  Tensor<std::int32_t, Device> indices_;
  Tensor<Acc, Device> workspace_, embed_m2_, embed_t_, embed_norm_, smoothed_;
  Tensor<std::int64_t, Cpu> partial_counts_;
  Tensor<double, Cpu> partial_loss_;
  double commitment_ = 0, perplexity_ = 0;
  std::int64_t usage_ = 0, batch_rows_ = 0;
};

}  // namespace vqvae2::vq

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
