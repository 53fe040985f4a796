// The bottom prior's conditioning network (rosinality's CondResNet) on the top codes:
// WNConv2d(n_class -> channel, k x k, padding k/2) of the one-hot codes, computed as a
// gather (OneHotConv2d), then n_res_block non-causal GatedResBlocks (channel, channel, k).
// Parameter names as the reference's: blocks.0.weight_v (the convolution),
// blocks.1.conv1.weight_v, ... (the residual blocks).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vqvae2/nn/gated_res_block.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/one_hot_conv2d.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class CondResNet {
 public:
  using TensorT = Tensor<T, Device>;
  using ResBlock = GatedResBlock<T, Device>;

  CondResNet(int n_class, int channel, int kernel, int n_res_block, double dropout = 0.1)
      : conv_(n_class, channel, kernel, kernel, ops::ConvGeometry::symmetric(1, kernel / 2)) {
    for (int i = 0; i < n_res_block; ++i)
      res_.push_back(std::make_unique<ResBlock>(channel, channel, kernel, GatedConv::Same, dropout));
  }

  void init(Generator& g) {
    conv_.init(g);
    for (auto& r : res_) r->init(g);
  }

  // codes [B, H, W] in [0, n_class) -> [B, channel, H, W].
  const TensorT& forward(Context<Device>& ctx, const Tensor<std::int32_t, Device>& codes) {
    dense_ = false;
    return run(ctx, conv_.forward(ctx, codes));
  }
  // The same network on a dense map [B, n_class, H, W] (its input gradient is then available).
  const TensorT& forward_dense(Context<Device>& ctx, const TensorT& x) {
    dense_ = true;
    return run(ctx, conv_.forward_dense(ctx, x));
  }

  // Adds the parameter gradients; after forward_dense also returns dL/dx (else an empty tensor).
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    const TensorT* d = &dy;
    for (auto it = res_.rbegin(); it != res_.rend(); ++it) d = &(*it)->backward(ctx, *d);
    if (dense_) return conv_.backward_dense(ctx, *d);
    conv_.backward(ctx, *d);
    return empty_;
  }

  template <class F>
  void visit(F&& f) {
    visit_child(conv_, "blocks.0", f);
    for (std::size_t i = 0; i < res_.size(); ++i) visit_child(*res_[i], "blocks." + std::to_string(i + 1), f);
  }

  void use_generator(Generator* g) {
    for (auto& r : res_) r->use_generator(g);
  }

  OneHotConv2d<T, Device>& conv() { return conv_; }
  std::vector<std::unique_ptr<ResBlock>>& resblocks() { return res_; }

 private:
  const TensorT& run(Context<Device>& ctx, const TensorT& h) {
    const TensorT* out = &h;
    for (auto& r : res_) out = &r->forward(ctx, *out);
    return *out;
  }

  OneHotConv2d<T, Device> conv_;
  std::vector<std::unique_ptr<ResBlock>> res_;
  bool dense_ = false;
  TensorT empty_;
};

}  // namespace vqvae2::nn
