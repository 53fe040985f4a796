// A weight-normalised convolution of a one-hot map, computed as a gather.
//
// conv(one_hot(codes)) at output (b, o, i, j) is bias[o] plus, for every kernel tap
// (ki, kj) whose input position (i + ki - pad_top, j + kj - pad_left) lies inside the
// map, the weight entry w[o, codes[that position], ki, kj]: one embedding-style lookup
// per tap instead of a dense convolution over n_class channels that are almost all
// zero (512 classes: the dense convolution spends 511/512 of its FLOPs on zeros).
// Backward scatters dL/dy into the weight gradient at the same entries; weight norm
// (and a weight mask, if set) goes through the wrapped WNConv2d, so the parameters
// (weight_g, weight_v, bias) are exactly those of torch's weight_norm(nn.Conv2d).
//
// The dense path (forward_dense / backward_dense) runs the same layer on a float
// one-hot (or any) map and returns dL/d(map): the input gradient that the gather
// cannot give, for causality tests and other differentiable uses.
//
// Layouts: the gather keeps the weight transposed to [kh*kw, n_class, out] so that a
// lookup reads one contiguous row of `out` values, and accumulates channels-last.
#pragma once

#include <algorithm>
#include <cstdint>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"

namespace vqvae2::nn {

// out[b, c, h, w] = (codes[b, h, w] == c), for codes [B, H, W] in [0, n_class).
template <class T>
void one_hot(const Tensor<std::int32_t, Cpu>& codes, int n_class, Tensor<T, Cpu>& out) {
  VQVAE2_CHECK(codes.rank() == 3, "nn::one_hot: expected codes [B, H, W], got ", codes.shape().str(), ".");
  const std::int64_t B = codes.dim(0), H = codes.dim(1), W = codes.dim(2);
  out.resize(nchw(B, n_class, H, W));
  out.zero();
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t p = 0; p < H * W; ++p) {
      const std::int32_t c = codes[b * H * W + p];
      VQVAE2_CHECK(c >= 0 && c < n_class, "nn::one_hot: code ", c, " at batch ", b, ", position ", p,
                   " is outside [0, ", n_class, ").");
      out[(b * n_class + c) * H * W + p] = T(1);
    }
}

template <class T, class Device = Cpu>
class OneHotConv2d {
 public:
  using TensorT = Tensor<T, Device>;

  OneHotConv2d(int n_class, int out_channels, int kernel_h, int kernel_w, ops::ConvGeometry geometry = {},
               bool bias = true)
      : n_class_(n_class), conv_(n_class, out_channels, kernel_h, kernel_w, geometry, bias) {
    VQVAE2_CHECK(geometry.stride_h == 1 && geometry.stride_w == 1, "OneHotConv2d: only stride 1 is supported, got ",
                 geometry.stride_h, "x", geometry.stride_w, ".");
  }

  void init(Generator& g) { conv_.init(g); }

  // codes [B, H, W] (int32 in [0, n_class)) -> [B, out, H', W']. codes must stay alive
  // and unchanged until backward.
  const TensorT& forward(Context<Device>& ctx, const Tensor<std::int32_t, Device>& codes) {
    VQVAE2_CHECK(codes.rank() == 3, "OneHotConv2d::forward: expected codes [B, H, W], got ", codes.shape().str(), ".");
    const std::int32_t* cp = codes.data();
    for (std::int64_t i = 0, n = codes.numel(); i < n; ++i)
      VQVAE2_CHECK(cp[i] >= 0 && cp[i] < n_class_, "OneHotConv2d::forward: code ", cp[i], " at flat index ", i,
                   " is outside [0, ", n_class_, ").");
    dense_ = false;
    codes_ = Tensor<std::int32_t, Device>::wrap(const_cast<std::int32_t*>(cp), codes.shape());
    const ops::ConvGeometry& g = conv_.geometry();
    const std::int64_t B = codes.dim(0), H = codes.dim(1), W = codes.dim(2);
    const std::int64_t KH = conv_.kernel_h(), KW = conv_.kernel_w(), O = conv_.out_channels(), C = n_class_;
    const std::int64_t Ho = g.conv_out_h(H, KH), Wo = g.conv_out_w(W, KW);
    VQVAE2_CHECK(Ho > 0 && Wo > 0, "OneHotConv2d::forward: codes ", codes.shape().str(),
                 " are smaller than the kernel with its padding.");
    // The effective weight, transposed to [tap, class, out].
    const TensorT& w = conv_.compute_weight(ctx);
    wt_.resize(Shape{KH * KW, C, O});
    {
      const T* wp = w.data();
      T* tp = wt_.data();
#pragma omp parallel for if (O * C * KH * KW > 65536)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t o = 0; o < O; ++o)
          for (std::int64_t t = 0; t < KH * KW; ++t) tp[(t * C + c) * O + o] = wp[(o * C + c) * KH * KW + t];
    }
    acc_.resize(Shape{B * Ho * Wo, O});
    const T* bias = conv_.has_bias() ? conv_.bias().value.data() : nullptr;
    const T* tp = wt_.data();
    T* ap = acc_.data();
#pragma omp parallel for collapse(2)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          T* acc = ap + ((b * Ho + i) * Wo + j) * O;
          if (bias)
            std::copy(bias, bias + O, acc);
          else
            std::fill(acc, acc + O, T(0));
          for (std::int64_t ki = 0; ki < KH; ++ki) {
            const std::int64_t si = i + ki - g.pad_top;
            if (si < 0 || si >= H) continue;
            for (std::int64_t kj = 0; kj < KW; ++kj) {
              const std::int64_t sj = j + kj - g.pad_left;
              if (sj < 0 || sj >= W) continue;
              const T* row = tp + ((ki * KW + kj) * C + cp[(b * H + si) * W + sj]) * O;
              for (std::int64_t o = 0; o < O; ++o) acc[o] += row[o];
            }
          }
        }
    y_.resize(nchw(B, O, Ho, Wo));
    tokens_to_nchw(acc_, y_);
    return y_;
  }

  // Adds dL/dweight_g, dL/dweight_v and dL/dbias (there is no input gradient for codes).
  void backward(Context<Device>& ctx, const TensorT& dy) {
    VQVAE2_CHECK(!dense_ && codes_.rank() == 3, "OneHotConv2d::backward: called without a forward on codes.");
    expect_shape("OneHotConv2d::backward", dy, y_.shape());
    const ops::ConvGeometry& g = conv_.geometry();
    const std::int64_t B = codes_.dim(0), H = codes_.dim(1), W = codes_.dim(2);
    const std::int64_t KH = conv_.kernel_h(), KW = conv_.kernel_w(), O = conv_.out_channels(), C = n_class_;
    const std::int64_t Ho = y_.dim(2), Wo = y_.dim(3);
    nchw_to_tokens(dy, acc_);  // [B*Ho*Wo, O]
    const T* dp = acc_.data();
    const std::int32_t* cp = codes_.data();
    dwt_.resize(Shape{KH * KW, C, O});
    dwt_.zero();
    T* gp = dwt_.data();
    // One tap per task: each owns its slice of the transposed weight gradient.
#pragma omp parallel for schedule(dynamic)
    for (std::int64_t t = 0; t < KH * KW; ++t) {
      const std::int64_t ki = t / KW, kj = t % KW;
      T* gt = gp + t * C * O;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < Ho; ++i) {
          const std::int64_t si = i + ki - g.pad_top;
          if (si < 0 || si >= H) continue;
          for (std::int64_t j = 0; j < Wo; ++j) {
            const std::int64_t sj = j + kj - g.pad_left;
            if (sj < 0 || sj >= W) continue;
            T* row = gt + cp[(b * H + si) * W + sj] * O;
            const T* d = dp + ((b * Ho + i) * Wo + j) * O;
            for (std::int64_t o = 0; o < O; ++o) row[o] += d[o];
          }
        }
    }
    dw_.resize(conv_.weight_v().shape());
    T* wp = dw_.data();
#pragma omp parallel for if (O * C * KH * KW > 65536)
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t t = 0; t < KH * KW; ++t) wp[(o * C + c) * KH * KW + t] = gp[(t * C + c) * O + o];
    if (conv_.has_bias()) {
      db_.resize(Shape{O});
      db_.zero();
      for (std::int64_t p = 0, n = B * Ho * Wo; p < n; ++p)
        for (std::int64_t o = 0; o < O; ++o) db_[o] += dp[p * O + o];
    }
    conv_.accumulate_weight_grad(ctx, dw_, conv_.has_bias() ? &db_ : nullptr);
    codes_ = Tensor<std::int32_t, Device>();
  }

  // The same layer on a dense map x [B, n_class, H, W] (a float one-hot, or a perturbed one).
  const TensorT& forward_dense(Context<Device>& ctx, const TensorT& x) {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) == n_class_, "OneHotConv2d::forward_dense: expected [B, ", n_class_,
                 ", H, W], got ", x.shape().str(), ".");
    dense_ = true;
    return conv_.forward(ctx, x);
  }
  // Returns dL/dx of forward_dense and adds the parameter gradients.
  const TensorT& backward_dense(Context<Device>& ctx, const TensorT& dy) {
    VQVAE2_CHECK(dense_, "OneHotConv2d::backward_dense: the last forward was not forward_dense.");
    return conv_.backward(ctx, dy);
  }

  template <class F>
  void visit(F&& f) {
    conv_.visit(f);
  }

  int n_class() const { return n_class_; }
  // The weight-normalised convolution that holds the parameters (geometry, mask, compute_weight()).
  WNConv2d<T, Device>& conv() { return conv_; }
  Parameter<T, Device>& weight_g() { return conv_.weight_g(); }
  Parameter<T, Device>& weight_v() { return conv_.weight_v(); }
  Parameter<T, Device>& bias() { return conv_.bias(); }

 private:
  // [B*L, C] <-> [B, C, H, W] (L = H*W).
  static void tokens_to_nchw(const TensorT& a, TensorT& y) {
    const std::int64_t B = y.dim(0), C = y.dim(1), L = y.dim(2) * y.dim(3);
    const T* ap = a.data();
    T* yp = y.data();
#pragma omp parallel for collapse(2) if (B * C * L > 32768)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t l = 0; l < L; ++l) yp[(b * C + c) * L + l] = ap[(b * L + l) * C + c];
  }
  static void nchw_to_tokens(const TensorT& x, TensorT& a) {
    const std::int64_t B = x.dim(0), C = x.dim(1), L = x.dim(2) * x.dim(3);
    a.resize(Shape{B * L, C});
    const T* xp = x.data();
    T* ap = a.data();
#pragma omp parallel for collapse(2) if (B * C * L > 32768)
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t c = 0; c < C; ++c) ap[(b * L + l) * C + c] = xp[(b * C + c) * L + l];
  }

  int n_class_;
  bool dense_ = false;
  WNConv2d<T, Device> conv_;
  Tensor<std::int32_t, Device> codes_;
  TensorT wt_, acc_, y_, dwt_, dw_, db_;
};

}  // namespace vqvae2::nn
