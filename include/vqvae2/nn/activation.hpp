// Activation layers: ReLU, ELU (alpha 1), Sigmoid, Tanh. Each keeps its own
// output for backward (every derivative here is a function of the output), so
// it holds no reference to its input.
#pragma once

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/ops/cpu/map.hpp"
#include "vqvae2/ops/elementwise.hpp"

namespace vqvae2::nn {

template <class Act, class T, class Device = Cpu>
class Activation {
 public:
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& x) {
    y_.resize(x.shape());
    ops::activation_forward<Act>(x, y_);
    return y_;
  }

  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(dy.shape() == y_.shape(), Act::name, "::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    dx_.resize(dy.shape());
    ops::activation_backward<Act>(y_, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

  const Tensor<T, Device>& output() const { return y_; }

 private:
  Tensor<T, Device> y_, dx_;
};

template <class T, class Device = Cpu>
using ReLU = Activation<ops::Relu, T, Device>;
template <class T, class Device = Cpu>
using ELU = Activation<ops::Elu, T, Device>;
template <class T, class Device = Cpu>
using Sigmoid = Activation<ops::Sigmoid, T, Device>;
template <class T, class Device = Cpu>
using Tanh = Activation<ops::Tanh, T, Device>;

}  // namespace vqvae2::nn
