// Gated linear unit over the channel dimension, as torch.nn.functional.glu(x, dim=1):
// x [N, 2C, H, W] -> x[:, :C] * sigmoid(x[:, C:]) of shape [N, C, H, W].
#pragma once

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/ops/cpu/map.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class GLU {
 public:
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& x) {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) % 2 == 0, "nn::GLU: expected an NCHW input with an even channel count, got ",
                 x.shape().str(), ".");
    x_ = borrow(x);
    y_.resize(nchw(x.dim(0), x.dim(1) / 2, x.dim(2), x.dim(3)));
    ops::glu_forward(x, y_);
    return y_;
  }

  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(dy.shape() == y_.shape(), "nn::GLU::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    dx_.resize(x_.shape());
    ops::glu_backward(x_, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

 private:
  Tensor<T, Device> x_, y_, dx_;
};

}  // namespace vqvae2::nn
