// Weight-normalised 2-D convolution, as torch.nn.utils.weight_norm(nn.Conv2d(...)):
// parameters weight_g [out, 1, 1, 1], weight_v [out, in, kh, kw] and bias [out];
// the convolution uses w = g * v / ||v|| (norm over in, kh, kw per output channel).
//
// An optional weight mask (0/1, shaped like v) is multiplied into v before every
// forward and into v's gradient: CausalConv2d uses it to hide the current and
// later pixels of its kernel's last row.
#pragma once

#include <cmath>

#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/weight_norm.hpp"
#include "vqvae2/ops/conv.hpp"
#include "vqvae2/ops/cpu/conv.hpp"

namespace vqvae2::nn {

template <class T>
struct MaskMultiply {
  VQVAE2_HD T operator()(T v, T m) const { return v * m; }
};

template <class T, class Device = Cpu>
class WNConv2d {
 public:
  using TensorT = Tensor<T, Device>;

  WNConv2d(int in_channels, int out_channels, int kernel_h, int kernel_w, ops::ConvGeometry geometry = {},
           bool bias = true)
      : in_(in_channels), out_(out_channels), kh_(kernel_h), kw_(kernel_w), geom_(geometry), has_bias_(bias) {
    VQVAE2_CHECK(in_channels > 0 && out_channels > 0 && kernel_h > 0 && kernel_w > 0,
                 "WNConv2d: channels and kernel sizes must be positive, got in ", in_channels, ", out ", out_channels,
                 ", kernel [", kernel_h, ", ", kernel_w, "].");
    VQVAE2_CHECK(geometry.stride_h > 0 && geometry.stride_w > 0 && geometry.pad_top >= 0 && geometry.pad_bottom >= 0 &&
                     geometry.pad_left >= 0 && geometry.pad_right >= 0,
                 "WNConv2d: strides must be positive and paddings non-negative.");
    g_.reset(nchw(out_channels, 1, 1, 1));
    v_.reset(nchw(out_channels, in_channels, kernel_h, kernel_w));
    if (has_bias_) bias_.reset(Shape{out_channels});
  }

  // v and bias as nn.Conv2d (U(+-1/sqrt(fan_in))), then g = ||v|| so that w = v,
  // which is what weight_norm does when it wraps a freshly built convolution.
  void init(Generator& g) {
    const T bound = static_cast<T>(1.0 / std::sqrt(static_cast<double>(in_) * kh_ * kw_));
    g.uniform(v_.value, -bound, bound);
    if (has_bias_) g.uniform(bias_.value, -bound, bound);
    weight_norm_init_g(g_.value, v_.value);
  }

  // mask: 0/1 entries shaped like weight_v.
  void set_weight_mask(const TensorT& mask) {
    VQVAE2_CHECK(mask.shape() == v_.shape(), "WNConv2d::set_weight_mask: mask ", mask.shape().str(),
                 " does not match weight_v ", v_.shape().str(), ".");
    mask_ = mask;
    masked_ = true;
  }
  void clear_weight_mask() {
    mask_ = TensorT();
    masked_ = false;
  }
  bool has_weight_mask() const { return masked_; }
  const TensorT& weight_mask() const { return mask_; }

  // The output is owned by the layer and valid until the next forward; x must stay alive until backward.
  const TensorT& forward(Context<Device>& ctx, const TensorT& x) {
    ops::conv2d_output_shape("WNConv2d::forward", x, v_.value, geom_);  // checks x before any work
    x_ = x;
    if (masked_) apply_mask();
    weight_norm_forward(ctx, g_.value, v_.value, w_, inv_norm_);
    ops::conv2d_forward(ctx, x, w_, has_bias_ ? &bias_.value : nullptr, y_, geom_);
    return y_;
  }

  // Returns dL/dx (unless switched off) and adds dL/dg, dL/dv and dL/dbias into the grads.
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    VQVAE2_CHECK(x_.rank() == 4, "WNConv2d::backward: called without a forward.");
    VQVAE2_CHECK(dy.shape() == y_.shape(), "WNConv2d::backward: output gradient ", dy.shape().str(),
                 " does not match the forward output ", y_.shape().str(), ".");
    // dL/dw goes to a workspace (overwritten), then through the weight norm into g and v.
    dw_.resize(w_.shape());
    if (has_bias_) db_.resize(bias_.shape());
    TensorT* db = has_bias_ ? &db_ : nullptr;
    if (needs_input_grad_) {
      dx_.resize(x_.shape());
      ops::conv2d_backward(ctx, x_, w_, dy, dx_, dw_, db, geom_, /*accumulate=*/false);
    } else {
      ops::conv2d_backward_weights(ctx, x_, dy, dw_, db, geom_, /*accumulate=*/false);
    }
    if (has_bias_)
      for (std::int64_t i = 0; i < db_.numel(); ++i) bias_.grad[i] += db_[i];
    weight_norm_backward(ctx, g_.value, v_.value, inv_norm_, dw_, g_.grad, v_.grad, masked_ ? &mask_ : nullptr);
    // Drop the alias so the producer of x may reuse its buffer next step (resize() reallocates shared storage).
    x_ = TensorT();
    return dx_;
  }

  // The effective weight g * v / ||v|| (v masked first) of the current parameters, as
  // forward computes it; for layers that run their own convolution with this weight
  // (OneHotConv2d's gather) and for samplers. Valid until the next forward or call.
  const TensorT& compute_weight(Context<Device>& ctx) {
    if (masked_) apply_mask();
    weight_norm_forward(ctx, g_.value, v_.value, w_, inv_norm_);
    return w_;
  }

  // Adds dL/dg and dL/dv (masked) given dL/dw of the weight compute_weight() returned,
  // and dL/dbias when db is given: the parameter half of backward, for such layers.
  void accumulate_weight_grad(Context<Device>& ctx, const TensorT& dw, const TensorT* db) {
    VQVAE2_CHECK(dw.shape() == v_.shape() && inv_norm_.numel() == out_, "WNConv2d::accumulate_weight_grad: weight ",
                 "gradient ", dw.shape().str(), " does not match weight_v ", v_.shape().str(),
                 ", or no weight was computed.");
    if (db) {
      VQVAE2_CHECK(has_bias_ && db->numel() == out_, "WNConv2d::accumulate_weight_grad: bias gradient of ", db->numel(),
                   " entries for a layer ", has_bias_ ? "with " : "without ", "a bias of ", out_, ".");
      for (std::int64_t i = 0; i < db->numel(); ++i) bias_.grad[i] += (*db)[i];
    }
    weight_norm_backward(ctx, g_.value, v_.value, inv_norm_, dw, g_.grad, v_.grad, masked_ ? &mask_ : nullptr);
  }

  // The first layer of a network (on data) can skip dL/dx.
  void set_needs_input_grad(bool on) { needs_input_grad_ = on; }

  template <class F>
  void visit(F&& f) {
    f("weight_g", g_);
    f("weight_v", v_);
    if (has_bias_) f("bias", bias_);
  }

  Parameter<T, Device>& weight_g() { return g_; }
  Parameter<T, Device>& weight_v() { return v_; }
  Parameter<T, Device>& bias() { return bias_; }
  // The effective weight g * v / ||v|| of the last forward.
  const TensorT& weight() const { return w_; }
  const ops::ConvGeometry& geometry() const { return geom_; }
  int in_channels() const { return in_; }
  int out_channels() const { return out_; }
  int kernel_h() const { return kh_; }
  int kernel_w() const { return kw_; }
  bool has_bias() const { return has_bias_; }

 private:
  void apply_mask() {
    MaskMultiply<T> f;
    T* v = v_.value.data();
    const T* m = mask_.data();
    for (std::int64_t i = 0, n = v_.value.numel(); i < n; ++i) v[i] = f(v[i], m[i]);
  }

  int in_, out_, kh_, kw_;
  ops::ConvGeometry geom_;
  bool has_bias_;
  bool masked_ = false;
  bool needs_input_grad_ = true;
  Parameter<T, Device> g_, v_, bias_;
  TensorT mask_;
  TensorT x_, y_, dx_, w_, dw_, db_, inv_norm_;
};

}  // namespace vqvae2::nn
