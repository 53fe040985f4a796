// Plain loop convolutions for any scalar type: the oracle for every fast path
// and the engine of the double-precision gradient checks. Not fast.
#pragma once

#include "vqvae2/ops/conv.hpp"

namespace vqvae2::ops::reference {

// y = conv2d(x, w) + b. y is resized. b may be null.
template <class T, class D>
void conv2d_forward(const Tensor<T, D>& x, const Tensor<T, D>& w, const Tensor<T, D>* b, Tensor<T, D>& y,
                    const ConvGeometry& g) {
  Shape ys = conv2d_output_shape("conv2d", x, w, g);
  y.resize(ys);
  const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const std::int64_t K = w.dim(0), KH = w.dim(2), KW = w.dim(3), OH = ys[2], OW = ys[3];
#pragma omp parallel for collapse(2)
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow) {
          T acc = b ? (*b)[k] : T(0);
          for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t i = 0; i < KH; ++i) {
              std::int64_t ih = oh * g.stride_h - g.pad_top + i;
              if (ih < 0 || ih >= H) continue;
              for (std::int64_t j = 0; j < KW; ++j) {
                std::int64_t iw = ow * g.stride_w - g.pad_left + j;
                if (iw < 0 || iw >= W) continue;
                acc += x.at(n, c, ih, iw) * w.at(k, c, i, j);
              }
            }
          y.at(n, k, oh, ow) = acc;
        }
}

// dx = conv2d_backward_data(dy, w). dx must already have the input's shape.
template <class T, class D>
void conv2d_backward_data(const Tensor<T, D>& dy, const Tensor<T, D>& w, Tensor<T, D>& dx, const ConvGeometry& g) {
  const std::int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  const std::int64_t K = w.dim(0), KH = w.dim(2), KW = w.dim(3), OH = dy.dim(2), OW = dy.dim(3);
  VQVAE2_CHECK(dy.dim(0) == N && dy.dim(1) == K && w.dim(1) == C, "conv2d_backward_data: output gradient ",
               dy.shape().str(), ", weight ", w.shape().str(), " and input ", dx.shape().str(), " disagree.");
  dx.zero();
#pragma omp parallel for collapse(2)
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t oh = 0; oh < OH; ++oh)
          for (std::int64_t ow = 0; ow < OW; ++ow) {
            T d = dy.at(n, k, oh, ow);
            for (std::int64_t i = 0; i < KH; ++i) {
              std::int64_t ih = oh * g.stride_h - g.pad_top + i;
              if (ih < 0 || ih >= H) continue;
              for (std::int64_t j = 0; j < KW; ++j) {
                std::int64_t iw = ow * g.stride_w - g.pad_left + j;
                if (iw < 0 || iw >= W) continue;
                dx.at(n, c, ih, iw) += d * w.at(k, c, i, j);
              }
            }
          }
}

// db += sum of dy over N, H and W.
template <class T, class D>
void add_bias_grad(const Tensor<T, D>& dy, Tensor<T, D>& db) {
  const std::int64_t K = dy.dim(1), plane = dy.dim(2) * dy.dim(3);
  for (std::int64_t k = 0; k < K; ++k) {
    T acc = 0;
    for (std::int64_t n = 0; n < dy.dim(0); ++n)
      for (std::int64_t p = 0; p < plane; ++p) acc += dy.data()[(n * K + k) * plane + p];
    db[k] += acc;
  }
}

// dw (+)= conv2d_backward_weights(x, dy); db (+)= sum of dy over N, H, W when db is given.
template <class T, class D>
void conv2d_backward_weights(const Tensor<T, D>& x, const Tensor<T, D>& dy, Tensor<T, D>& dw, Tensor<T, D>* db,
                             const ConvGeometry& g, bool accumulate) {
  const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const std::int64_t K = dw.dim(0), KH = dw.dim(2), KW = dw.dim(3), OH = dy.dim(2), OW = dy.dim(3);
  VQVAE2_CHECK(dy.dim(0) == N && dy.dim(1) == K && dw.dim(1) == C, "conv2d_backward_weights: input ", x.shape().str(),
               ", output gradient ", dy.shape().str(), " and weight ", dw.shape().str(), " disagree.");
  if (!accumulate) {
    dw.zero();
    if (db) db->zero();
  }
#pragma omp parallel for collapse(2)
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t i = 0; i < KH; ++i)
        for (std::int64_t j = 0; j < KW; ++j) {
          T acc = 0;
          for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t oh = 0; oh < OH; ++oh) {
              std::int64_t ih = oh * g.stride_h - g.pad_top + i;
              if (ih < 0 || ih >= H) continue;
              for (std::int64_t ow = 0; ow < OW; ++ow) {
                std::int64_t iw = ow * g.stride_w - g.pad_left + j;
                if (iw < 0 || iw >= W) continue;
                acc += x.at(n, c, ih, iw) * dy.at(n, k, oh, ow);
              }
            }
          dw.at(k, c, i, j) += acc;
        }
  if (db) add_bias_grad(dy, *db);
}

// The transposed convolution is the adjoint of the convolution whose weight has the
// same memory layout ([Cin, Cout, KH, KW] read as [K, C, KH, KW]): its forward is that
// convolution's backward-data, its backward-data that convolution's forward, and its
// weight gradient that convolution's weight gradient with input and output swapped.

// y = conv_transpose2d(x, w) + b (PyTorch, output_padding 0). y is resized. b may be null.
template <class T, class D>
void conv_transpose2d_forward(const Tensor<T, D>& x, const Tensor<T, D>& w, const Tensor<T, D>* b, Tensor<T, D>& y,
                              const ConvGeometry& g) {
  y.resize(conv_transpose2d_output_shape("conv_transpose2d", x, w, g));
  conv2d_backward_data(x, w, y, g);
  if (b) {
    const std::int64_t K = y.dim(1), plane = y.dim(2) * y.dim(3);
    for (std::int64_t n = 0; n < y.dim(0); ++n)
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t p = 0; p < plane; ++p) y.data()[(n * K + k) * plane + p] += (*b)[k];
  }
}

// dx = conv_transpose2d_backward_data(dy, w). dx must already have the input's shape.
template <class T, class D>
void conv_transpose2d_backward_data(const Tensor<T, D>& dy, const Tensor<T, D>& w, Tensor<T, D>& dx,
                                    const ConvGeometry& g) {
  VQVAE2_CHECK(
      dy.rank() == 4 && dx.rank() == 4 && dy.dim(0) == dx.dim(0) && dy.dim(1) == w.dim(1) && w.dim(0) == dx.dim(1),
      "conv_transpose2d_backward_data: output gradient ", dy.shape().str(), ", weight ", w.shape().str(), " and input ",
      dx.shape().str(), " disagree.");
  Tensor<T, D> out;  // the reference path may allocate; the fast paths do not
  conv2d_forward(dy, w, static_cast<const Tensor<T, D>*>(nullptr), out, g);
  VQVAE2_CHECK(out.shape() == dx.shape(), "conv_transpose2d_backward_data: input ", dx.shape().str(),
               " does not match the geometry of output gradient ", dy.shape().str(), ".");
  dx.copy_from(out);
}

// dw (+)= conv_transpose2d_backward_weights(x, dy) in layout [Cin, Cout, KH, KW]; db (+)= sum of dy over N, H, W.
template <class T, class D>
void conv_transpose2d_backward_weights(const Tensor<T, D>& x, const Tensor<T, D>& dy, Tensor<T, D>& dw,
                                       Tensor<T, D>* db, const ConvGeometry& g, bool accumulate) {
  conv2d_backward_weights(dy, x, dw, static_cast<Tensor<T, D>*>(nullptr), g, accumulate);
  if (db) {
    if (!accumulate) db->zero();
    add_bias_grad(dy, *db);
  }
}

}  // namespace vqvae2::ops::reference
