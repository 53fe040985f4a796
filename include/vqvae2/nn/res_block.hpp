// VQ-VAE-2 residual block: x + conv1x1(relu(conv3x3(relu(x)))).
#pragma once

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

  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    const auto& h = conv2_.forward(ctx, relu2_.forward(ctx, conv1_.forward(ctx, relu1_.forward(ctx, x))));
    out_.resize(x.shape());
    ops::add(h, x, out_);
    return out_;
  }

  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dy) {
    const auto& dx_branch = relu1_.backward(ctx, conv1_.backward(ctx, relu2_.backward(ctx, conv2_.backward(ctx, dy))));
    dx_.resize(dy.shape());
    ops::add(dx_branch, dy, dx_);
    return dx_;
  }

  template <class F>
  void visit(F&& f) {
    visit_child(conv1_, "conv1", f);
    visit_child(conv2_, "conv2", f);
  }

 private:
  ReLU<T, Device> relu1_, relu2_;
  Conv2d<T, Device> conv1_, conv2_;
  Tensor<T, Device> out_, dx_;
};

}  // namespace vqvae2::nn
