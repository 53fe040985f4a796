// Shape layers and helpers: residual sums, channel concatenation of 2 or 3
// NCHW inputs, nearest-neighbour x2 upsampling, and PixelSNAIL's shift_down /
// shift_right (pad one row at the top / one column at the left, crop back).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/ops/cpu/map.hpp"

namespace vqvae2::nn {

// A non-owning view of x. Layers keep their inputs for backward this way: a
// counted copy would raise the producer's use_count, and its next resize()
// would then allocate instead of reusing the storage.
template <class T, class Device>
Tensor<T, Device> borrow(const Tensor<T, Device>& x) {
  return Tensor<T, Device>::wrap(const_cast<T*>(x.data()), x.shape());
}

// out = a + b, sizing out (a layer-owned tensor) to their common shape.
template <class T, class Device>
void residual_add(const Tensor<T, Device>& a, const Tensor<T, Device>& b, Tensor<T, Device>& out) {
  VQVAE2_CHECK(a.shape() == b.shape(), "nn::residual_add: shapes ", a.shape().str(), " and ", b.shape().str(),
               " differ.");
  out.resize(a.shape());
  ops::add(a, b, out);
}

// grad += g, for a tensor that feeds two branches.
template <class T, class Device>
void accumulate(Tensor<T, Device>& grad, const Tensor<T, Device>& g) {
  VQVAE2_CHECK(grad.shape() == g.shape(), "nn::accumulate: gradient ", g.shape().str(), " cannot be added to ",
               grad.shape().str(), ".");
  ops::add_inplace(grad, g);
}

// Concatenation along channels of 2 or 3 NCHW tensors with equal N, H, W.
// backward(dy) splits dy: it returns the first input's gradient, and
// grad_a(), grad_b(), grad_c() give each of them.
template <class T, class Device = Cpu>
class ChannelConcat {
 public:
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& a, const Tensor<T, Device>& b) {
    return concat({&a, &b}, 2);
  }
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& a, const Tensor<T, Device>& b,
                                   const Tensor<T, Device>& c) {
    return concat({&a, &b, &c}, 3);
  }

  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(dy.shape() == y_.shape(), "nn::ChannelConcat::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    std::int64_t offset = 0;
    for (int i = 0; i < count_; ++i) {
      grads_[i].resize(nchw(dy.dim(0), channels_[i], dy.dim(2), dy.dim(3)));
      ops::extract_channels(dy, offset, grads_[i]);
      offset += channels_[i];
    }
    return grads_[0];
  }

  const Tensor<T, Device>& grad_a() const { return grads_[0]; }
  const Tensor<T, Device>& grad_b() const { return grads_[1]; }
  const Tensor<T, Device>& grad_c() const {
    VQVAE2_CHECK(count_ == 3, "nn::ChannelConcat::grad_c: the last forward concatenated ", count_, " inputs, not 3.");
    return grads_[2];
  }

  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

 private:
  const Tensor<T, Device>& concat(std::initializer_list<const Tensor<T, Device>*> inputs, int count) {
    const Tensor<T, Device>& first = **inputs.begin();
    std::int64_t total = 0;
    int i = 0;
    for (const Tensor<T, Device>* t : inputs) {
      VQVAE2_CHECK(t->rank() == 4 && first.rank() == 4 && t->dim(0) == first.dim(0) && t->dim(2) == first.dim(2) &&
                       t->dim(3) == first.dim(3),
                   "nn::ChannelConcat: input ", i, " ", t->shape().str(), " does not match input 0 ",
                   first.shape().str(), " in N, H and W.");
      channels_[i++] = t->dim(1);
      total += t->dim(1);
    }
    count_ = count;
    y_.resize(nchw(first.dim(0), total, first.dim(2), first.dim(3)));
    std::int64_t offset = 0;
    i = 0;
    for (const Tensor<T, Device>* t : inputs) {
      ops::copy_channels(*t, y_, offset);
      offset += channels_[i++];
    }
    return y_;
  }

  int count_ = 0;
  std::int64_t channels_[3] = {0, 0, 0};
  Tensor<T, Device> y_;
  Tensor<T, Device> grads_[3];
};

// Nearest-neighbour x2 upsampling, as F.interpolate(scale_factor=2) (mode "nearest").
template <class T, class Device = Cpu>
class Upsample2x {
 public:
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& x) {
    VQVAE2_CHECK(x.rank() == 4, "nn::Upsample2x: expected an NCHW input, got ", x.shape().str(), ".");
    in_ = x.shape();
    y_.resize(nchw(x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)));
    ops::upsample2x_nearest(x, y_);
    return y_;
  }
  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(dy.shape() == y_.shape(), "nn::Upsample2x::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    dx_.resize(in_);
    ops::upsample2x_nearest_backward(dy, dx_);
    return dx_;
  }
  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

 private:
  Shape in_;
  Tensor<T, Device> y_, dx_;
};

namespace detail {
// A shape-preserving layer whose forward and backward are two ops.
template <class T, class Device, class Op>
class ShiftLayer {
 public:
  const Tensor<T, Device>& forward(Context<Device>&, const Tensor<T, Device>& x) {
    VQVAE2_CHECK(x.rank() == 4, Op::name, ": expected an NCHW input, got ", x.shape().str(), ".");
    y_.resize(x.shape());
    Op::forward(x, y_);
    return y_;
  }
  const Tensor<T, Device>& backward(Context<Device>&, const Tensor<T, Device>& dy) {
    VQVAE2_CHECK(dy.shape() == y_.shape(), Op::name, "::backward: gradient ", dy.shape().str(),
                 " does not match the last forward's output ", y_.shape().str(), ".");
    dx_.resize(dy.shape());
    Op::backward(dy, dx_);
    return dx_;
  }
  template <class F>
  void visit(F&&) {}
  void init(Generator&) {}

 private:
  Tensor<T, Device> y_, dx_;
};

struct ShiftDownOp {
  static constexpr const char* name = "nn::ShiftDown";
  template <class X>
  static void forward(const X& x, X& y) {
    ops::shift_down(x, y);
  }
  template <class X>
  static void backward(const X& dy, X& dx) {
    ops::shift_down_backward(dy, dx);
  }
};
struct ShiftRightOp {
  static constexpr const char* name = "nn::ShiftRight";
  template <class X>
  static void forward(const X& x, X& y) {
    ops::shift_right(x, y);
  }
  template <class X>
  static void backward(const X& dy, X& dx) {
    ops::shift_right_backward(dy, dx);
  }
};
}  // namespace detail

// y[:, :, i, :] = x[:, :, i - 1, :], the top row zero (PixelSNAIL shift_down).
template <class T, class Device = Cpu>
using ShiftDown = detail::ShiftLayer<T, Device, detail::ShiftDownOp>;
// y[:, :, :, j] = x[:, :, :, j - 1], the left column zero (PixelSNAIL shift_right).
template <class T, class Device = Cpu>
using ShiftRight = detail::ShiftLayer<T, Device, detail::ShiftRightOp>;

}  // namespace vqvae2::nn
