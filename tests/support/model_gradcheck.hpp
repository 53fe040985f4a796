// Whole-model gradient checks: a model's own backward against finite differences of
// its scalar loss, over every parameter (or those under given name prefixes) and any
// extra targets such as the input.
//
// Quantised models are piecewise constant upstream of their quantisers, so a finite
// difference sees only the commitment terms there. Put the quantisers in pass-through
// mode (VectorQuantizer::set_pass_through): forward then outputs z itself, the
// straight-through backward becomes the exact gradient, and one check covers every
// path of the model: each gradient merge (both sides non-zero) and the straight-through
// route into the encoders. Run in evaluation mode so the code books stay fixed.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "support/gradcheck.hpp"
#include "vqvae2/nn/module.hpp"

namespace vqvae2::test {

// The parameters of m (visit()) whose dotted names start with one of `prefixes`, or all
// of them when `prefixes` is empty. Every prefix must match at least one parameter: a
// rename must fail the test, not make its check vacuous.
template <class Model>
std::vector<GradTarget> parameter_targets(Model& m, const std::vector<std::string>& prefixes = {}) {
  std::vector<GradTarget> out;
  std::vector<int> matched(prefixes.size(), 0);
  m.visit([&](std::string_view name, Parameter<double>& p) {
    bool take = prefixes.empty();
    for (std::size_t k = 0; k < prefixes.size(); ++k)
      if (name.rfind(prefixes[k], 0) == 0) {
        take = true;
        ++matched[k];
      }
    if (take) out.push_back({std::string(name), p.value, p.grad});
  });
  for (std::size_t k = 0; k < prefixes.size(); ++k)
    REQUIRE_MESSAGE(matched[k] > 0, "no parameter name starts with '", prefixes[k], "'");
  REQUIRE(!out.empty());
  return out;
}

struct ModelGradCheck {
  // Runs the forward from the current values and returns the scalar loss.
  std::function<double()> loss;
  // Runs the model's backward of `scale` * loss; parameter gradients start from zero
  // (cleared by check_model_gradients) and extra targets' gradients are bound after it.
  std::function<void(double scale)> backward;
  // Name prefixes of the parameters to check (empty: all of them).
  std::vector<std::string> prefixes;
  // Further targets (e.g. the input and the gradient backward returned for it).
  std::function<std::vector<GradTarget>()> extra_targets;
  // Fraction of each target's checked elements whose numeric gradient must be non-zero
  // (> 100 atol), so that no checked path is silently dead. 0 disables.
  double min_live_fraction = 0.0;
};

// One finite-difference check of the whole model. Returns check_gradients' statistics.
template <class Model>
std::vector<GradTargetStats> check_model_gradients(Model& m, const ModelGradCheck& c,
                                                   const GradCheckOptions& opt = {}) {
  auto forward = [&]() {
    TensorD out(Shape{1});
    out[0] = c.loss();
    return out;
  };
  auto backward = [&](const TensorD& probe) {
    zero_grad(m);
    c.backward(probe[0]);
  };
  auto targets = [&]() {
    std::vector<GradTarget> t = parameter_targets(m, c.prefixes);
    if (c.extra_targets)
      for (auto& e : c.extra_targets()) t.push_back(e);
    return t;
  };
  std::vector<GradTargetStats> stats = check_gradients(forward, backward, targets, opt);
  if (c.min_live_fraction > 0)
    for (const auto& s : stats) {
      INFO(s.name, ": ", s.nonzero, " of ", s.checked, " checked elements have a non-zero gradient");
      CHECK(static_cast<double>(s.nonzero) >= c.min_live_fraction * static_cast<double>(s.checked));
    }
  return stats;
}

}  // namespace vqvae2::test
