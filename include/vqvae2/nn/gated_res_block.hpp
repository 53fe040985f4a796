// PixelSNAIL's gated residual block (rosinality's GatedResBlock):
//
//   a   = ELU(x)
//   h   = conv1(a)                       in -> channel, kernel k
//   h  += aux_conv(ELU(aux))             1x1, aux_channel -> channel   (when aux_channel > 0)
//   h   = dropout(ELU(h))
//   o   = conv2(h)                       channel -> 2*in, kernel k
//   o  += condition(cond)                1x1, no bias, condition_dim -> 2*in (when condition_dim > 0)
//   y   = GLU(o) + a
//
// The skip adds a = ELU(x), not x: the reference applies nn.ELU(inplace=True) to its
// input, which overwrites x before `out += input` reads it. We compute that function
// (it is what a model trained with the reference is), so checkpoints and goldens map
// one-to-one.
//
// The convolutions are weight-normalised (WNConv2d) of three kinds: Same ("wnconv2d",
// symmetric padding k/2), Causal ("causal": the causal padding plus the mask that hides
// the current and later pixels of the kernel's last row) and CausalDownRight
// ("causal_downright"). Parameter names follow the reference without its weight-norm
// wrapper segments: conv1.weight_v, aux_conv.weight_g, conv2.bias, condition.weight_v.
#pragma once

#include <memory>

#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/causal_conv2d.hpp"
#include "vqvae2/nn/dropout.hpp"
#include "vqvae2/nn/glu.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"

namespace vqvae2::nn {

enum class GatedConv { Same, Causal, CausalDownRight };

inline const char* gated_conv_name(GatedConv c) {
  switch (c) {
    case GatedConv::Same:
      return "wnconv2d";
    case GatedConv::Causal:
      return "causal";
    case GatedConv::CausalDownRight:
      return "causal_downright";
  }
  return "unknown";
}

// A weight-normalised convolution of one of the three kinds (stride 1).
template <class T, class Device = Cpu>
std::unique_ptr<WNConv2d<T, Device>> make_gated_conv(int in, int out, int kernel, GatedConv kind, bool bias = true) {
  VQVAE2_CHECK(kernel > 0, "GatedResBlock: kernel size must be positive, got ", kernel, ".");
  if (kind == GatedConv::Same)
    return std::make_unique<WNConv2d<T, Device>>(in, out, kernel, kernel, ops::ConvGeometry::symmetric(1, kernel / 2),
                                                 bias);
  const CausalPadding mode = kind == GatedConv::Causal ? CausalPadding::Causal : CausalPadding::DownRight;
  auto conv =
      std::make_unique<WNConv2d<T, Device>>(in, out, kernel, kernel, causal_geometry(kernel, kernel, mode), bias);
  if (kind == GatedConv::Causal) {
    VQVAE2_CHECK(kernel > 1,
                 "GatedResBlock: a 'causal' kernel must be larger than 1x1, since its only tap would be "
                 "the hidden current pixel.");
    conv->set_weight_mask(causal_weight_mask<T, Device>(out, in, kernel, kernel));
  }
  return conv;
}

template <class T, class Device = Cpu>
class GatedResBlock {
 public:
  using TensorT = Tensor<T, Device>;

  GatedResBlock(int in_channel, int channel, int kernel, GatedConv conv = GatedConv::Same, double dropout = 0.1,
                int aux_channel = 0, int condition_dim = 0)
      : in_(in_channel),
        channel_(channel),
        kernel_(kernel),
        kind_(conv),
        conv1_(make_gated_conv<T, Device>(in_channel, channel, kernel, conv)),
        conv2_(make_gated_conv<T, Device>(channel, 2 * in_channel, kernel, conv)),
        dropout_(dropout) {
    VQVAE2_CHECK(in_channel > 0 && channel > 0 && aux_channel >= 0 && condition_dim >= 0,
                 "GatedResBlock: channels must be positive (aux and condition non-negative), got in ", in_channel,
                 ", channel ", channel, ", aux ", aux_channel, ", condition ", condition_dim, ".");
    if (aux_channel > 0)
      aux_conv_ = std::make_unique<WNConv2d<T, Device>>(aux_channel, channel, 1, 1, ops::ConvGeometry{});
    if (condition_dim > 0)
      condition_ = std::make_unique<WNConv2d<T, Device>>(condition_dim, 2 * in_channel, 1, 1, ops::ConvGeometry{},
                                                         /*bias=*/false);
  }

  // torch's default initialisation of each convolution, then weight_norm (g = ||v||);
  // the dropout's own stream is seeded from g as well.
  void init(Generator& g) {
    conv1_->init(g);
    if (aux_conv_) aux_conv_->init(g);
    conv2_->init(g);
    if (condition_) condition_->init(g);
    dropout_.init(g);
  }

  // x [B, in, H, W]; aux [B, aux_channel, H, W] iff aux_channel > 0; condition
  // [B, condition_dim, H, W] iff condition_dim > 0. The condition must stay alive and
  // unchanged until backward (its convolution reads it there); x and aux need not.
  // The convolutions get non-owning views of their inputs (the block's own buffers),
  // so that no buffer is reallocated from step to step.
  const TensorT& forward(Context<Device>& ctx, const TensorT& x, const TensorT* aux = nullptr,
                         const TensorT* condition = nullptr) {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) == in_, "GatedResBlock::forward: expected an input [B, ", in_,
                 ", H, W], got ", x.shape().str(), ".");
    VQVAE2_CHECK((aux != nullptr) == (aux_conv_ != nullptr), "GatedResBlock::forward: an aux input is ",
                 aux_conv_ ? "required" : "not accepted", " (aux_channel ", aux_conv_ ? aux_conv_->in_channels() : 0,
                 ").");
    VQVAE2_CHECK((condition != nullptr) == (condition_ != nullptr), "GatedResBlock::forward: a condition is ",
                 condition_ ? "required" : "not accepted", " (condition_dim ",
                 condition_ ? condition_->in_channels() : 0, ").");
    const TensorT& a = elu_in_.forward(ctx, x);
    const TensorT* h = &conv1_->forward(ctx, borrow(a));
    if (aux) {
      const TensorT& ha = aux_conv_->forward(ctx, borrow(elu_aux_.forward(ctx, *aux)));
      residual_add(*h, ha, sum1_);
      h = &sum1_;
    }
    const TensorT& d = dropout_.forward(ctx, elu_mid_.forward(ctx, *h));
    const TensorT* o = &conv2_->forward(ctx, borrow(d));
    if (condition) {
      residual_add(*o, condition_->forward(ctx, borrow(*condition)), sum2_);
      o = &sum2_;
    }
    residual_add(glu_.forward(ctx, *o), a, y_);
    return y_;
  }

  // Returns dL/dx; dL/daux and dL/dcondition are in grad_aux() and grad_condition().
  const TensorT& backward(Context<Device>& ctx, const TensorT& dy) {
    expect_shape("GatedResBlock::backward", dy, y_.shape());
    const TensorT& dout = glu_.backward(ctx, dy);
    if (condition_) dcond_ = borrow(condition_->backward(ctx, dout));
    const TensorT& dh = elu_mid_.backward(ctx, dropout_.backward(ctx, conv2_->backward(ctx, dout)));
    if (aux_conv_) daux_ = borrow(elu_aux_.backward(ctx, aux_conv_->backward(ctx, dh)));
    // dL/da = dy (the skip) + conv1's input gradient.
    residual_add(conv1_->backward(ctx, dh), dy, da_);
    return elu_in_.backward(ctx, da_);
  }

  const TensorT& grad_aux() const {
    VQVAE2_CHECK(aux_conv_ != nullptr, "GatedResBlock::grad_aux: the block has no aux input.");
    return daux_;
  }
  const TensorT& grad_condition() const {
    VQVAE2_CHECK(condition_ != nullptr, "GatedResBlock::grad_condition: the block has no condition.");
    return dcond_;
  }

  template <class F>
  void visit(F&& f) {
    visit_child(*conv1_, "conv1", f);
    if (aux_conv_) visit_child(*aux_conv_, "aux_conv", f);
    visit_child(*conv2_, "conv2", f);
    if (condition_) visit_child(*condition_, "condition", f);
  }

  // Dropout draws from g (owned by the caller) instead of its own stream; nullptr goes back.
  void use_generator(Generator* g) { dropout_.use_generator(g); }

  int in_channels() const { return in_; }
  int channels() const { return channel_; }
  int kernel() const { return kernel_; }
  GatedConv conv_kind() const { return kind_; }
  bool has_aux() const { return aux_conv_ != nullptr; }
  bool has_condition() const { return condition_ != nullptr; }
  WNConv2d<T, Device>& conv1() { return *conv1_; }
  WNConv2d<T, Device>& conv2() { return *conv2_; }
  WNConv2d<T, Device>& aux_conv() {
    VQVAE2_CHECK(aux_conv_ != nullptr, "GatedResBlock::aux_conv: the block has no aux input.");
    return *aux_conv_;
  }
  WNConv2d<T, Device>& condition_conv() {
    VQVAE2_CHECK(condition_ != nullptr, "GatedResBlock::condition_conv: the block has no condition.");
    return *condition_;
  }
  Dropout<T, Device>& dropout() { return dropout_; }

 private:
  int in_, channel_, kernel_;
  GatedConv kind_;
  std::unique_ptr<WNConv2d<T, Device>> conv1_, conv2_, aux_conv_, condition_;
  ELU<T, Device> elu_in_, elu_aux_, elu_mid_;
  Dropout<T, Device> dropout_;
  GLU<T, Device> glu_;
  TensorT sum1_, sum2_, y_, da_, daux_, dcond_;
};

}  // namespace vqvae2::nn
