// PixelSNAIL's causal convolution: a weight-normalised convolution whose zero
// padding (left, right, top, bottom) keeps every output from seeing later pixels.
//
//   DownRight: (kw-1, 0, kh-1, 0)        the kernel's bottom-right tap is the current pixel
//   Down:      (kw/2, kw/2, kh-1, 0)     the kernel's bottom-centre tap is the current pixel
//   Causal:    Down, with weight_v[:, :, kh-1, kw/2:] held at zero, so the current row
//              contributes only pixels strictly left of the current one
//
// The padding is the convolution's own asymmetric geometry (no padded copy of the
// input). Causal masks v before every forward and masks v's gradient, so the
// hidden taps stay zero under any optimiser. weight_g is initialised from the
// unmasked v, as in the reference model (weight_norm is applied before masking).
#pragma once

#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"

namespace vqvae2::nn {

enum class CausalPadding { Down, DownRight, Causal };

inline const char* causal_padding_name(CausalPadding p) {
  switch (p) {
    case CausalPadding::Down:
      return "down";
    case CausalPadding::DownRight:
      return "downright";
    case CausalPadding::Causal:
      return "causal";
  }
  return "unknown";
}

inline ops::ConvGeometry causal_geometry(int kernel_h, int kernel_w, CausalPadding mode) {
  VQVAE2_CHECK(kernel_h > 0 && kernel_w > 0, "CausalConv2d: kernel sizes must be positive, got [", kernel_h, ", ",
               kernel_w, "].");
  ops::ConvGeometry g;
  g.pad_top = kernel_h - 1;
  g.pad_bottom = 0;
  switch (mode) {
    case CausalPadding::DownRight:
      g.pad_left = kernel_w - 1;
      g.pad_right = 0;
      break;
    case CausalPadding::Down:
    case CausalPadding::Causal:
      g.pad_left = kernel_w / 2;
      g.pad_right = kernel_w / 2;
      break;
    default:
      fail("CausalConv2d: unknown padding mode ", static_cast<int>(mode), ".");
  }
  return g;
}

// The 'causal' mode's weight mask [out, in, kh, kw]: 1 everywhere but the last
// row's centre column and the columns right of it (the current and later pixels).
template <class T, class Device = Cpu>
Tensor<T, Device> causal_weight_mask(int out_channels, int in_channels, int kernel_h, int kernel_w) {
  Tensor<T, Device> mask(nchw(out_channels, in_channels, kernel_h, kernel_w));
  mask.fill(T(1));
  for (std::int64_t o = 0; o < out_channels; ++o)
    for (std::int64_t c = 0; c < in_channels; ++c)
      for (std::int64_t j = kernel_w / 2; j < kernel_w; ++j) mask.at(o, c, kernel_h - 1, j) = T(0);
  return mask;
}

template <class T, class Device = Cpu>
class CausalConv2d {
 public:
  using TensorT = Tensor<T, Device>;

  CausalConv2d(int in_channels, int out_channels, int kernel_h, int kernel_w,
               CausalPadding mode = CausalPadding::DownRight, bool bias = true)
      : mode_(mode),
        conv_(in_channels, out_channels, kernel_h, kernel_w, causal_geometry(kernel_h, kernel_w, mode), bias) {
    if (mode == CausalPadding::Causal) {
      // A 1x1 kernel would be masked entirely (its only tap is the current pixel).
      VQVAE2_CHECK(kernel_h > 1 || kernel_w > 1,
                   "CausalConv2d: a 'causal' kernel must be larger than 1x1, since its "
                   "only tap would be the hidden current pixel.");
      conv_.set_weight_mask(causal_weight_mask<T, Device>(out_channels, in_channels, kernel_h, kernel_w));
    }
  }
  CausalConv2d(int in_channels, int out_channels, int kernel, CausalPadding mode = CausalPadding::DownRight,
               bool bias = true)
      : CausalConv2d(in_channels, out_channels, kernel, kernel, mode, bias) {}

  void init(Generator& g) { conv_.init(g); }

  const TensorT& forward(Context<Device>& ctx, const TensorT& x) { return conv_.forward(ctx, x); }
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) { return conv_.backward(ctx, dy); }

  // Same names as the reference's weight-normed conv: weight_g, weight_v, bias.
  template <class F>
  void visit(F&& f) {
    conv_.visit(f);
  }

  CausalPadding mode() const { return mode_; }
  WNConv2d<T, Device>& conv() { return conv_; }
  Parameter<T, Device>& weight_g() { return conv_.weight_g(); }
  Parameter<T, Device>& weight_v() { return conv_.weight_v(); }
  Parameter<T, Device>& bias() { return conv_.bias(); }

 private:
  CausalPadding mode_;
  WNConv2d<T, Device> conv_;
};

}  // namespace vqvae2::nn
