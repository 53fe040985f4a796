// Convolution ops: the declarations every backend implements, and the
// geometry they share. Layouts follow PyTorch: x [N, Cin, H, W],
// conv weight [Cout, Cin, KH, KW], transposed-conv weight [Cin, Cout, KH, KW].
//
// Every op has a plain reference implementation for any scalar type
// (ops/reference/conv.hpp: used for double-precision gradient checks and as the
// oracle for the fast paths) and a fast float path per device (ops/cpu/conv_dnnl.hpp).
#pragma once

#include <cstdint>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2::ops {

// Stride and (possibly asymmetric) zero padding of a 2-D convolution. Causal
// convolutions are plain convolutions with asymmetric padding.
struct ConvGeometry {
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  static ConvGeometry symmetric(int stride, int pad) { return ConvGeometry{stride, stride, pad, pad, pad, pad}; }

  std::int64_t conv_out_h(std::int64_t h, std::int64_t kh) const { return (h + pad_top + pad_bottom - kh) / stride_h + 1; }
  std::int64_t conv_out_w(std::int64_t w, std::int64_t kw) const {
    return (w + pad_left + pad_right - kw) / stride_w + 1;
  }
  // Transposed convolution output (PyTorch, output_padding 0).
  std::int64_t tconv_out_h(std::int64_t h, std::int64_t kh) const { return (h - 1) * stride_h - pad_top - pad_bottom + kh; }
  std::int64_t tconv_out_w(std::int64_t w, std::int64_t kw) const {
    return (w - 1) * stride_w - pad_left - pad_right + kw;
  }
  friend bool operator==(const ConvGeometry&, const ConvGeometry&) = default;
};

// Output shape of conv2d(x, w) with this geometry; fails with one sentence on a mismatch.
template <class T, class D>
Shape conv2d_output_shape(const char* where, const Tensor<T, D>& x, const Tensor<T, D>& w, const ConvGeometry& g) {
  VQVAE2_CHECK(x.rank() == 4 && w.rank() == 4, where, ": expected 4-D input and weight, got ", x.shape().str(), " and ",
               w.shape().str(), ".");
  VQVAE2_CHECK(x.dim(1) == w.dim(1), where, ": input has ", x.dim(1), " channels but the weight ", w.shape().str(),
               " expects ", w.dim(1), ".");
  std::int64_t oh = g.conv_out_h(x.dim(2), w.dim(2)), ow = g.conv_out_w(x.dim(3), w.dim(3));
  VQVAE2_CHECK(oh > 0 && ow > 0, where, ": input ", x.shape().str(), " is smaller than the kernel ", w.shape().str(),
               " with its padding.");
  return nchw(x.dim(0), w.dim(0), oh, ow);
}

template <class T, class D>
Shape conv_transpose2d_output_shape(const char* where, const Tensor<T, D>& x, const Tensor<T, D>& w,
                                    const ConvGeometry& g) {
  VQVAE2_CHECK(x.rank() == 4 && w.rank() == 4, where, ": expected 4-D input and weight, got ", x.shape().str(),
               " and ", w.shape().str(), ".");
  VQVAE2_CHECK(x.dim(1) == w.dim(0), where, ": input has ", x.dim(1), " channels but the weight ", w.shape().str(),
               " expects ", w.dim(0), ".");
  return nchw(x.dim(0), w.dim(1), g.tconv_out_h(x.dim(2), w.dim(2)), g.tconv_out_w(x.dim(3), w.dim(3)));
}

}  // namespace vqvae2::ops
