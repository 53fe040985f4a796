// One finite-difference gradient checker for every layer (double precision).
//
// The scalar checked is L = sum(out * probe) with a fixed random probe, so
// dL/dout = probe. For every target tensor (an input or a parameter) a sample
// of its elements is perturbed by ±eps and the central difference compared
// with the analytic gradient the layer's backward produced.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2::test {

using TensorD = Tensor<double, Cpu>;

struct GradTarget {
  std::string name;
  TensorD value;  // aliases the tensor the forward reads
  TensorD grad;   // aliases the tensor backward fills (after the call)
};

struct GradCheckOptions {
  double eps = 1e-6;
  double rtol = 1e-5;
  double atol = 1e-7;
  std::int64_t max_elements = 64;  // per target; spread evenly over the tensor
};

inline TensorD random_tensor(const Shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  TensorD t(s);
  Generator g(seed);
  g.uniform(t, lo, hi);
  return t;
}

// What one check saw for one target: how many elements it compared and how many of
// them had a numeric gradient above 100 atol (a test can assert a path was live).
struct GradTargetStats {
  std::string name;
  std::int64_t checked = 0, nonzero = 0;
};

// forward(): runs the computation from the current target values and returns the output.
// backward(dy): runs the backward pass; afterwards every target's grad holds dL/dvalue.
// Targets may be bound lazily by make_targets(), called after the first backward so that
// layer-owned input-gradient tensors exist.
inline std::vector<GradTargetStats> check_gradients(const std::function<TensorD()>& forward,
                                                    const std::function<void(const TensorD&)>& backward,
                                                    const std::function<std::vector<GradTarget>()>& make_targets,
                                                    const GradCheckOptions& opt = {}) {
  TensorD out = forward();
  TensorD probe = random_tensor(out.shape(), 977);
  auto loss = [&](const TensorD& o) {
    double s = 0;
    for (std::int64_t i = 0; i < o.numel(); ++i) s += o[i] * probe[i];
    return s;
  };
  backward(probe);
  std::vector<GradTarget> targets = make_targets();
  // Copy the analytic gradients now: later forwards/backwards may overwrite them.
  std::vector<TensorD> analytic;
  for (auto& t : targets) {
    REQUIRE_MESSAGE(t.grad.shape() == t.value.shape(), t.name, ": gradient shape ", t.grad.shape().str(),
                    " differs from value shape ", t.value.shape().str());
    analytic.push_back(t.grad.clone());
  }
  std::vector<GradTargetStats> stats;
  for (std::size_t k = 0; k < targets.size(); ++k) {
    auto& t = targets[k];
    GradTargetStats& st = stats.emplace_back(GradTargetStats{t.name});
    std::int64_t n = t.value.numel();
    std::int64_t step = std::max<std::int64_t>(1, n / opt.max_elements);
    for (std::int64_t i = (n > opt.max_elements ? (k * 7) % step : 0); i < n; i += step) {
      double saved = t.value[i];
      t.value[i] = saved + opt.eps;
      double lp = loss(forward());
      t.value[i] = saved - opt.eps;
      double lm = loss(forward());
      t.value[i] = saved;
      double numeric = (lp - lm) / (2 * opt.eps);
      double a = analytic[k][i];
      double tol = opt.atol + opt.rtol * std::max(std::abs(numeric), std::abs(a));
      INFO(t.name, "[", i, "] analytic ", a, " numeric ", numeric);
      CHECK(std::abs(a - numeric) <= tol);
      ++st.checked;
      st.nonzero += std::abs(numeric) > 100 * opt.atol;
    }
  }
  forward();  // leave the layer in the state of the unperturbed values
  return stats;
}

}  // namespace vqvae2::test
