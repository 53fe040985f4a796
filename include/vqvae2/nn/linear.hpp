// Fully connected layer over rows: y = x W^T + b, x [M, in], W [out, in], y [M, out]
// (PixelSNAIL applies it to [B*H*W, C] after moving channels last).
//
// The GEMMs are Eigen maps over our row-major tensors. nvcc 13 floods Eigen's
// CUDA support headers with warnings, so a .cu translation unit gets plain
// loops for the CPU path instead (the CUDA backend brings its own cuBLAS path).
#pragma once

#include <cmath>
#include <cstdint>

#if !defined(__CUDACC__)
// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics
// (_mm256_undefined_pd) when Eigen's packet code is inlined; it is not ours to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop
#endif

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"

namespace vqvae2::nn {

namespace detail {

#if !defined(__CUDACC__)
template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// Unaligned maps: views (slice0) may start anywhere.
template <class T>
using CMap = Eigen::Map<const RowMajor<T>>;
template <class T>
using MMap = Eigen::Map<RowMajor<T>>;
#endif

inline void check_linear(const char* where, const Shape& x, const Shape& w) {
  VQVAE2_CHECK(x.rank == 2 && w.rank == 2 && x[1] == w[1], where, ": expected input [M, ", w[1], "] for weight ",
               w.str(), ", got ", x.str(), ".");
}

}  // namespace detail

// y = x W^T (+ b); y is resized to [M, out].
template <class T>
void linear_forward(Context<Cpu>&, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>* b,
                    Tensor<T, Cpu>& y) {
  detail::check_linear("linear_forward", x.shape(), w.shape());
  const std::int64_t M = x.dim(0), K = x.dim(1), N = w.dim(0);
  VQVAE2_CHECK(!b || b->numel() == N, "linear_forward: bias ", b ? b->shape().str() : "", " does not have ", N,
               " entries.");
  y.resize(Shape{M, N});
#if !defined(__CUDACC__)
  detail::CMap<T> X(x.data(), M, K), W(w.data(), N, K);
  detail::MMap<T> Y(y.data(), M, N);
  Y.noalias() = X * W.transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b->data(), N);
#else
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      T acc = b ? (*b)[n] : T(0);
      for (std::int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[n * K + k];
      y[m * N + n] = acc;
    }
#endif
}

// dx = dy W, written; dx is resized to [M, in].
template <class T>
void linear_backward_data(Context<Cpu>&, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx) {
  VQVAE2_CHECK(dy.rank() == 2 && w.rank() == 2 && dy.dim(1) == w.dim(0), "linear_backward_data: output gradient ",
               dy.shape().str(), " does not match weight ", w.shape().str(), ".");
  const std::int64_t M = dy.dim(0), N = w.dim(0), K = w.dim(1);
  dx.resize(Shape{M, K});
#if !defined(__CUDACC__)
  detail::CMap<T> DY(dy.data(), M, N), W(w.data(), N, K);
  detail::MMap<T> DX(dx.data(), M, K);
  DX.noalias() = DY * W;
#else
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t k = 0; k < K; ++k) {
      T acc = 0;
      for (std::int64_t n = 0; n < N; ++n) acc += dy[m * N + n] * w[n * K + k];
      dx[m * K + k] = acc;
    }
#endif
}

// dw += dy^T x and db += column sums of dy (db may be null).
template <class T>
void linear_backward_weights(Context<Cpu>&, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw,
                             Tensor<T, Cpu>* db) {
  VQVAE2_CHECK(x.rank() == 2 && dy.rank() == 2 && dw.rank() == 2 && x.dim(0) == dy.dim(0) && dw.dim(0) == dy.dim(1) &&
                   dw.dim(1) == x.dim(1) && (!db || db->numel() == dy.dim(1)),
               "linear_backward_weights: input ", x.shape().str(), ", output gradient ", dy.shape().str(),
               " and weight gradient ", dw.shape().str(), " disagree.");
  const std::int64_t M = x.dim(0), K = x.dim(1), N = dy.dim(1);
#if !defined(__CUDACC__)
  detail::CMap<T> X(x.data(), M, K), DY(dy.data(), M, N);
  detail::MMap<T> DW(dw.data(), N, K);
  DW.noalias() += DY.transpose() * X;
  if (db) Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db->data(), N) += DY.colwise().sum();
#else
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t k = 0; k < K; ++k) {
      T acc = 0;
      for (std::int64_t m = 0; m < M; ++m) acc += dy[m * N + n] * x[m * K + k];
      dw[n * K + k] += acc;
    }
    if (db) {
      T acc = 0;
      for (std::int64_t m = 0; m < M; ++m) acc += dy[m * N + n];
      (*db)[n] += acc;
    }
  }
#endif
}

// PyTorch's nn.Linear / nn.Conv2d default: kaiming_uniform(a = sqrt(5)) on the
// weight, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
namespace detail {
template <class T>
void linear_fan_in_init(Generator& gen, Tensor<T, Cpu>& t, std::int64_t fan_in) {
  const T bound = static_cast<T>(1.0 / std::sqrt(static_cast<double>(fan_in)));
  gen.uniform(t, -bound, bound);
}
}  // namespace detail

template <class T, class Device = Cpu>
class Linear {
 public:
  using TensorT = Tensor<T, Device>;

  Linear(int in_features, int out_features, bool bias = true) : in_(in_features), out_(out_features), has_bias_(bias) {
    VQVAE2_CHECK(in_features > 0 && out_features > 0, "Linear: feature counts must be positive, got in ", in_features,
                 " and out ", out_features, ".");
    weight_.reset(Shape{out_features, in_features});
    if (bias) bias_.reset(Shape{out_features});
  }

  void init(Generator& g) {
    detail::linear_fan_in_init(g, weight_.value, in_);
    if (has_bias_) detail::linear_fan_in_init(g, bias_.value, in_);
  }

  // The output is owned by the layer and valid until the next forward; x must stay alive until backward.
  const TensorT& forward(Context<Device>& ctx, const TensorT& x) {
    detail::check_linear("Linear::forward", x.shape(), weight_.shape());
    x_ = x;
    linear_forward(ctx, x, weight_.value, has_bias_ ? &bias_.value : nullptr, y_);
    return y_;
  }

  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    VQVAE2_CHECK(x_.rank() == 2, "Linear::backward: called without a forward.");
    VQVAE2_CHECK(dy.shape() == y_.shape(), "Linear::backward: output gradient ", dy.shape().str(),
                 " does not match the forward output ", y_.shape().str(), ".");
    linear_backward_weights(ctx, x_, dy, weight_.grad, has_bias_ ? &bias_.grad : nullptr);
    linear_backward_data(ctx, dy, weight_.value, dx_);
    // Drop the alias so the producer of x may reuse its buffer next step (resize() reallocates shared storage).
    x_ = TensorT();
    return dx_;
  }

  template <class F>
  void visit(F&& f) {
    f("weight", weight_);
    if (has_bias_) f("bias", bias_);
  }

  Parameter<T, Device>& weight() { return weight_; }
  Parameter<T, Device>& bias() { return bias_; }
  int in_features() const { return in_; }
  int out_features() const { return out_; }
  bool has_bias() const { return has_bias_; }

 private:
  int in_, out_;
  bool has_bias_;
  Parameter<T, Device> weight_, bias_;
  TensorT x_, y_, dx_;
};

}  // namespace vqvae2::nn
