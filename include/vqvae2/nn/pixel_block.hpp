// PixelSNAIL's pixel block (rosinality's PixelBlock), on x [B, C, H, W] and the
// positional background [B, 2, H, W]:
//
//   out = resblocks(x)        n_res_block causal GatedResBlocks (C, res_channel, kernel), each
//                             given the condition when condition_dim > 0
//   with attention:
//     key   = key_resblock(cat[x', out, background])      1x1 GatedResBlock(2C+2, C)
//     query = query_resblock(cat[out, background])        1x1 GatedResBlock(C+2, C)
//     attn  = causal_attention(query, key)                CausalAttention(C+2, 2C+2, C/2, heads)
//     y     = out_resblock(out, aux = attn)               1x1 GatedResBlock(C, C, aux C/2)
//   without:
//     y     = out(cat[out, background])                   1x1 WNConv2d(C+2 -> C)
//
// x' = ELU(x) when n_res_block > 0: in the reference, the first residual block's
// in-place ELU has overwritten its input before the key concatenation reads it.
//
// Parameter names as the reference's (without the weight-norm wrapper segments):
// resblocks.1.conv1.weight_v, key_resblock..., query_resblock..., causal_attention.query...,
// out_resblock..., out.weight_g.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/causal_attention.hpp"
#include "vqvae2/nn/gated_res_block.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class PixelBlock {
 public:
  using TensorT = Tensor<T, Device>;
  using ResBlock = GatedResBlock<T, Device>;

  PixelBlock(int in_channel, int channel, int kernel, int n_res_block, bool attention = true, double dropout = 0.1,
             int condition_dim = 0, int heads = 8)
      : in_(in_channel), condition_dim_(condition_dim) {
    VQVAE2_CHECK(in_channel > 0 && n_res_block >= 0, "PixelBlock: in_channel must be positive and n_res_block ",
                 "non-negative, got ", in_channel, " and ", n_res_block, ".");
    for (int i = 0; i < n_res_block; ++i)
      res_.push_back(
          std::make_unique<ResBlock>(in_channel, channel, kernel, GatedConv::Causal, dropout, 0, condition_dim));
    if (attention) {
      VQVAE2_CHECK(in_channel % 2 == 0, "PixelBlock: attention needs an even channel count, got ", in_channel, ".");
      key_ = std::make_unique<ResBlock>(2 * in_channel + 2, in_channel, 1, GatedConv::Same, dropout);
      query_ = std::make_unique<ResBlock>(in_channel + 2, in_channel, 1, GatedConv::Same, dropout);
      attention_ = std::make_unique<CausalAttention<T, Device>>(in_channel + 2, 2 * in_channel + 2, in_channel / 2,
                                                                heads, dropout);
      out_res_ = std::make_unique<ResBlock>(in_channel, in_channel, 1, GatedConv::Same, dropout, in_channel / 2);
    } else {
      out_ = std::make_unique<WNConv2d<T, Device>>(in_channel + 2, in_channel, 1, 1, ops::ConvGeometry{});
    }
  }

  void init(Generator& g) {
    for (auto& r : res_) r->init(g);
    if (attention_) {
      key_->init(g);
      query_->init(g);
      attention_->init(g);
      out_res_->init(g);
    } else {
      out_->init(g);
    }
  }

  // x [B, C, H, W], background [B, 2, H, W], condition [B, condition_dim, H, W] iff
  // condition_dim > 0. background and condition must stay alive until backward.
  const TensorT& forward(Context<Device>& ctx, const TensorT& x, const TensorT& background,
                         const TensorT* condition = nullptr) {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) == in_, "PixelBlock::forward: expected an input [B, ", in_, ", H, W], got ",
                 x.shape().str(), ".");
    VQVAE2_CHECK(background.rank() == 4 && background.dim(1) == 2, "PixelBlock::forward: expected a background [B, ",
                 "2, H, W], got ", background.shape().str(), ".");
    VQVAE2_CHECK((condition != nullptr) == (condition_dim_ > 0), "PixelBlock::forward: a condition is ",
                 condition_dim_ > 0 ? "required" : "not accepted", " (condition_dim ", condition_dim_, ").");
    xshape_ = x.shape();
    const TensorT* out = &x;
    for (auto& r : res_) out = &r->forward(ctx, *out, nullptr, condition);
    if (attention_) {
      const TensorT& xk = res_.empty() ? x : input_elu_.forward(ctx, x);
      const TensorT& key = key_->forward(ctx, key_cat_.forward(ctx, xk, *out, background));
      const TensorT& query = query_->forward(ctx, query_cat_.forward(ctx, *out, background));
      const TensorT& attn = attention_->forward(ctx, query, key);
      return out_res_->forward(ctx, *out, &attn);
    }
    return out_->forward(ctx, borrow(out_cat_.forward(ctx, *out, background)));
  }

  // Returns dL/dx; dL/dcondition (summed over the residual blocks) is in grad_condition().
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    const TensorT* extra = nullptr;  // dL/dx through the key's x'
    if (attention_) {
      dout_.resize(dy.shape());
      dout_.copy_from(out_res_->backward(ctx, dy));
      const TensorT& dquery = attention_->backward(ctx, out_res_->grad_aux());
      const TensorT& dkey = attention_->grad_key();
      query_cat_.backward(ctx, query_->backward(ctx, dquery));
      accumulate(dout_, query_cat_.grad_a());
      key_cat_.backward(ctx, key_->backward(ctx, dkey));
      accumulate(dout_, key_cat_.grad_b());
      extra = res_.empty() ? &key_cat_.grad_a() : &input_elu_.backward(ctx, key_cat_.grad_a());
    } else {
      out_cat_.backward(ctx, out_->backward(ctx, dy));
      dout_.resize(out_cat_.grad_a().shape());
      dout_.copy_from(out_cat_.grad_a());
    }
    const TensorT* d = &dout_;
    if (condition_dim_ > 0 && !res_.empty()) {
      dcond_.resize(nchw(xshape_[0], condition_dim_, xshape_[2], xshape_[3]));
      dcond_.zero();
    }
    for (auto it = res_.rbegin(); it != res_.rend(); ++it) {
      d = &(*it)->backward(ctx, *d);
      if (condition_dim_ > 0) accumulate(dcond_, (*it)->grad_condition());
    }
    dx_.resize(xshape_);
    dx_.copy_from(*d);
    if (extra) accumulate(dx_, *extra);
    return dx_;
  }

  // Zero-filled when the block has no residual blocks (the condition then reaches nothing).
  const TensorT& grad_condition() {
    VQVAE2_CHECK(condition_dim_ > 0, "PixelBlock::grad_condition: the block has no condition.");
    if (res_.empty()) {
      dcond_.resize(nchw(xshape_[0], condition_dim_, xshape_[2], xshape_[3]));
      dcond_.zero();
    }
    return dcond_;
  }

  template <class F>
  void visit(F&& f) {
    for (std::size_t i = 0; i < res_.size(); ++i) visit_child(*res_[i], "resblocks." + std::to_string(i), f);
    if (attention_) {
      visit_child(*key_, "key_resblock", f);
      visit_child(*query_, "query_resblock", f);
      visit_child(*attention_, "causal_attention", f);
      visit_child(*out_res_, "out_resblock", f);
    } else {
      visit_child(*out_, "out", f);
    }
  }

  // Every dropout of the block (residual blocks and attention) draws from g; nullptr: own streams.
  void use_generator(Generator* g) {
    for (auto& r : res_) r->use_generator(g);
    if (attention_) {
      key_->use_generator(g);
      query_->use_generator(g);
      attention_->use_generator(g);
      out_res_->use_generator(g);
    }
  }

  int in_channels() const { return in_; }
  int condition_dim() const { return condition_dim_; }
  bool has_attention() const { return attention_ != nullptr; }
  std::vector<std::unique_ptr<ResBlock>>& resblocks() { return res_; }
  ResBlock& resblock(std::size_t i) { return *res_.at(i); }
  ResBlock& key_resblock() { return *need(key_.get(), "key_resblock"); }
  ResBlock& query_resblock() { return *need(query_.get(), "query_resblock"); }
  CausalAttention<T, Device>& causal_attention() { return *need(attention_.get(), "causal_attention"); }
  ResBlock& out_resblock() { return *need(out_res_.get(), "out_resblock"); }
  // The 1x1 output convolution of a block without attention.
  WNConv2d<T, Device>& out_conv() {
    VQVAE2_CHECK(out_ != nullptr, "PixelBlock::out_conv: a block with attention has no output convolution.");
    return *out_;
  }

 private:
  template <class P>
  static P* need(P* p, const char* what) {
    VQVAE2_CHECK(p != nullptr, "PixelBlock::", what, ": the block has no attention.");
    return p;
  }

  int in_, condition_dim_;
  std::vector<std::unique_ptr<ResBlock>> res_;
  std::unique_ptr<ResBlock> key_, query_, out_res_;
  std::unique_ptr<CausalAttention<T, Device>> attention_;
  std::unique_ptr<WNConv2d<T, Device>> out_;
  ELU<T, Device> input_elu_;
  ChannelConcat<T, Device> key_cat_, query_cat_, out_cat_;
  Shape xshape_;
  TensorT dout_, dcond_, dx_;
};

}  // namespace vqvae2::nn
