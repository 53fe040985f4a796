// VQ-VAE-2 residual block: x + conv1x1(relu(conv3x3(relu(x)))).
//
// Memory (docs/layers.md): the second ReLU runs in place on conv1's output, the
// residual sum is written into conv2's output (the block's output), and backward
// runs both ReLUs in place on the convolutions' input gradients and sums the skip
// gradient into conv1's, so the block owns four activation-sized tensors instead
// of ten. Chains share the gradient buffers through set_grad_buffers().
#pragma once

#include <memory>
#include <utility>

#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/conv2d.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/ops/cpu/map.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class ResBlock {
 public:
  ResBlock(int channels, int res_channels)
      : conv1_(channels, res_channels, 3, 3, ops::ConvGeometry::symmetric(1, 1)),
        conv2_(res_channels, channels, 1, 1, ops::ConvGeometry::symmetric(1, 0)) {}

  void init(Generator& g) {
    conv1_.init(g);
    conv2_.init(g);
  }

  // The output (conv2's output tensor) is valid until the next forward; a sole
  // consumer may overwrite it through mutable_output().
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    VQVAE2_CHECK(&x != &conv2_.output(),
                 "ResBlock::forward: the input is the block's own output, which it overwrites.");
    conv1_.forward(ctx, relu1_.forward(ctx, x));
    conv2_.forward(ctx, relu2_.forward_inplace(ctx, conv1_.mutable_output()));
    Tensor<T, Device>& out = conv2_.mutable_output();
    expect_shape("ResBlock", out, x.shape());
    ops::add_inplace(out, x);
    return out;
  }

  // x += branch(x): the output is x itself. x must not be read by anyone else's
  // backward (a convolution's output or an earlier block's stream are not).
  Tensor<T, Device>& forward_inplace(Context<Device>& ctx, Tensor<T, Device>& x) {
    VQVAE2_CHECK(&x != &conv2_.output(), "ResBlock::forward_inplace: the input is the branch's own output buffer.");
    conv1_.forward(ctx, relu1_.forward(ctx, x));
    const auto& h = conv2_.forward(ctx, relu2_.forward_inplace(ctx, conv1_.mutable_output()));
    expect_shape("ResBlock", h, x.shape());
    ops::add_inplace(x, h);
    return x;
  }

  // Returns dL/dx in conv1's input-gradient tensor (the shared buffer when one is set).
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dy) {
    conv2_.backward(ctx, dy);
    relu2_.backward_inplace(ctx, conv2_.mutable_input_grad());
    VQVAE2_CHECK(&dy != &conv1_.mutable_input_grad(),
                 "ResBlock::backward: the output gradient is the buffer the input gradient goes to.");
    conv1_.backward(ctx, conv2_.mutable_input_grad());
    Tensor<T, Device>& dx = relu1_.backward_inplace(ctx, conv1_.mutable_input_grad());
    ops::add_inplace(dx, dy);
    return dx;
  }

  // dL/dx goes to *out, conv2's narrow input gradient to *narrow; both must differ
  // from the output gradient backward receives (nullptr = own tensors).
  void set_grad_buffers(std::shared_ptr<Tensor<T, Device>> out, std::shared_ptr<Tensor<T, Device>> narrow) {
    conv1_.set_input_grad_buffer(std::move(out));
    conv2_.set_input_grad_buffer(std::move(narrow));
  }

  // The branch output (conv2's) goes to *buffer: with forward_inplace it is dead once
  // added, so the blocks of a model share one.
  void set_branch_buffer(std::shared_ptr<Tensor<T, Device>> buffer) { conv2_.set_output_buffer(std::move(buffer)); }

  Tensor<T, Device>& mutable_output() { return conv2_.mutable_output(); }

  template <class F>
  void visit(F&& f) {
    visit_child(conv1_, "conv1", f);
    visit_child(conv2_, "conv2", f);
  }

 private:
  ReLU<T, Device> relu1_, relu2_;
  Conv2d<T, Device> conv1_, conv2_;
};

}  // namespace vqvae2::nn
