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
  if (db) {
    for (std::int64_t k = 0; k < K; ++k) {
      T acc = 0;
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t p = 0; p < OH * OW; ++p) acc += dy.data()[(n * K + k) * OH * OW + p];
      (*db)[k] += acc;
    }
  }
}

// y = conv_transpose2d(x, w) + b with PyTorch's weight layout [Cin, Cout, KH, KW]:
// input pixel (ih, iw) scatters into output (ih*stride - pad + i, iw*stride - pad + j).
template <class T, class D>
void conv_transpose2d_forward(const Tensor<T, D>& x, const Tensor<T, D>& w, const Tensor<T, D>* b, Tensor<T, D>& y,
                              const ConvGeometry& g) {
  Shape ys = conv_transpose2d_output_shape("conv_transpose2d", x, w, g);
  y.resize(ys);
  const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const std::int64_t K = w.dim(1), KH = w.dim(2), KW = w.dim(3), OH = ys[2], OW = ys[3];
  // Each (n, k) plane is owned by one thread, so the scatter has no races.
#pragma omp parallel for collapse(2)
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < K; ++k) {
      for (std::int64_t p = 0; p < OH * OW; ++p) y.data()[(n * K + k) * OH * OW + p] = b ? (*b)[k] : T(0);
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t ih = 0; ih < H; ++ih)
          for (std::int64_t iw = 0; iw < W; ++iw) {
            T v = x.at(n, c, ih, iw);
            for (std::int64_t i = 0; i < KH; ++i) {
              std::int64_t oh = ih * g.stride_h - g.pad_top + i;
              if (oh < 0 || oh >= OH) continue;
              for (std::int64_t j = 0; j < KW; ++j) {
                std::int64_t ow = iw * g.stride_w - g.pad_left + j;
                if (ow < 0 || ow >= OW) continue;
                y.at(n, k, oh, ow) += v * w.at(c, k, i, j);
              }
            }
          }
    }
}

// dx = conv_transpose2d_backward_data(dy, w): a plain convolution of dy. dx must already have the input's shape.
template <class T, class D>
void conv_transpose2d_backward_data(const Tensor<T, D>& dy, const Tensor<T, D>& w, Tensor<T, D>& dx,
                                    const ConvGeometry& g) {
  const std::int64_t N = dx.dim(0), C = dx.dim(1), H = dx.dim(2), W = dx.dim(3);
  const std::int64_t K = w.dim(1), KH = w.dim(2), KW = w.dim(3), OH = dy.dim(2), OW = dy.dim(3);
  VQVAE2_CHECK(dy.dim(0) == N && dy.dim(1) == K && w.dim(0) == C, "conv_transpose2d_backward_data: output gradient ",
               dy.shape().str(), ", weight ", w.shape().str(), " and input ", dx.shape().str(), " disagree.");
#pragma omp parallel for collapse(2)
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t ih = 0; ih < H; ++ih)
        for (std::int64_t iw = 0; iw < W; ++iw) {
          T acc = 0;
          for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t i = 0; i < KH; ++i) {
              std::int64_t oh = ih * g.stride_h - g.pad_top + i;
              if (oh < 0 || oh >= OH) continue;
              for (std::int64_t j = 0; j < KW; ++j) {
                std::int64_t ow = iw * g.stride_w - g.pad_left + j;
                if (ow < 0 || ow >= OW) continue;
                acc += dy.at(n, k, oh, ow) * w.at(c, k, i, j);
              }
            }
          dx.at(n, c, ih, iw) = acc;
        }
}

// dw (+)= conv_transpose2d_backward_weights(x, dy) in layout [Cin, Cout, KH, KW]; db (+)= sum of dy over N, H, W.
template <class T, class D>
void conv_transpose2d_backward_weights(const Tensor<T, D>& x, const Tensor<T, D>& dy, Tensor<T, D>& dw,
                                       Tensor<T, D>* db, const ConvGeometry& g, bool accumulate) {
  const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const std::int64_t K = dw.dim(1), KH = dw.dim(2), KW = dw.dim(3), OH = dy.dim(2), OW = dy.dim(3);
  VQVAE2_CHECK(dy.dim(0) == N && dy.dim(1) == K && dw.dim(0) == C, "conv_transpose2d_backward_weights: input ",
               x.shape().str(), ", output gradient ", dy.shape().str(), " and weight ", dw.shape().str(), " disagree.");
  if (!accumulate) {
    dw.zero();
    if (db) db->zero();
  }
#pragma omp parallel for collapse(2)
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t i = 0; i < KH; ++i)
        for (std::int64_t j = 0; j < KW; ++j) {
          T acc = 0;
          for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t ih = 0; ih < H; ++ih) {
              std::int64_t oh = ih * g.stride_h - g.pad_top + i;
              if (oh < 0 || oh >= OH) continue;
              for (std::int64_t iw = 0; iw < W; ++iw) {
                std::int64_t ow = iw * g.stride_w - g.pad_left + j;
                if (ow < 0 || ow >= OW) continue;
                acc += x.at(n, c, ih, iw) * dy.at(n, k, oh, ow);
              }
            }
          dw.at(c, k, i, j) += acc;
        }
  if (db) {
    for (std::int64_t k = 0; k < K; ++k) {
      T acc = 0;
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t p = 0; p < OH * OW; ++p) acc += dy.data()[(n * K + k) * OH * OW + p];
      (*db)[k] += acc;
    }
  }
}

}  // namespace vqvae2::ops::reference
