// Activation layers: ReLU, ELU (alpha 1), Sigmoid, Tanh. Each keeps its own
// output for backward (every derivative here is a function of the output), so
// it holds no reference to its input.
//
// In-place variants save an activation-sized buffer each way (docs/layers.md,
// Memory): forward_inplace overwrites its input, for an input nobody else reads
// afterwards (a convolution's output: convolution backward needs only its
// input), and keeps a non-owning view of it; backward_inplace overwrites the
// incoming gradient, for a gradient buffer that is dead once consumed.
#pragma once

#include <memory>
#include <utility>

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
    if (borrowed_) release_view();
    y_.resize(x.shape());
    ops::activation_forward<Act>(x, y_);
    return y_;
  }

  // x = Act(x). x must stay unchanged (and alive) until backward, which reads it.
  Tensor<T, Device>& forward_inplace(Context<Device>&, Tensor<T, Device>& x) {
    ops::activation_forward<Act>(x, x);
    // A view without a reference count: a counted alias would make the owner's
    // next resize() allocate instead of reusing its storage.
    y_ = Tensor<T, Device>::wrap(x.data(), x.shape());
    borrowed_ = true;
    return x;
  }

  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    check_gradient(dy);
    if (grad_buffer_) {
      VQVAE2_CHECK(&dy != grad_buffer_.get(), Act::name,
                   "::backward: the output gradient is the input-gradient buffer; use backward_inplace.");
      grad_buffer_->resize(dy.shape());
      ops::activation_backward<Act>(y_, dy, *grad_buffer_);
      return *grad_buffer_;
    }
    dx_.resize(dy.shape());
    ops::activation_backward<Act>(y_, dy, dx_);
    return dx_;
  }

  // dy = dL/dx, computed from dy = dL/dy in place; returns dy.
  Tensor<T, Device>& backward_inplace(Context<Device>&, Tensor<T, Device>& dy) {
    check_gradient(dy);
    ops::activation_backward<Act>(y_, dy, dy);
    return dy;
  }

  // backward() writes dL/dx into *buffer instead of a tensor of its own: for
  // chains whose gradient buffers are shared (nullptr = own tensor again).
  void set_input_grad_buffer(std::shared_ptr<Tensor<T, Device>> buffer) { grad_buffer_ = std::move(buffer); }

  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

  const Tensor<T, Device>& output() const { return y_; }

 private:
  void check_gradient(const Tensor<T, Device>& dy) const {
    VQVAE2_CHECK(dy.shape() == y_.shape(), Act::name, "::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
  }
  // After forward_inplace y_ views another tensor's memory; resize() must not write into it.
  void release_view() {
    y_ = Tensor<T, Device>();
    borrowed_ = false;
  }

  Tensor<T, Device> y_, dx_;
  std::shared_ptr<Tensor<T, Device>> grad_buffer_;
  bool borrowed_ = false;
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
