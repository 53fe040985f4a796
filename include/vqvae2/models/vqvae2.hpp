// VQVAE2<T, Device, Config>: the two-level VQ-VAE of Razavi et al. 2019 in the
// reference architecture (REFERENCE.md). Explicit forward/backward: forward
// keeps every activation the backward needs; backward runs the children in reverse.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vqvae2/models/configs.hpp"
#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/conv2d.hpp"
#include "vqvae2/nn/conv_transpose2d.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/res_block.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/ops/cpu/map.hpp"
#include "vqvae2/vq/vector_quantizer.hpp"

namespace vqvae2::models {

namespace detail {
inline ops::ConvGeometry down2() { return ops::ConvGeometry::symmetric(2, 1); }  // 4x4, stride 2, pad 1
inline ops::ConvGeometry same3() { return ops::ConvGeometry::symmetric(1, 1); }  // 3x3, pad 1
inline ops::ConvGeometry point() { return ops::ConvGeometry::symmetric(1, 0); }  // 1x1
}  // namespace detail

// Gradient buffers of the backward chains (docs/layers.md, Memory). An input
// gradient inside an encoder or decoder is dead once the layer before has read
// it, so two activation-sized buffers used alternately and one for the residual
// branches' narrow gradients serve every layer. A module's returned gradient lies
// in one of them: it is valid until the next backward of a module sharing them.
// `branch` is forward scratch: the residual blocks add their branch output to the
// stream in place, after which it is dead.
template <class T, class Device>
struct GradBuffers {
  std::shared_ptr<Tensor<T, Device>> wide[2], narrow, branch;
  static GradBuffers make() {
    return GradBuffers{{std::make_shared<Tensor<T, Device>>(), std::make_shared<Tensor<T, Device>>()},
                       std::make_shared<Tensor<T, Device>>(),
                       std::make_shared<Tensor<T, Device>>()};
  }
};

// Encoder: stride 4 = two 4x4/2 convs (in -> ch/2 -> ch) then 3x3; stride 2 = one
// 4x4/2 conv (in -> ch/2) then 3x3 to ch. Then residual blocks and a ReLU.
template <class T, class Device>
class Encoder {
 public:
  Encoder(int in, int channels, int res_blocks, int res_channels, int stride) : stride_(stride) {
    VQVAE2_CHECK(stride == 2 || stride == 4, "Encoder: stride must be 2 or 4, got ", stride, ".");
    down1_ = std::make_unique<nn::Conv2d<T, Device>>(in, channels / 2, 4, 4, detail::down2());
    if (stride == 4) down2_ = std::make_unique<nn::Conv2d<T, Device>>(channels / 2, channels, 4, 4, detail::down2());
    conv_ =
        std::make_unique<nn::Conv2d<T, Device>>(stride == 4 ? channels : channels / 2, channels, 3, 3, detail::same3());
    for (int i = 0; i < res_blocks; ++i)
      blocks_.push_back(std::make_unique<nn::ResBlock<T, Device>>(channels, res_channels));
    set_grad_buffers(GradBuffers<T, Device>::make());
  }
  // Routes the input gradients through `b` (backward order: relu_out, blocks, conv,
  // relu2, down2, relu1, down1): each layer writes the buffer its output gradient is
  // not in, the ReLUs work in place.
  void set_grad_buffers(const GradBuffers<T, Device>& b) {
    int cur = 0;
    relu_out_.set_input_grad_buffer(b.wide[cur]);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) (*it)->set_grad_buffers(b.wide[cur ^= 1], b.narrow);
    for (auto& blk : blocks_) blk->set_branch_buffer(b.branch);
    conv_->set_input_grad_buffer(b.wide[cur ^= 1]);
    if (down2_) down2_->set_input_grad_buffer(b.wide[cur ^= 1]);
    down1_->set_input_grad_buffer(b.wide[cur ^= 1]);
  }
  // The image encoder's first layer needs no input gradient: skipping it saves a
  // full-resolution backward-data convolution per step.
  void set_needs_input_grad(bool on) { down1_->set_needs_input_grad(on); }
  void init(Generator& g) {
    down1_->init(g);
    if (down2_) down2_->init(g);
    conv_->init(g);
    for (auto& b : blocks_) b->init(g);
  }
  // Every ReLU runs in place on the output before it (a conv's or a block's, read by nothing else).
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    down1_->forward(ctx, x);
    const Tensor<T, Device>* h = &relu1_.forward_inplace(ctx, down1_->mutable_output());
    if (down2_) {
      down2_->forward(ctx, *h);
      h = &relu2_.forward_inplace(ctx, down2_->mutable_output());
    }
    conv_->forward(ctx, *h);
    Tensor<T, Device>& m = conv_->mutable_output();  // the residual stream
    for (auto& b : blocks_) b->forward_inplace(ctx, m);
    return relu_out_.forward_inplace(ctx, m);
  }
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dy) {
    const Tensor<T, Device>* d = &relu_out_.backward(ctx, dy);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) d = &(*it)->backward(ctx, *d);
    conv_->backward(ctx, *d);
    Tensor<T, Device>* g = &conv_->mutable_input_grad();
    if (down2_) {
      down2_->backward(ctx, relu2_.backward_inplace(ctx, *g));
      g = &down2_->mutable_input_grad();
    }
    return down1_->backward(ctx, relu1_.backward_inplace(ctx, *g));
  }
  template <class F>
  void visit(F&& f) {
    visit_child(*down1_, "down1", f);
    if (down2_) visit_child(*down2_, "down2", f);
    visit_child(*conv_, "conv", f);
    for (std::size_t i = 0; i < blocks_.size(); ++i) visit_child(*blocks_[i], "res" + std::to_string(i), f);
  }

 private:
  int stride_;
  std::unique_ptr<nn::Conv2d<T, Device>> down1_, down2_, conv_;
  std::vector<std::unique_ptr<nn::ResBlock<T, Device>>> blocks_;
  nn::ReLU<T, Device> relu1_, relu2_, relu_out_;
};

// Decoder: 3x3 conv in -> ch, residual blocks, ReLU, then stride 4 = two 4x4/2
// transposed convs (ch -> ch/2 -> out, ReLU between), stride 2 = one (ch -> out).
template <class T, class Device>
class Decoder {
 public:
  Decoder(int in, int out, int channels, int res_blocks, int res_channels, int stride) {
    VQVAE2_CHECK(stride == 2 || stride == 4, "Decoder: stride must be 2 or 4, got ", stride, ".");
    conv_ = std::make_unique<nn::Conv2d<T, Device>>(in, channels, 3, 3, detail::same3());
    for (int i = 0; i < res_blocks; ++i)
      blocks_.push_back(std::make_unique<nn::ResBlock<T, Device>>(channels, res_channels));
    if (stride == 4) {
      up1_ = std::make_unique<nn::ConvTranspose2d<T, Device>>(channels, channels / 2, 4, 4, detail::down2());
      up2_ = std::make_unique<nn::ConvTranspose2d<T, Device>>(channels / 2, out, 4, 4, detail::down2());
    } else {
      up1_ = std::make_unique<nn::ConvTranspose2d<T, Device>>(channels, out, 4, 4, detail::down2());
    }
    set_grad_buffers(GradBuffers<T, Device>::make());
  }
  // As Encoder::set_grad_buffers, in backward order up2, up1, blocks, conv.
  void set_grad_buffers(const GradBuffers<T, Device>& b) {
    int cur = 1;
    if (up2_) up2_->set_input_grad_buffer(b.wide[cur ^= 1]);
    up1_->set_input_grad_buffer(b.wide[cur ^= 1]);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) (*it)->set_grad_buffers(b.wide[cur ^= 1], b.narrow);
    for (auto& blk : blocks_) blk->set_branch_buffer(b.branch);
    conv_->set_input_grad_buffer(b.wide[cur ^= 1]);
  }
  void init(Generator& g) {
    conv_->init(g);
    for (auto& b : blocks_) b->init(g);
    up1_->init(g);
    if (up2_) up2_->init(g);
  }
  // The ReLUs run in place, as in the Encoder.
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    conv_->forward(ctx, x);
    Tensor<T, Device>& m = conv_->mutable_output();  // the residual stream
    for (auto& b : blocks_) b->forward_inplace(ctx, m);
    const Tensor<T, Device>* h = &up1_->forward(ctx, relu_.forward_inplace(ctx, m));
    if (up2_) h = &up2_->forward(ctx, relu_up_.forward_inplace(ctx, up1_->mutable_output()));
    return *h;
  }
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& dy) {
    const Tensor<T, Device>* d = &dy;
    if (up2_) {
      up2_->backward(ctx, *d);
      d = &relu_up_.backward_inplace(ctx, up2_->mutable_input_grad());
    }
    up1_->backward(ctx, *d);
    d = &relu_.backward_inplace(ctx, up1_->mutable_input_grad());
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) d = &(*it)->backward(ctx, *d);
    return conv_->backward(ctx, *d);
  }
  template <class F>
  void visit(F&& f) {
    visit_child(*conv_, "conv", f);
    for (std::size_t i = 0; i < blocks_.size(); ++i) visit_child(*blocks_[i], "res" + std::to_string(i), f);
    visit_child(*up1_, "up1", f);
    if (up2_) visit_child(*up2_, "up2", f);
  }

 private:
  std::unique_ptr<nn::Conv2d<T, Device>> conv_;
  std::vector<std::unique_ptr<nn::ResBlock<T, Device>>> blocks_;
  std::unique_ptr<nn::ConvTranspose2d<T, Device>> up1_, up2_;
  nn::ReLU<T, Device> relu_, relu_up_;
};

template <class T, class Device = Cpu, class Config = Oasis256>
class VQVAE2 {
 public:
  using Quantizer = vq::VectorQuantizer<T, Device, Config::embed_dim, Config::num_codes>;
  using config = Config;
  static constexpr int kDownsampleBottom = 4, kDownsampleTop = 8;

  VQVAE2()
      : enc_b_(Config::in_channels, Config::channels, Config::res_blocks, Config::res_channels, 4),
        enc_t_(Config::channels, Config::channels, Config::res_blocks, Config::res_channels, 2),
        quantize_conv_t_(Config::channels, Config::embed_dim, 1, 1, detail::point()),
        dec_t_(Config::embed_dim, Config::embed_dim, Config::channels, Config::res_blocks, Config::res_channels, 2),
        quantize_conv_b_(Config::embed_dim + Config::channels, Config::embed_dim, 1, 1, detail::point()),
        upsample_t_(Config::embed_dim, Config::embed_dim, 4, 4, detail::down2()),
        dec_(2 * Config::embed_dim, Config::in_channels, Config::channels, Config::res_blocks, Config::res_channels,
             4) {
    enc_b_.set_needs_input_grad(false);  // images need no gradient; set_input_grad(true) to get one
    // The quantisers' inputs stay fp32 under any policy: a code is a nearest-neighbour
    // decision, and these 1x1 convolutions cost little.
    quantize_conv_t_.pin_precision(Precision::fp32);
    quantize_conv_b_.pin_precision(Precision::fp32);
    // One set of gradient buffers for the whole backward (see backward()).
    grads_ = GradBuffers<T, Device>::make();
    enc_b_.set_grad_buffers(grads_);
    enc_t_.set_grad_buffers(grads_);
    dec_t_.set_grad_buffers(grads_);
    dec_.set_grad_buffers(grads_);
    quantize_conv_b_.set_input_grad_buffer(grads_.wide[0]);
  }

  // Whether backward() computes dL/dx (off by default: it costs a full-resolution convolution).
  void set_input_grad(bool on) { enc_b_.set_needs_input_grad(on); }

  static std::string fingerprint() { return config_fingerprint<Config>(); }

  // Precision of the convolutions in forward, backward, encode and decode_codes
  // (core/precision.hpp). Parameters, code books and their EMA stay fp32.
  void set_precision(Precision p) { precision_ = p; }
  Precision precision() const { return precision_; }

  void init(Generator& g) {
    enc_b_.init(g);
    enc_t_.init(g);
    quantize_conv_t_.init(g);
    dec_t_.init(g);
    quantize_conv_b_.init(g);
    upsample_t_.init(g);
    dec_.init(g);
    quantize_t_.init(g);
    quantize_b_.init(g);
  }

  // x: [N, in_channels, H, W] in [-1, 1], H and W multiples of 8. Returns the reconstruction.
  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    check_input(x);
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const auto& enc_b = enc_b_.forward(ctx, x);
    const auto& enc_t = enc_t_.forward(ctx, enc_b);
    const auto& quant_t = quantize_t_.forward(ctx, quantize_conv_t_.forward(ctx, enc_t));
    const auto& dec_t = dec_t_.forward(ctx, quant_t);
    const auto& quant_b = quantize_b_.forward(ctx, quantize_conv_b_.forward(ctx, cat_tb_.forward(ctx, dec_t, enc_b)));
    const auto& up_t = upsample_t_.forward(ctx, quant_t);
    return dec_.forward(ctx, cat_q_.forward(ctx, up_t, quant_b));
  }

  // Unweighted commitment losses of the last forward.
  double commitment_top() const { return quantize_t_.commitment_loss(); }
  double commitment_bottom() const { return quantize_b_.commitment_loss(); }

  // Backward from dL/drecon; the commitment terms enter with `commitment_weight`.
  // Returns dL/dx when set_input_grad(true), else an empty tensor.
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& drecon, double commitment_weight) {
    return backward(ctx, drecon, commitment_weight, commitment_weight);
  }

  // The same with separate weights for the top and bottom commitment terms.
  const Tensor<T, Device>& backward(Context<Device>& ctx, const Tensor<T, Device>& drecon, double weight_top,
                                    double weight_bottom) {
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    cat_q_.backward(ctx, dec_.backward(ctx, drecon));
    upsample_t_.backward(ctx, cat_q_.grad_a());
    // upsample_t_ runs no other backward this step, so its input-gradient buffer can
    // collect the top codes' second path (through dec_t) without a copy.
    Tensor<T, Device>& dquant_t = upsample_t_.mutable_input_grad();
    const auto& dz_b = quantize_b_.backward(ctx, cat_q_.grad_b(), static_cast<T>(weight_bottom));
    // The four modules and quantize_conv_b share grads_: every gradient they return is
    // consumed before the next of them runs backward. The concatenation's gradient is
    // split here rather than by cat_tb_, straight into the tensors that need it:
    // dec_t's part into wide[1] (free while quantize_conv_b's lies in wide[0]; the
    // decoder reads it before writing wide[1]), enc_b's into denc_b_.
    const auto& dcat = quantize_conv_b_.backward(ctx, dz_b);
    const std::int64_t ct = Config::embed_dim;
    Tensor<T, Device>& ddec_t = *grads_.wide[1];
    ddec_t.resize(nchw(dcat.dim(0), ct, dcat.dim(2), dcat.dim(3)));
    ops::extract_channels(dcat, 0, ddec_t);
    denc_b_.resize(nchw(dcat.dim(0), dcat.dim(1) - ct, dcat.dim(2), dcat.dim(3)));
    ops::extract_channels(dcat, ct, denc_b_);
    ops::add_inplace(dquant_t, dec_t_.backward(ctx, ddec_t));
    const auto& dz_t = quantize_t_.backward(ctx, dquant_t, static_cast<T>(weight_top));
    ops::add_inplace(denc_b_, enc_t_.backward(ctx, quantize_conv_t_.backward(ctx, dz_t)));
    return enc_b_.backward(ctx, denc_b_);
  }

  // Code maps of x: top [N, H/8, W/8] and bottom [N, H/4, W/4]. Evaluation mode is
  // the caller's choice (ctx.training = false leaves the code books unchanged).
  void encode(Context<Device>& ctx, const Tensor<T, Device>& x, Tensor<std::int32_t, Device>& top,
              Tensor<std::int32_t, Device>& bottom) {
    check_input(x);
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const auto& enc_b = enc_b_.forward(ctx, x);
    const auto& enc_t = enc_t_.forward(ctx, enc_b);
    const auto& quant_t = quantize_t_.forward(ctx, quantize_conv_t_.forward(ctx, enc_t));
    const auto& dec_t = dec_t_.forward(ctx, quant_t);
    quantize_b_.forward(ctx, quantize_conv_b_.forward(ctx, cat_tb_.forward(ctx, dec_t, enc_b)));
    top.resize(quantize_t_.indices().shape());
    top.copy_from(quantize_t_.indices());
    bottom.resize(quantize_b_.indices().shape());
    bottom.copy_from(quantize_b_.indices());
  }

  // Decodes code maps (as the priors sample them) into images.
  const Tensor<T, Device>& decode_codes(Context<Device>& ctx, const Tensor<std::int32_t, Device>& top,
                                        const Tensor<std::int32_t, Device>& bottom) {
    VQVAE2_CHECK(top.rank() == 3 && bottom.rank() == 3 && top.dim(0) == bottom.dim(0) &&
                     bottom.dim(1) == 2 * top.dim(1) && bottom.dim(2) == 2 * top.dim(2),
                 "VQVAE2::decode_codes: top codes ", top.shape().str(), " and bottom codes ", bottom.shape().str(),
                 " do not fit (the bottom map must be twice the top map).");
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const auto& quant_t = quantize_t_.lookup(ctx, top);
    const auto& quant_b = quantize_b_.lookup(ctx, bottom);
    return dec_.forward(ctx, cat_q_.forward(ctx, upsample_t_.forward(ctx, quant_t), quant_b));
  }

  template <class F>
  void visit(F&& f) {
    visit_child(enc_b_, "enc_b", f);
    visit_child(enc_t_, "enc_t", f);
    visit_child(quantize_conv_t_, "quantize_conv_t", f);
    visit_child(dec_t_, "dec_t", f);
    visit_child(quantize_conv_b_, "quantize_conv_b", f);
    visit_child(upsample_t_, "upsample_t", f);
    visit_child(dec_, "dec", f);
  }
  // The code books and their EMA statistics (state, not gradient parameters).
  template <class F>
  void visit_buffers(F&& f) {
    quantize_t_.visit_buffers(PrefixedVisitor<F>{f, "quantize_t"});
    quantize_b_.visit_buffers(PrefixedVisitor<F>{f, "quantize_b"});
  }

  Quantizer& quantizer_top() { return quantize_t_; }
  Quantizer& quantizer_bottom() { return quantize_b_; }

 private:
  void check_input(const Tensor<T, Device>& x) const {
    VQVAE2_CHECK(x.rank() == 4 && x.dim(1) == Config::in_channels && x.dim(2) % 8 == 0 && x.dim(3) % 8 == 0 &&
                     x.dim(2) > 0 && x.dim(3) > 0,
                 "VQVAE2 (", Config::name, "): expected input [N, ", Config::in_channels,
                 ", H, W] with H and W multiples of 8, got ", x.shape().str(), ".");
  }

  Encoder<T, Device> enc_b_, enc_t_;
  nn::Conv2d<T, Device> quantize_conv_t_;
  Quantizer quantize_t_;
  Decoder<T, Device> dec_t_;
  nn::ChannelConcat<T, Device> cat_tb_;
  nn::Conv2d<T, Device> quantize_conv_b_;
  Quantizer quantize_b_;
  nn::ConvTranspose2d<T, Device> upsample_t_;
  nn::ChannelConcat<T, Device> cat_q_;
  Decoder<T, Device> dec_;
  Tensor<T, Device> denc_b_;
  GradBuffers<T, Device> grads_;
  Precision precision_ = Precision::fp32;
};

}  // namespace vqvae2::models
