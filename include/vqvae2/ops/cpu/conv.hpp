// CPU convolution entry points used by the layers. Every scalar type works
// through the reference loops; float takes the fast path (oneDNN) once it is in.
#pragma once

#include "vqvae2/core/context.hpp"
#include "vqvae2/ops/conv.hpp"
#include "vqvae2/ops/reference/conv.hpp"

namespace vqvae2::ops {

template <class T>
void conv2d_forward(Context<Cpu>&, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& w, const Tensor<T, Cpu>* b,
                    Tensor<T, Cpu>& y, const ConvGeometry& g) {
  reference::conv2d_forward(x, w, b, y, g);
}

// dx must already have the input's shape.
template <class T>
void conv2d_backward_data(Context<Cpu>&, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& w, Tensor<T, Cpu>& dx,
                          const ConvGeometry& g) {
  reference::conv2d_backward_data(dy, w, dx, g);
}

// dw and db (optional) are overwritten, or added to when accumulate is true.
template <class T>
void conv2d_backward_weights(Context<Cpu>&, const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, Tensor<T, Cpu>& dw,
                             Tensor<T, Cpu>* db, const ConvGeometry& g, bool accumulate) {
  reference::conv2d_backward_weights(x, dy, dw, db, g, accumulate);
}

}  // namespace vqvae2::ops
