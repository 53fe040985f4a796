// Dropout with inverted scaling: in training, element i is zeroed when the
// Philox draw philox_uniform(seed, offset, i) <= p and the survivors are
// scaled by 1 / (1 - p); in evaluation (ctx.training false) or with p = 0 it
// is the identity. The draw depends only on (seed, offset, i), so CPU and GPU
// produce the same mask, and backward reuses the stored mask.
//
// Random numbers come from the layer's own Generator (init() seeds it from the
// model's generator, so layers draw different masks), or from a shared one set
// with use_generator() so that one (seed, offset) pair in a checkpoint
// restores every dropout's stream.
#pragma once

#include <cstdint>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/nn/tensor_ops.hpp"
#include "vqvae2/ops/cpu/map.hpp"

namespace vqvae2::nn {

template <class T, class Device = Cpu>
class Dropout {
 public:
  explicit Dropout(double p = 0.1, std::uint64_t seed = 0xD80F0u) : p_(static_cast<float>(p)), own_(seed) {
    VQVAE2_CHECK(p >= 0.0 && p < 1.0, "nn::Dropout: probability ", p, " is outside [0, 1).");
  }

  // Seeds this layer's own stream from g (one draw), so sibling layers differ.
  void init(Generator& g) { own_.set_state(g.below(~std::uint64_t{0}), 0); }
  // Draw from g (owned by the caller, outliving the layer) instead of the own stream; nullptr goes back.
  void use_generator(Generator* g) { shared_ = g; }
  Generator& generator() { return shared_ ? *shared_ : own_; }

  const Tensor<T, Device>& forward(Context<Device>& ctx, const Tensor<T, Device>& x) {
    active_ = ctx.training && p_ > 0.0f;
    if (!active_) {
      // A non-owning view: holding a counted copy would make the producer's resize() reallocate.
      pass_ = borrow(x);
      return pass_;
    }
    y_.resize(x.shape());
    mask_.resize(x.shape());
    Generator& g = generator();
    seed_ = g.seed();
    offset_ = g.reserve(static_cast<std::uint64_t>(x.numel()));
    ops::dropout_forward(x, y_, mask_, seed_, offset_, p_);
    return y_;
  }

  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    if (!active_) {
      dpass_ = borrow(dy);
      return dpass_;
    }
    VQVAE2_CHECK(dy.shape() == y_.shape(), "nn::Dropout::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    dx_.resize(dy.shape());
    ops::dropout_backward(dy, mask_, dx_, p_);
    return dx_;
  }

  template <class F>
  void visit(F&&) {}

  double p() const { return p_; }
  // 1 where the last training forward kept the element.
  const Tensor<std::uint8_t, Device>& mask() const { return mask_; }
  // (seed, offset) of the last training forward's draw.
  std::uint64_t last_seed() const { return seed_; }
  std::uint64_t last_offset() const { return offset_; }

 private:
  float p_;
  Generator own_;
  Generator* shared_ = nullptr;
  bool active_ = false;
  std::uint64_t seed_ = 0, offset_ = 0;
  Tensor<T, Device> y_, dx_, pass_, dpass_;
  Tensor<std::uint8_t, Device> mask_;
};

}  // namespace vqvae2::nn
