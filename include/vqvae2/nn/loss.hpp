// Losses: softmax cross-entropy over the channels of NCHW logits (the
// PixelSNAIL head: logits [N, K, H, W], integer targets [N, H, W]) and mean
// squared error (the VQ-VAE reconstruction). Both reduce by the mean, like
// torch.nn.functional.cross_entropy / mse_loss, accumulate in double, and
// return the loss from forward and dL/d(input) from backward.
//
// The CPU kernels live in namespace ops below; a CUDA backend provides the
// same functions for Tensor<T, Cuda>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/ops/cpu/map.hpp"
#include "vqvae2/ops/elementwise.hpp"

namespace vqvae2::ops {

namespace loss_detail {
// Positions per tile. Channel k of a tile is `kTile` contiguous values, so
// the loops over positions vectorise; the K x kTile tile (256 KB for K = 512
// floats) stays in L2 between the passes over it.
inline constexpr std::int64_t kSoftmaxTile = 128;

// body(n, p0, len) for every tile of every image, spread over the threads.
template <class Body>
void for_tiles(std::int64_t n, std::int64_t plane, std::int64_t work, Body body) {
  const std::int64_t tiles = (plane + kSoftmaxTile - 1) / kSoftmaxTile;
#pragma omp parallel for schedule(static) if (work >= map_detail::kParallelMin)
  for (std::int64_t t = 0; t < n * tiles; ++t) {
    std::int64_t b = t / tiles, p0 = (t % tiles) * kSoftmaxTile;
    body(b, p0, std::min(kSoftmaxTile, plane - p0));
  }
}

// Per position of a tile: the maximum over channels (and its first index).
template <class T>
void tile_max(const T* base, std::int64_t k_count, std::int64_t plane, std::int64_t len, T* m, std::int32_t* arg) {
  for (std::int64_t j = 0; j < len; ++j) {
    m[j] = base[j];
    arg[j] = 0;
  }
  for (std::int64_t k = 1; k < k_count; ++k) {
    const T* row = base + k * plane;
#pragma omp simd simdlen(16)
    for (std::int64_t j = 0; j < len; ++j) {
      bool greater = row[j] > m[j];
      m[j] = greater ? row[j] : m[j];
      arg[j] = greater ? static_cast<std::int32_t>(k) : arg[j];
    }
  }
}
}  // namespace loss_detail

// Checks logits [N, K, H, W] against targets [N, H, W] with values in [0, K).
template <class T>
void check_class_targets(const char* op, const Tensor<T, Cpu>& logits, const Tensor<std::int32_t, Cpu>& targets) {
  VQVAE2_CHECK(logits.rank() == 4 && targets.rank() == 3 && targets.dim(0) == logits.dim(0) &&
                   targets.dim(1) == logits.dim(2) && targets.dim(2) == logits.dim(3) && logits.dim(1) > 0,
               op, ": logits ", logits.shape().str(), " and targets ", targets.shape().str(),
               " do not fit (expected [N, K, H, W] and [N, H, W]).");
  const std::int32_t* t = targets.data();
  const std::int64_t n = targets.numel(), k = logits.dim(1);
  std::int64_t bad = -1;
  for (std::int64_t i = 0; i < n && bad < 0; ++i)
    if (t[i] < 0 || t[i] >= k) bad = i;
  VQVAE2_CHECK(bad < 0, op, ": target ", (bad < 0 ? 0 : t[bad]), " at position ", bad, " is outside [0, ", k, ").");
}

// lse[n, h, w] = log sum_k exp(logits[n, k, h, w]). Returns the summed loss
// sum(lse - logits[target]) and sets `correct` to the number of positions whose
// arg-max (the first, on ties) is the target. Targets must be valid (check_class_targets).
template <class T>
double cross_entropy_forward(const Tensor<T, Cpu>& logits, const Tensor<std::int32_t, Cpu>& targets,
                             Tensor<T, Cpu>& lse, std::int64_t& correct) {
  VQVAE2_CHECK(lse.numel() == targets.numel(), "ops::cross_entropy_forward: log-sum-exp buffer ", lse.shape().str(),
               " does not hold one value per target ", targets.shape().str(), ".");
  const std::int64_t kc = logits.dim(1), plane = logits.dim(2) * logits.dim(3);
  const T* x = logits.data();
  const std::int32_t* tp = targets.data();
  T* lp = lse.data();
  double loss = 0;
  std::int64_t hits = 0;
  const std::int64_t tiles = (plane + loss_detail::kSoftmaxTile - 1) / loss_detail::kSoftmaxTile;
  const std::int64_t total = logits.dim(0) * tiles;
#pragma omp parallel for schedule(static) reduction(+ : loss, hits) if (logits.numel() >= map_detail::kParallelMin)
  for (std::int64_t t = 0; t < total; ++t) {
    const std::int64_t n = t / tiles, p0 = (t % tiles) * loss_detail::kSoftmaxTile;
    const std::int64_t len = std::min(loss_detail::kSoftmaxTile, plane - p0);
    const T* base = x + n * kc * plane + p0;
    alignas(64) T m[loss_detail::kSoftmaxTile];
    alignas(64) T s[loss_detail::kSoftmaxTile];
    alignas(64) std::int32_t arg[loss_detail::kSoftmaxTile];
    loss_detail::tile_max(base, kc, plane, len, m, arg);
    for (std::int64_t j = 0; j < len; ++j) s[j] = T(0);
    for (std::int64_t k = 0; k < kc; ++k) {
      const T* row = base + k * plane;
#pragma omp simd simdlen(16)
      for (std::int64_t j = 0; j < len; ++j) s[j] += math::exp(row[j] - m[j]);
    }
    for (std::int64_t j = 0; j < len; ++j) {
      const std::int64_t pos = n * plane + p0 + j;
      const std::int32_t target = tp[pos];
      const double l = static_cast<double>(m[j]) + std::log(static_cast<double>(s[j]));
      lp[pos] = static_cast<T>(l);
      loss += l - static_cast<double>(base[target * plane + j]);
      hits += arg[j] == target ? 1 : 0;
    }
  }
  correct = hits;
  return loss;
}

// dlogits = scale * (softmax(logits) - one_hot(targets)), the softmax taken from lse.
template <class T>
void cross_entropy_backward(const Tensor<T, Cpu>& logits, const Tensor<std::int32_t, Cpu>& targets,
                            const Tensor<T, Cpu>& lse, T scale, Tensor<T, Cpu>& dlogits) {
  VQVAE2_CHECK(dlogits.shape() == logits.shape() && lse.numel() == targets.numel(),
               "ops::cross_entropy_backward: gradient ", dlogits.shape().str(), " or log-sum-exp ", lse.shape().str(),
               " does not fit the logits ", logits.shape().str(), ".");
  const std::int64_t kc = logits.dim(1), plane = logits.dim(2) * logits.dim(3);
  const T* x = logits.data();
  const std::int32_t* tp = targets.data();
  const T* lp = lse.data();
  T* g = dlogits.data();
  loss_detail::for_tiles(logits.dim(0), plane, logits.numel(), [&](std::int64_t n, std::int64_t p0, std::int64_t len) {
    const T* l = lp + n * plane + p0;
    const std::int32_t* tt = tp + n * plane + p0;
    for (std::int64_t k = 0; k < kc; ++k) {
      const std::int64_t off = (n * kc + k) * plane + p0;
      const T* row = x + off;
      T* out = g + off;
      const std::int32_t kk = static_cast<std::int32_t>(k);
#pragma omp simd simdlen(16)
      for (std::int64_t j = 0; j < len; ++j) {
        T p = math::exp(row[j] - l[j]);
        out[j] = scale * (tt[j] == kk ? p - T(1) : p);
      }
    }
  });
}

// probs = softmax(logits / temperature) over the channels of NCHW logits
// (temperature > 0; sampling uses it). probs may alias logits.
template <class T>
void softmax_channels(const Tensor<T, Cpu>& logits, Tensor<T, Cpu>& probs, T temperature = T(1)) {
  VQVAE2_CHECK(logits.rank() == 4 && probs.shape() == logits.shape() && temperature > T(0),
               "ops::softmax_channels: expected NCHW logits, an output of the same shape and a positive temperature, "
               "got ",
               logits.shape().str(), ", ", probs.shape().str(), " and ", temperature, ".");
  const std::int64_t kc = logits.dim(1), plane = logits.dim(2) * logits.dim(3);
  const T inv_t = T(1) / temperature;
  const T* x = logits.data();
  T* y = probs.data();
  loss_detail::for_tiles(logits.dim(0), plane, logits.numel(), [&](std::int64_t n, std::int64_t p0, std::int64_t len) {
    const T* base = x + n * kc * plane + p0;
    T* obase = y + n * kc * plane + p0;
    alignas(64) T m[loss_detail::kSoftmaxTile];
    alignas(64) T s[loss_detail::kSoftmaxTile];
    alignas(64) std::int32_t arg[loss_detail::kSoftmaxTile];
    loss_detail::tile_max(base, kc, plane, len, m, arg);
    for (std::int64_t j = 0; j < len; ++j) s[j] = T(0);
    for (std::int64_t k = 0; k < kc; ++k) {
      const T* row = base + k * plane;
      T* out = obase + k * plane;
#pragma omp simd simdlen(16)
      for (std::int64_t j = 0; j < len; ++j) {
        T e = math::exp((row[j] - m[j]) * inv_t);
        out[j] = e;
        s[j] += e;
      }
    }
    for (std::int64_t j = 0; j < len; ++j) s[j] = T(1) / s[j];
    for (std::int64_t k = 0; k < kc; ++k) {
      T* out = obase + k * plane;
#pragma omp simd simdlen(16)
      for (std::int64_t j = 0; j < len; ++j) out[j] *= s[j];
    }
  });
}

// dpred = scale * 2 (pred - target) / numel.
template <class T>
struct MseGrad {
  T factor;
  VQVAE2_HD T operator()(T p, T t) const { return factor * (p - t); }
};

}  // namespace vqvae2::ops

namespace vqvae2::nn {

// Mean softmax cross-entropy over the N*H*W positions of logits [N, K, H, W]
// against class indices [N, H, W]. forward returns the loss and records the
// accuracy (arg-max equals target); backward returns dL/dlogits. The layer
// keeps a view of the logits and targets, which must stay unchanged until
// backward, and one log-sum-exp per position instead of the probabilities.
template <class T, class Device = Cpu>
class SoftmaxCrossEntropy {
 public:
  double forward(Context<Device>&, const Tensor<T, Device>& logits, const Tensor<std::int32_t, Device>& targets) {
    ops::check_class_targets("nn::SoftmaxCrossEntropy", logits, targets);
    logits_ = borrow(logits);
    targets_ = borrow(targets);
    lse_.resize(targets.shape());
    std::int64_t correct = 0;
    const double total = ops::cross_entropy_forward(logits, targets, lse_, correct);
    const auto count = static_cast<double>(targets.numel());
    loss_ = count > 0 ? total / count : std::numeric_limits<double>::quiet_NaN();  // torch: mean of nothing is NaN
    accuracy_ = count > 0 ? static_cast<double>(correct) / count : 0.0;
    return loss_;
  }

  // dL/dlogits for dL/dloss = scale (1 when the cross-entropy is the loss).
  const Tensor<T, Device>& backward(Context<Device>&, T scale = T(1)) {
    VQVAE2_CHECK(logits_.rank() == 4, "nn::SoftmaxCrossEntropy::backward: called before forward.");
    grad_.resize(logits_.shape());
    ops::cross_entropy_backward(logits_, targets_, lse_, static_cast<T>(scale / static_cast<T>(targets_.numel())),
                                grad_);
    return grad_;
  }

  double loss() const { return loss_; }
  // Fraction of positions whose most likely class is the target.
  double accuracy() const { return accuracy_; }

 private:
  Tensor<T, Device> logits_;
  Tensor<std::int32_t, Device> targets_;
  Tensor<T, Device> lse_, grad_;
  double loss_ = 0, accuracy_ = 0;
};

// Mean squared error over all elements: mean((pred - target)^2).
template <class T, class Device = Cpu>
class MSELoss {
 public:
  double forward(Context<Device>&, const Tensor<T, Device>& pred, const Tensor<T, Device>& target) {
    VQVAE2_CHECK(pred.shape() == target.shape() && pred.numel() > 0, "nn::MSELoss: prediction ", pred.shape().str(),
                 " and target ", target.shape().str(), " differ in shape or are empty.");
    pred_ = borrow(pred);
    target_ = borrow(target);
    loss_ = ops::sum_squared_difference(pred, target) / static_cast<double>(pred.numel());
    return loss_;
  }

  // dL/dpred for dL/dloss = scale.
  const Tensor<T, Device>& backward(Context<Device>&, T scale = T(1)) {
    VQVAE2_CHECK(pred_.rank() > 0, "nn::MSELoss::backward: called before forward.");
    grad_.resize(pred_.shape());
    ops::zip(pred_, target_, grad_, ops::MseGrad<T>{scale * T(2) / static_cast<T>(pred_.numel())});
    return grad_;
  }

  double loss() const { return loss_; }

 private:
  Tensor<T, Device> pred_, target_, grad_;
  double loss_ = 0;
};

}  // namespace vqvae2::nn
