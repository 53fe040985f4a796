// Conv2d: y = conv2d(x, weight) + bias, weight [out, in, kh, kw] (PyTorch layout).
// Stride and possibly asymmetric padding come from ops::ConvGeometry, so causal
// convolutions are Conv2d with asymmetric padding.
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "vqvae2/nn/module.hpp"
#include "vqvae2/ops/conv.hpp"
#include "vqvae2/ops/cpu/conv.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class Conv2d {
 public:
  Conv2d(int in_channels, int out_channels, int kernel_h, int kernel_w, ops::ConvGeometry geometry = {},
         bool bias = true)
      : in_(in_channels), out_(out_channels), geometry_(geometry), has_bias_(bias) {
    VQVAE2_CHECK(in_channels > 0 && out_channels > 0 && kernel_h > 0 && kernel_w > 0, "Conv2d: channels (", in_channels,
                 " -> ", out_channels, ") and kernel ", kernel_h, "x", kernel_w, " must be positive.");
    VQVAE2_CHECK(geometry.stride_h > 0 && geometry.stride_w > 0 && geometry.pad_top >= 0 && geometry.pad_bottom >= 0 &&
                     geometry.pad_left >= 0 && geometry.pad_right >= 0,
                 "Conv2d: strides must be positive and paddings non-negative.");
    weight_.reset(Shape{out_channels, in_channels, kernel_h, kernel_w});
    if (has_bias_) bias_.reset(Shape{out_channels});
  }

  // PyTorch's default: kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same bound for the bias.
  void init(Generator& g) {
    const T bound = T(1) / std::sqrt(static_cast<T>(in_ * weight_.shape()[2] * weight_.shape()[3]));
    g.uniform(weight_.value, -bound, bound);
    if (has_bias_) g.uniform(bias_.value, -bound, bound);
  }

  // The output is owned by the layer and valid until the next forward; x must stay alive until backward.
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) == in_, "Conv2d: input ", x.shape().str(), " does not have the ", in_,
                 " channels of weight ", weight_.shape().str(), ".");
    x_ = x;
    const PrecisionScope<Context<Device>> precision(ctx, pinned_.value_or(ctx.precision));
    Tensor<T, Device>& y = out_target();
    ops::conv2d_forward(ctx, x, weight_.value, has_bias_ ? &bias_.value : nullptr, y, geometry_);
    y_shape_ = y.shape();
    return y;
  }

  // Returns dL/dx (unless input gradients are switched off) and adds dL/dweight, dL/dbias into the grads.
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(x_.rank() == 4, "Conv2d: backward called without a forward.");
    VQVAE2_CHECK(dy.shape() == y_shape_, "Conv2d: output gradient ", dy.shape().str(),
                 " does not match the forward output ", y_shape_.str(), ".");
    auto* db = has_bias_ ? &bias_.grad : nullptr;
    const PrecisionScope<Context<Device>> precision(ctx, pinned_.value_or(ctx.precision));
    if (needs_input_grad_) {
      Tensor<T, Device>& dx = grad_target();
      VQVAE2_CHECK(&dy != &dx, "Conv2d: the output gradient is the input-gradient buffer it would overwrite.");
      dx.resize(x_.shape());
      ops::conv2d_backward(ctx, x_, weight_.value, dy, dx, weight_.grad, db, geometry_, true);
    } else {
      ops::conv2d_backward_weights(ctx, x_, dy, weight_.grad, db, geometry_, true);
    }
    // Drop the alias so the producer of x may reuse its buffer in the next step (resize()
    // reallocates storage that is still shared).
    x_ = Tensor<T, Device>();
    return needs_input_grad_ ? grad_target() : dx_;
  }

  template <class F>
  void visit(F&& f) {
    f(std::string_view("weight"), weight_);
    if (has_bias_) f(std::string_view("bias"), bias_);
  }

  // A first layer whose input needs no gradient can skip the backward-data convolution.
  void set_needs_input_grad(bool on) { needs_input_grad_ = on; }
  // Runs this layer at precision p whatever the model's policy (ctx.precision).
  void pin_precision(Precision p) { pinned_ = p; }

  Parameter<T, Device>& weight() { return weight_; }
  Parameter<T, Device>& bias() { return bias_; }
  bool has_bias() const { return has_bias_; }
  const ops::ConvGeometry& geometry() const { return geometry_; }
  int in_channels() const { return in_; }
  int out_channels() const { return out_; }
  const Tensor<T, Device>& output() const { return out_buffer_ ? *out_buffer_ : y_; }
  const Tensor<T, Device>& input_grad() const { return grad_buffer_ && needs_input_grad_ ? *grad_buffer_ : dx_; }

  // Memory savers (docs/layers.md, Memory). Backward reads neither the output nor
  // the input gradient after writing it, so a sole consumer may overwrite them
  // (in-place activation, residual sum into the output, activation backward into dx).
  Tensor<T, Device>& mutable_output() { return out_target(); }
  Tensor<T, Device>& mutable_input_grad() { return grad_target(); }
  // backward() writes dL/dx into *buffer instead of a tensor of its own: a chain of
  // layers whose input gradients are dead once consumed shares a few buffers
  // (nullptr = own tensor again). The buffer must not be the output gradient.
  void set_input_grad_buffer(std::shared_ptr<Tensor<T, Device>> buffer) { grad_buffer_ = std::move(buffer); }
  // forward() writes its output into *buffer: for an output that is dead once its
  // consumer has read it (a residual branch added to the stream), shared by such layers.
  void set_output_buffer(std::shared_ptr<Tensor<T, Device>> buffer) { out_buffer_ = std::move(buffer); }

 private:
  Tensor<T, Device>& grad_target() { return grad_buffer_ ? *grad_buffer_ : dx_; }
  Tensor<T, Device>& out_target() { return out_buffer_ ? *out_buffer_ : y_; }

  int in_, out_;
  ops::ConvGeometry geometry_;
  bool has_bias_;
  bool needs_input_grad_ = true;
  std::optional<Precision> pinned_;
  Parameter<T, Device> weight_, bias_;
  Tensor<T, Device> x_, y_, dx_;
  std::shared_ptr<Tensor<T, Device>> grad_buffer_, out_buffer_;
  Shape y_shape_;
};

}  // namespace vqvae2::nn
