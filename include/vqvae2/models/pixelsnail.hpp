// PixelSNAIL<T, Device, Config>: the autoregressive prior over VQ-VAE-2 codes, as
// rosinality's vq-vae-2-pytorch pixelsnail.py builds it (REFERENCE.md):
//
//   x          = one_hot(codes)                                      [B, n_class, H, W]
//   out        = shift_down(horizontal(x)) + shift_right(vertical(x))
//                horizontal: causal conv [k/2, k] "down", vertical: [(k+1)/2, k/2] "downright"
//                (k = kernel rounded up to odd)
//   background = (i - H/2)/H (channel 0, varies along rows), (j - W/2)/W (channel 1)
//   condition  = upsample2x(cond_resnet(one_hot(top codes)))          (conditioned priors)
//   out        = blocks(out, background, condition)                  n_block PixelBlocks
//   out        = out_res(out)                                        n_out_res_block 1x1 GatedResBlocks
//   logits     = out_conv(ELU(out))                                  1x1 WNConv2d(channel -> n_class)
//
// The one-hot convolutions (the stem's two and the conditioning network's first) are
// gathers (nn::OneHotConv2d): no n_class-channel map is materialised. forward_onehot()
// runs the same model on dense one-hot maps instead, for which backward also returns
// dL/d(one-hot) (input_grad(), condition_grad()).
//
// Dropout (every gated block's and every attention's) draws from one generator,
// dropout_generator(), seeded by init(): with its (seed, offset) in a checkpoint a
// resumed run draws the same masks. ctx.training switches dropout on.
//
// Parameter names are the reference's torch names without the weight-norm wrapper
// segments ".conv": horizontal.weight_v, blocks.0.resblocks.1.conv1.weight_g,
// blocks.0.causal_attention.key.bias, cond_resnet.blocks.0.weight_v, out.1.weight_g
// (out.k for k < n_out_res_block are the output residual blocks, out.{n_out_res_block+1}
// the head convolution, as in the reference's nn.Sequential).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vqvae2/models/pixelsnail_configs.hpp"
#include "vqvae2/nn/activation.hpp"
#include "vqvae2/nn/causal_conv2d.hpp"
#include "vqvae2/nn/cond_resnet.hpp"
#include "vqvae2/nn/gated_res_block.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/one_hot_conv2d.hpp"
#include "vqvae2/nn/pixel_block.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/nn/wn_conv2d.hpp"

namespace vqvae2::models {

template <class T, class Device, class Config>
class PixelSNAIL {
 public:
  using ConfigType = Config;
  using TensorT = Tensor<T, Device>;
  using Codes = Tensor<std::int32_t, Device>;
  using Block = nn::PixelBlock<T, Device>;
  using ResBlock = nn::GatedResBlock<T, Device>;

  static constexpr int kStemKernel = Config::kernel % 2 == 0 ? Config::kernel + 1 : Config::kernel;
  static constexpr int kCondKernel = 3;  // the reference's cond_res_kernel
  static constexpr int kConditionDim = Config::conditioned ? Config::cond_res_channel : 0;

  static_assert(Config::height > 0 && Config::width > 0 && Config::n_class > 1 && Config::channel > 0 &&
                    Config::kernel > 1 && Config::n_block >= 0 && Config::n_res_block >= 0 && Config::res_channel > 0,
                "PixelSNAIL: sizes must be positive (kernel > 1, n_class > 1).");
  static_assert(!Config::attention || (Config::channel % 2 == 0 && (Config::channel / 2) % Config::heads == 0),
                "PixelSNAIL: attention needs channel/2 channels divisible by heads.");
  static_assert(!Config::conditioned ||
                    (Config::cond_res_channel > 0 && Config::height % 2 == 0 && Config::width % 2 == 0),
                "PixelSNAIL: a conditioned prior needs cond_res_channel > 0 and an even map size.");

  static std::string fingerprint() { return "pixelsnail/" + pixelsnail_config_fingerprint<Config>(); }

  // Precision of the convolutions in forward and backward (core/precision.hpp); the
  // loss, the attention's softmax and every parameter stay fp32.
  void set_precision(Precision p) { precision_ = p; }
  Precision precision() const { return precision_; }

  PixelSNAIL()
      : horizontal_(Config::n_class, Config::channel, kStemKernel / 2, kStemKernel,
                    nn::causal_geometry(kStemKernel / 2, kStemKernel, nn::CausalPadding::Down)),
        vertical_(Config::n_class, Config::channel, (kStemKernel + 1) / 2, kStemKernel / 2,
                  nn::causal_geometry((kStemKernel + 1) / 2, kStemKernel / 2, nn::CausalPadding::DownRight)),
        head_(Config::channel, Config::n_class, 1, 1, ops::ConvGeometry{}) {
    for (int i = 0; i < Config::n_block; ++i)
      blocks_.push_back(std::make_unique<Block>(Config::channel, Config::res_channel, Config::kernel,
                                                Config::n_res_block, Config::attention, Config::dropout, kConditionDim,
                                                Config::heads));
    if constexpr (Config::conditioned)
      cond_ = std::make_unique<nn::CondResNet<T, Device>>(Config::n_class, Config::cond_res_channel, kCondKernel,
                                                          Config::n_cond_res_block, Config::dropout);
    for (int i = 0; i < Config::n_out_res_block; ++i)
      out_res_.push_back(
          std::make_unique<ResBlock>(Config::channel, Config::res_channel, 1, nn::GatedConv::Same, Config::dropout));
    for (auto& b : blocks_) b->use_generator(&dropout_gen_);
    if (cond_) cond_->use_generator(&dropout_gen_);
    for (auto& r : out_res_) r->use_generator(&dropout_gen_);
    background_ = make_background(1);
  }
  // Layers hold a pointer to the model's dropout generator.
  PixelSNAIL(const PixelSNAIL&) = delete;
  PixelSNAIL& operator=(const PixelSNAIL&) = delete;

  // torch's default initialisation of every layer (weight_norm over freshly built
  // convolutions and linears: g = ||v||), then the dropout generator's seed, from g.
  void init(Generator& g) {
    horizontal_.init(g);
    vertical_.init(g);
    for (auto& b : blocks_) b->init(g);
    if (cond_) cond_->init(g);
    for (auto& r : out_res_) r->init(g);
    head_.init(g);
    dropout_gen_.set_state(g.below(std::uint64_t{1} << 62), 0);
  }

  // codes [B, H, W] int32 in [0, n_class); condition: top codes [B, H/2, W/2] (required
  // iff Config::conditioned). Returns logits [B, n_class, H, W], valid until the next
  // forward. codes and condition must stay alive and unchanged until backward.
  const TensorT& forward(Context<Device>& ctx, const Codes& codes, const Codes* condition = nullptr) {
    check_codes("codes", codes, Config::height, Config::width);
    check_condition(condition != nullptr, codes.dim(0));
    if (condition) check_codes("condition", *condition, Config::height / 2, Config::width / 2);
    dense_ = false;
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const TensorT& h = horizontal_.forward(ctx, codes);
    const TensorT& v = vertical_.forward(ctx, codes);
    const TensorT* c = nullptr;
    if (condition) c = &upsample_.forward(ctx, cond_->forward(ctx, *condition));
    return run(ctx, h, v, c, codes.dim(0));
  }

  // The same model on dense maps: onehot [B, n_class, H, W], condition_onehot
  // [B, n_class, H/2, W/2]. After backward, input_grad() and condition_grad() hold
  // dL/donehot and dL/dcondition_onehot.
  const TensorT& forward_onehot(Context<Device>& ctx, const TensorT& onehot,
                                const TensorT* condition_onehot = nullptr) {
    VQVAE2_CHECK(onehot.rank() == 4 && onehot.dim(1) == Config::n_class && onehot.dim(2) == Config::height &&
                     onehot.dim(3) == Config::width,
                 "PixelSNAIL::forward_onehot: expected [B, ", Config::n_class, ", ", Config::height, ", ",
                 Config::width, "], got ", onehot.shape().str(), ".");
    check_condition(condition_onehot != nullptr, onehot.dim(0));
    if (condition_onehot)
      VQVAE2_CHECK(condition_onehot->rank() == 4 && condition_onehot->dim(0) == onehot.dim(0) &&
                       condition_onehot->dim(1) == Config::n_class && condition_onehot->dim(2) == Config::height / 2 &&
                       condition_onehot->dim(3) == Config::width / 2,
                   "PixelSNAIL::forward_onehot: expected a condition [", onehot.dim(0), ", ", Config::n_class, ", ",
                   Config::height / 2, ", ", Config::width / 2, "], got ", condition_onehot->shape().str(), ".");
    dense_ = true;
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const TensorT& h = horizontal_.forward_dense(ctx, onehot);
    const TensorT& v = vertical_.forward_dense(ctx, onehot);
    const TensorT* c = nullptr;
    if (condition_onehot) c = &upsample_.forward(ctx, cond_->forward_dense(ctx, *condition_onehot));
    return run(ctx, h, v, c, onehot.dim(0));
  }

  // dlogits [B, n_class, H, W]: adds every parameter's gradient (+=).
  void backward(Context<Device>& ctx, const TensorT& dlogits) {
    expect_shape("PixelSNAIL::backward", dlogits, head_out_shape_);
    const PrecisionScope<Context<Device>> precision(ctx, precision_);
    const TensorT* d = &head_elu_.backward(ctx, head_.backward(ctx, dlogits));
    for (auto it = out_res_.rbegin(); it != out_res_.rend(); ++it) d = &(*it)->backward(ctx, *d);
    if (conditioned_run_) {
      dcond_.resize(cond_up_shape_);
      dcond_.zero();
    }
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      d = &(*it)->backward(ctx, *d);
      if (conditioned_run_) nn::accumulate(dcond_, (*it)->grad_condition());
    }
    const TensorT& dh = shift_down_.backward(ctx, *d);
    const TensorT& dv = shift_right_.backward(ctx, *d);
    if (dense_) {
      nn::residual_add(horizontal_.backward_dense(ctx, dh), vertical_.backward_dense(ctx, dv), dinput_);
    } else {
      horizontal_.backward(ctx, dh);
      vertical_.backward(ctx, dv);
    }
    if (conditioned_run_) {
      const TensorT& dc = cond_->backward(ctx, upsample_.backward(ctx, dcond_));
      if (dense_) {
        dcond_input_.resize(dc.shape());
        dcond_input_.copy_from(dc);
      }
    }
  }

  // dL/d(one-hot input) and dL/d(one-hot condition) of the last backward after forward_onehot.
  const TensorT& input_grad() const {
    VQVAE2_CHECK(dense_, "PixelSNAIL::input_grad: only available after forward_onehot.");
    return dinput_;
  }
  const TensorT& condition_grad() const {
    VQVAE2_CHECK(dense_ && Config::conditioned, "PixelSNAIL::condition_grad: only available after forward_onehot ",
                 "on a conditioned prior.");
    return dcond_input_;
  }

  template <class F>
  void visit(F&& f) {
    visit_child(horizontal_, "horizontal", f);
    visit_child(vertical_, "vertical", f);
    for (std::size_t i = 0; i < blocks_.size(); ++i) visit_child(*blocks_[i], "blocks." + std::to_string(i), f);
    if (cond_) visit_child(*cond_, "cond_resnet", f);
    for (std::size_t i = 0; i < out_res_.size(); ++i) visit_child(*out_res_[i], "out." + std::to_string(i), f);
    visit_child(head_, "out." + std::to_string(out_res_.size() + 1), f);
  }

  std::int64_t parameter_count() { return vqvae2::parameter_count(*this); }

  // The positional background [B, 2, H, W]: (i - H/2)/H and (j - W/2)/W.
  static TensorT make_background(std::int64_t batch) {
    TensorT bg(nchw(batch, 2, Config::height, Config::width));
    const double H = Config::height, W = Config::width;
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t i = 0; i < Config::height; ++i)
        for (std::int64_t j = 0; j < Config::width; ++j) {
          bg.at(b, 0, i, j) = static_cast<T>((static_cast<double>(i) - H / 2) / H);
          bg.at(b, 1, i, j) = static_cast<T>((static_cast<double>(j) - W / 2) / W);
        }
    return bg;
  }

  // The dropout stream of every layer; its (seed, offset) is the model's random state.
  Generator& dropout_generator() { return dropout_gen_; }

  // Sub-modules, for samplers and tests.
  nn::OneHotConv2d<T, Device>& horizontal() { return horizontal_; }
  nn::OneHotConv2d<T, Device>& vertical() { return vertical_; }
  std::vector<std::unique_ptr<Block>>& blocks() { return blocks_; }
  Block& block(std::size_t i) { return *blocks_.at(i); }
  std::vector<std::unique_ptr<ResBlock>>& out_resblocks() { return out_res_; }
  nn::WNConv2d<T, Device>& head() { return head_; }
  nn::CondResNet<T, Device>& cond_resnet() {
    VQVAE2_CHECK(cond_ != nullptr, "PixelSNAIL::cond_resnet: the prior is not conditioned.");
    return *cond_;
  }
  // The background of the last forward ([B, 2, H, W]).
  const TensorT& background() const { return background_; }

 private:
  void check_codes(const char* what, const Codes& c, std::int64_t H, std::int64_t W) const {
    VQVAE2_CHECK(c.rank() == 3 && c.dim(0) > 0 && c.dim(1) == H && c.dim(2) == W, "PixelSNAIL(", Config::name,
                 "): expected ", what, " [B, ", H, ", ", W, "], got ", c.shape().str(), ".");
  }
  void check_condition(bool given, std::int64_t batch) const {
    VQVAE2_CHECK(
        given == Config::conditioned, "PixelSNAIL(", Config::name, "): ",
        Config::conditioned ? "this prior needs the top codes as its condition." : "this prior takes no condition.");
    (void)batch;
  }

  const TensorT& run(Context<Device>& ctx, const TensorT& h, const TensorT& v, const TensorT* cond,
                     std::int64_t batch) {
    if (background_.dim(0) != batch) background_ = make_background(batch);
    VQVAE2_CHECK(!cond || cond->dim(0) == batch, "PixelSNAIL(", Config::name, "): condition batch ", cond->dim(0),
                 " differs from the codes' batch ", batch, ".");
    conditioned_run_ = cond != nullptr;
    if (cond) cond_up_shape_ = cond->shape();
    nn::residual_add(shift_down_.forward(ctx, h), shift_right_.forward(ctx, v), stem_);
    const TensorT* out = &stem_;
    for (auto& b : blocks_) out = &b->forward(ctx, *out, background_, cond);
    for (auto& r : out_res_) out = &r->forward(ctx, *out);
    const TensorT& logits = head_.forward(ctx, nn::borrow(head_elu_.forward(ctx, *out)));
    head_out_shape_ = logits.shape();
    return logits;
  }

  nn::OneHotConv2d<T, Device> horizontal_, vertical_;
  nn::ShiftDown<T, Device> shift_down_;
  nn::ShiftRight<T, Device> shift_right_;
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<nn::CondResNet<T, Device>> cond_;
  nn::Upsample2x<T, Device> upsample_;
  std::vector<std::unique_ptr<ResBlock>> out_res_;
  nn::ELU<T, Device> head_elu_;
  nn::WNConv2d<T, Device> head_;
  Generator dropout_gen_{0xD20905ULL};
  bool dense_ = false, conditioned_run_ = false;
  Precision precision_ = Precision::fp32;
  Shape head_out_shape_, cond_up_shape_;
  TensorT background_, stem_, dcond_, dinput_, dcond_input_;
};

}  // namespace vqvae2::models
