// The contract every layer obeys (see docs/layers.md for the full text):
//
//   const Tensor& forward(Context&, const Tensor& x, ...)
//       computes the output into a tensor the layer owns (valid until the next
//       forward) and keeps what backward needs (aliases of its inputs, masks).
//   const Tensor& backward(Context&, const Tensor& dy)
//       returns dL/dx in a tensor the layer owns, written (=), and ADDS dL/dθ
//       into every parameter's grad (+=). Layers with several inputs expose
//       the other input gradients through named accessors.
//   template <class F> void visit(F&& f)
//       calls f(name, Parameter&) for each parameter, names dotted by module.
//   void init(Generator&)
//       PyTorch's default initialisation for the layer.
//
// Parameter gradients accumulate, so gradient accumulation over micro-batches
// is free and the optimiser's zero_grad() is the one place they are cleared.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2 {

template <class T, class Device = Cpu>
struct Parameter {
  Tensor<T, Device> value;
  Tensor<T, Device> grad;

  Parameter() = default;
  explicit Parameter(const Shape& shape) : value(Tensor<T, Device>::zeros(shape)), grad(Tensor<T, Device>::zeros(shape)) {}
  void reset(const Shape& shape) {
    value = Tensor<T, Device>::zeros(shape);
    grad = Tensor<T, Device>::zeros(shape);
  }
  const Shape& shape() const { return value.shape(); }
};

// Wraps a visitor so that child parameters are reported as "prefix.name".
template <class F>
struct PrefixedVisitor {
  F& f;
  std::string_view prefix;
  template <class P>
  void operator()(std::string_view name, P& p) const {
    std::string full;
    full.reserve(prefix.size() + 1 + name.size());
    full.append(prefix).append(".").append(name);
    f(std::string_view(full), p);
  }
};

template <class Module, class F>
void visit_child(Module& child, std::string_view prefix, F& f) {
  child.visit(PrefixedVisitor<F>{f, prefix});
}

// Sets every parameter gradient of a module to zero.
template <class Module>
void zero_grad(Module& m) {
  m.visit([](std::string_view, auto& p) { p.grad.zero(); });
}

template <class Module>
std::int64_t parameter_count(Module& m) {
  std::int64_t n = 0;
  m.visit([&](std::string_view, auto& p) { n += p.value.numel(); });
  return n;
}

}  // namespace vqvae2
