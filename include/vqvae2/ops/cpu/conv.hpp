// CPU convolution entry points used by the layers. float goes through oneDNN
// (ops/cpu/conv_dnnl.hpp); every other scalar type (double for gradient checks)
// and any translation unit compiled by nvcc go through the reference loops.
// Shapes are validated here, so both paths reject bad input the same way.
#pragma once

#include <type_traits>

#include "vqvae2/core/context.hpp"
#include "vqvae2/ops/conv.hpp"
#include "vqvae2/ops/reference/conv.hpp"

#if !defined(__CUDACC__)
#include "vqvae2/ops/cpu/conv_dnnl.hpp"
#define VQVAE2_CONV_DNNL 1
#else
#define VQVAE2_CONV_DNNL 0
#endif

namespace vqvae2::ops {

namespace detail {
template <class T, class D>
void check_bias(const char* where, const Tensor<T, D>* b, std::int64_t channels) {
  VQVAE2_CHECK(!b || (b->rank() == 1 && b->dim(0) == channels), where, ": bias ", b->shape().str(),
               " does not match the ", channels, " output channels.");
}
template <class T, class D>
void check_same(const char* where, const char* what, const Shape& got, const Shape& expected) {
  VQVAE2_CHECK(got == expected, where, ": ", what, " has shape ", got.str(), " but the input and weight imply ",
               expected.str(), ".");
}
// An empty batch contributes nothing: weight gradients are cleared, or left as they are when accumulating.
template <class T, class D>
void clear_unless_accumulating(Tensor<T, D>& dw, Tensor<T, D>* db, bool accumulate) {
  if (accumulate) return;
  dw.zero();
  if (db) db->zero();
}
template <class T>
constexpr bool use_dnnl_v = VQVAE2_CONV_DNNL&& std::is_same_v<T, float>;
}  // namespace detail

// y = conv2d(x, w) + b (b may be null); y is resized.
template <class T>
void conv2d_forward(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w,
                    const std::type_identity_t<Tensor<T, Cpu>>* b, Tensor<T, Cpu>& y, const ConvGeometry& g) {
  Shape ys = conv2d_output_shape("conv2d_forward", x, w, g);
  detail::check_bias("conv2d_forward", b, w.dim(0));
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    y.resize(ys);
    if (y.numel() == 0) return;
    onednn::conv2d_forward(ctx, x, w, b, y, g);
  } else
#endif
  {
    reference::conv2d_forward(x, w, b, y, g);
  }
}

// dx = dL/dx of conv2d; dx must already have the input's shape and is overwritten.
template <class T>
void conv2d_backward_data(Context<Cpu>& ctx, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx,
                          const ConvGeometry& g) {
  detail::check_same<T, Cpu>("conv2d_backward_data", "the output gradient", dy.shape(),
                             conv2d_output_shape("conv2d_backward_data", dx, w, g));
  if (dx.numel() == 0) return;
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    onednn::conv2d_backward_data(ctx, dy, w, dx, g);
  } else
#endif
  {
    reference::conv2d_backward_data(dy, w, dx, g);
  }
}

// dw and db (optional) are overwritten, or added to when accumulate is true.
template <class T>
void conv2d_backward_weights(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw,
                             std::type_identity_t<Tensor<T, Cpu>>* db, const ConvGeometry& g, bool accumulate) {
  detail::check_same<T, Cpu>("conv2d_backward_weights", "the output gradient", dy.shape(),
                             conv2d_output_shape("conv2d_backward_weights", x, dw, g));
  detail::check_bias("conv2d_backward_weights", static_cast<const Tensor<T, Cpu>*>(db), dw.dim(0));
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    if (dy.numel() == 0) return detail::clear_unless_accumulating(dw, db, accumulate);
    onednn::conv2d_backward_weights(ctx, x, dy, dw, db, g, accumulate);
  } else
#endif
  {
    reference::conv2d_backward_weights(x, dy, dw, db, g, accumulate);
  }
}

// y = conv_transpose2d(x, w) + b with w [Cin, Cout, KH, KW] (PyTorch layout); y is resized.
template <class T>
void conv_transpose2d_forward(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w,
                              const std::type_identity_t<Tensor<T, Cpu>>* b, Tensor<T, Cpu>& y, const ConvGeometry& g) {
  Shape ys = conv_transpose2d_output_shape("conv_transpose2d_forward", x, w, g);
  VQVAE2_CHECK(ys[2] > 0 && ys[3] > 0, "conv_transpose2d_forward: input ", x.shape().str(), " with weight ",
               w.shape().str(), " and this padding gives an empty output.");
  detail::check_bias("conv_transpose2d_forward", b, w.dim(1));
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    y.resize(ys);
    if (y.numel() == 0) return;
    onednn::conv_transpose2d_forward(ctx, x, w, b, y, g);
  } else
#endif
  {
    reference::conv_transpose2d_forward(x, w, b, y, g);
  }
}

// dx = dL/dx of conv_transpose2d; dx must already have the input's shape and is overwritten.
template <class T>
void conv_transpose2d_backward_data(Context<Cpu>& ctx, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w,
                                    Tensor<T, Cpu>& dx, const ConvGeometry& g) {
  detail::check_same<T, Cpu>("conv_transpose2d_backward_data", "the output gradient", dy.shape(),
                             conv_transpose2d_output_shape("conv_transpose2d_backward_data", dx, w, g));
  if (dx.numel() == 0) return;
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    onednn::conv_transpose2d_backward_data(ctx, dy, w, dx, g);
  } else
#endif
  {
    reference::conv_transpose2d_backward_data(dy, w, dx, g);
  }
}

// dw [Cin, Cout, KH, KW] and db (optional) are overwritten, or added to when accumulate is true.
template <class T>
void conv_transpose2d_backward_weights(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy,
                                       Tensor<T, Cpu>& dw, std::type_identity_t<Tensor<T, Cpu>>* db,
                                       const ConvGeometry& g, bool accumulate) {
  detail::check_same<T, Cpu>("conv_transpose2d_backward_weights", "the output gradient", dy.shape(),
                             conv_transpose2d_output_shape("conv_transpose2d_backward_weights", x, dw, g));
  detail::check_bias("conv_transpose2d_backward_weights", static_cast<const Tensor<T, Cpu>*>(db), dw.dim(1));
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    if (dy.numel() == 0) return detail::clear_unless_accumulating(dw, db, accumulate);
    onednn::conv_transpose2d_backward_weights(ctx, x, dy, dw, db, g, accumulate);
  } else
#endif
  {
    reference::conv_transpose2d_backward_weights(x, dy, dw, db, g, accumulate);
  }
}

// Both backward ops of conv2d at once: dx (=, must have the input's shape) and dw, db
// (+= when accumulate). The fast path reorders dy once for the two.
template <class T>
void conv2d_backward(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>& dy,
                     Tensor<T, Cpu>& dx, Tensor<T, Cpu>& dw, std::type_identity_t<Tensor<T, Cpu>>* db,
                     const ConvGeometry& g, bool accumulate) {
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    detail::check_same<T, Cpu>("conv2d_backward", "the output gradient", dy.shape(),
                               conv2d_output_shape("conv2d_backward", x, w, g));
    detail::check_same<T, Cpu>("conv2d_backward", "the input gradient", dx.shape(), x.shape());
    detail::check_same<T, Cpu>("conv2d_backward", "the weight gradient", dw.shape(), w.shape());
    detail::check_bias("conv2d_backward", static_cast<const Tensor<T, Cpu>*>(db), w.dim(0));
    if (dy.numel() > 0) {
      onednn::conv2d_backward(ctx, x, w, dy, dx, dw, db, g, accumulate);
      return;
    }
  }
#endif
  conv2d_backward_data(ctx, dy, w, dx, g);
  conv2d_backward_weights(ctx, x, dy, dw, db, g, accumulate);
}

// Both backward ops of conv_transpose2d at once (see conv2d_backward).
template <class T>
void conv_transpose2d_backward(Context<Cpu>& ctx, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w,
                               const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dx, Tensor<T, Cpu>& dw,
                               std::type_identity_t<Tensor<T, Cpu>>* db, const ConvGeometry& g, bool accumulate) {
#if VQVAE2_CONV_DNNL
  if constexpr (detail::use_dnnl_v<T>) {
    detail::check_same<T, Cpu>("conv_transpose2d_backward", "the output gradient", dy.shape(),
                               conv_transpose2d_output_shape("conv_transpose2d_backward", x, w, g));
    detail::check_same<T, Cpu>("conv_transpose2d_backward", "the input gradient", dx.shape(), x.shape());
    detail::check_same<T, Cpu>("conv_transpose2d_backward", "the weight gradient", dw.shape(), w.shape());
    detail::check_bias("conv_transpose2d_backward", static_cast<const Tensor<T, Cpu>*>(db), w.dim(1));
    if (dy.numel() > 0) {
      onednn::conv_transpose2d_backward(ctx, x, w, dy, dx, dw, db, g, accumulate);
      return;
    }
  }
#endif
  conv_transpose2d_backward_data(ctx, dy, w, dx, g);
  conv_transpose2d_backward_weights(ctx, x, dy, dw, db, g, accumulate);
}

}  // namespace vqvae2::ops
