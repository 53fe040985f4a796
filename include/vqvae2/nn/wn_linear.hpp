// Weight-normalised linear layer, as torch.nn.utils.weight_norm(nn.Linear(in, out)):
// parameters weight_g [out, 1], weight_v [out, in], bias [out]; w = g * v / ||v|| per row.
#pragma once

#include "vqvae2/nn/linear.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/weight_norm.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class WNLinear {
 public:
  using TensorT = Tensor<T, Device>;

  WNLinear(int in_features, int out_features, bool bias = true)
      : in_(in_features), out_(out_features), has_bias_(bias) {
    VQVAE2_CHECK(in_features > 0 && out_features > 0, "WNLinear: feature counts must be positive, got in ", in_features,
                 " and out ", out_features, ".");
    g_.reset(Shape{out_features, 1});
    v_.reset(Shape{out_features, in_features});
    if (bias) bias_.reset(Shape{out_features});
  }

  // v and bias as nn.Linear, then g = ||v|| so that w = v (weight_norm's own initialisation).
  void init(Generator& g) {
    detail::linear_fan_in_init(g, v_.value, in_);
    if (has_bias_) detail::linear_fan_in_init(g, bias_.value, in_);
    weight_norm_init_g(g_.value, v_.value);
  }

  // The output is owned by the layer and valid until the next forward; x must stay alive until backward.
  const TensorT& forward(Context<Device>& ctx, const TensorT& x) {
    detail::check_linear("WNLinear::forward", x.shape(), v_.shape());
    x_ = x;
    weight_norm_forward(ctx, g_.value, v_.value, w_, inv_norm_);
    linear_forward(ctx, x, w_, has_bias_ ? &bias_.value : nullptr, y_);
    return y_;
  }

  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    VQVAE2_CHECK(x_.rank() == 2, "WNLinear::backward: called without a forward.");
    VQVAE2_CHECK(dy.shape() == y_.shape(), "WNLinear::backward: output gradient ", dy.shape().str(),
                 " does not match the forward output ", y_.shape().str(), ".");
    dw_.resize(w_.shape());
    dw_.zero();
    linear_backward_weights(ctx, x_, dy, dw_, has_bias_ ? &bias_.grad : nullptr);
    weight_norm_backward(ctx, g_.value, v_.value, inv_norm_, dw_, g_.grad, v_.grad);
    linear_backward_data(ctx, dy, w_, dx_);
    // Drop the alias so the producer of x may reuse its buffer next step (resize() reallocates shared storage).
    x_ = TensorT();
    return dx_;
  }

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
  int in_features() const { return in_; }
  int out_features() const { return out_; }

 private:
  int in_, out_;
  bool has_bias_;
  Parameter<T, Device> g_, v_, bias_;
  TensorT x_, y_, dx_, w_, dw_, inv_norm_;
};

}  // namespace vqvae2::nn
