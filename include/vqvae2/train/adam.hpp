// Adam (Kingma & Ba 2015) with the bias correction of torch.optim.Adam.
//
// Gradient accumulation convention (the one rule for every training loop):
//   every backward ADDS (+=) into each parameter's grad; the optimiser only
//   reads grads, and zero_grad() is the single place they are cleared. So
//     opt.zero_grad(); for k micro-batches { forward; backward(dL/dy / k); } opt.step();
//   averages over k micro-batches: scale the loss gradient by 1/k, nothing else.
//
// The optimiser binds to a module's parameters once, through net.visit(f)
// (f(std::string_view name, Parameter<T, Device>&)), and keeps pointers to
// them: the module must outlive the optimiser and stay at its address. The
// moment tensors are allocated on the first step (or on the first
// visit_state(), e.g. when a checkpoint is restored) and never again.
//
// Update, per element, in torch's order (step t counted from 1):
//   g  = grad (+ weight_decay * p  for L2 decay, torch.optim.Adam)
//   p *= 1 - lr * weight_decay     (decoupled decay instead, torch.optim.AdamW)
//   m  = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"

namespace vqvae2::train {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;            // off by default
  bool decoupled_weight_decay = false;  // false: L2 as torch.optim.Adam; true: torch.optim.AdamW
};

// The element-wise update, written once for every device. Scalars are
// prepared in double by the optimiser and rounded to T once per step.
template <class T>
struct AdamUpdate {
  T* param;
  const T* grad;
  T* exp_avg;
  T* exp_avg_sq;
  T beta1, one_minus_beta1, beta2, one_minus_beta2;
  T inv_bias_correction2_sqrt;  // 1 / sqrt(1 - beta2^t)
  T eps;
  T neg_step_size;  // -lr / (1 - beta1^t)
  T l2;             // weight_decay for L2 decay, else 0 (unused)
  T decay;          // 1 - lr * weight_decay for decoupled decay, else 1 (unused)

  // Mode: 0 plain, 1 L2 decay, 2 decoupled decay; a template argument so the
  // vectorised loop carries no branch.
  template <int Mode>
  VQVAE2_HD void apply(std::int64_t i) const {
    T p = param[i];
    T g = grad[i];
    if constexpr (Mode == 1) g = g + l2 * p;
    if constexpr (Mode == 2) p = p * decay;
    T m = exp_avg[i] * beta1 + one_minus_beta1 * g;
    T v = exp_avg_sq[i] * beta2 + one_minus_beta2 * (g * g);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    T denom = std::sqrt(v) * inv_bias_correction2_sqrt + eps;
    param[i] = p + neg_step_size * (m / denom);
  }
};

// Runs AdamUpdate over n elements on a device. The CUDA backend provides
// AdamKernel<Cuda> (a grid-stride kernel calling AdamUpdate::apply).
template <class Device>
struct AdamKernel;

template <>
struct AdamKernel<Cpu> {
  template <int Mode, class T>
  static void run_mode(const AdamUpdate<T>& u, std::int64_t n) {
    // Threads only pay off on large tensors; biases run on one core.
#if defined(_OPENMP)
#pragma omp parallel for simd schedule(static) if (n >= 65536)
#endif
    for (std::int64_t i = 0; i < n; ++i) u.template apply<Mode>(i);
  }
  template <class T>
  static void run(const AdamUpdate<T>& u, std::int64_t n, int mode) {
    if (mode == 0) run_mode<0>(u, n);
    if (mode == 1) run_mode<1>(u, n);
    if (mode == 2) run_mode<2>(u, n);
  }
};

template <class T, class Device = Cpu>
class Adam {
 public:
  using Param = Parameter<T, Device>;
  using TensorT = Tensor<T, Device>;

  template <class Module>
  explicit Adam(Module& net, AdamOptions options = {}) : options_(options) {
    check_options("Adam", options_);
    net.visit([this](std::string_view name, Param& p) {
      for (const auto& existing : names_)
        VQVAE2_CHECK(existing != name, "Adam: the module reports parameter '", name, "' twice.");
      names_.emplace_back(name);
      params_.push_back(&p);
    });
  }

  // One update of every parameter from its accumulated grad.
  void step() {
    ensure_state();
    ++step_count_;
    const double t = static_cast<double>(step_count_);
    const double bc1 = 1.0 - std::pow(options_.beta1, t);
    const double bc2 = 1.0 - std::pow(options_.beta2, t);
    int mode = options_.weight_decay == 0.0 ? 0 : (options_.decoupled_weight_decay ? 2 : 1);
    AdamUpdate<T> u{};
    u.beta1 = static_cast<T>(options_.beta1);
    u.one_minus_beta1 = static_cast<T>(1.0 - options_.beta1);
    u.beta2 = static_cast<T>(options_.beta2);
    u.one_minus_beta2 = static_cast<T>(1.0 - options_.beta2);
    u.inv_bias_correction2_sqrt = static_cast<T>(1.0 / std::sqrt(bc2));
    u.eps = static_cast<T>(options_.eps);
    u.neg_step_size = static_cast<T>(-options_.lr / bc1);
    u.l2 = static_cast<T>(options_.weight_decay);
    u.decay = static_cast<T>(1.0 - options_.lr * options_.weight_decay);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      Param& p = *params_[k];
      check_shapes(k);
      u.param = p.value.data();
      u.grad = p.grad.data();
      u.exp_avg = exp_avg_[k].data();
      u.exp_avg_sq = exp_avg_sq_[k].data();
      AdamKernel<Device>::run(u, p.value.numel(), mode);
    }
  }

  // Clears every bound parameter's grad: the one place grads are zeroed.
  void zero_grad() {
    for (Param* p : params_) p->grad.zero();
  }

  void set_lr(double lr) {
    VQVAE2_CHECK(std::isfinite(lr) && lr >= 0.0, "Adam::set_lr: the learning rate must be finite and >= 0, got ", lr,
                 ".");
    options_.lr = lr;
  }
  double lr() const { return options_.lr; }
  const AdamOptions& options() const { return options_; }

  // Number of completed steps (torch's state['step']); bias correction uses it.
  std::int64_t step_count() const { return step_count_; }
  void set_step_count(std::int64_t steps) {
    VQVAE2_CHECK(steps >= 0, "Adam::set_step_count: negative step count ", steps, ".");
    step_count_ = steps;
  }

  std::size_t size() const { return params_.size(); }
  const std::vector<std::string>& parameter_names() const { return names_; }

  // Calls f(name, Tensor&) for "<param>.exp_avg" and "<param>.exp_avg_sq" of
  // every parameter, allocating the moments (zero) if no step ran yet; with
  // step_count() this is the whole optimiser state a checkpoint needs.
  template <class F>
  void visit_state(F&& f) {
    ensure_state();
    std::string name;
    for (std::size_t k = 0; k < params_.size(); ++k) {
      name.assign(names_[k]).append(".exp_avg");
      f(std::string_view(name), exp_avg_[k]);
      name.assign(names_[k]).append(".exp_avg_sq");
      f(std::string_view(name), exp_avg_sq_[k]);
    }
  }

 private:
  static void check_options(const char* where, const AdamOptions& o) {
    VQVAE2_CHECK(std::isfinite(o.lr) && o.lr >= 0.0, where, ": the learning rate must be finite and >= 0, got ", o.lr,
                 ".");
    VQVAE2_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0 && o.beta2 >= 0.0 && o.beta2 < 1.0, where,
                 ": betas must lie in [0, 1), got (", o.beta1, ", ", o.beta2, ").");
    VQVAE2_CHECK(o.eps > 0.0, where, ": eps must be positive, got ", o.eps, ".");
    VQVAE2_CHECK(o.weight_decay >= 0.0, where, ": weight_decay must be >= 0, got ", o.weight_decay, ".");
  }

  void ensure_state() {
    if (exp_avg_.size() == params_.size()) return;
    exp_avg_.clear();
    exp_avg_sq_.clear();
    for (Param* p : params_) {
      exp_avg_.push_back(TensorT::zeros(p->shape()));
      exp_avg_sq_.push_back(TensorT::zeros(p->shape()));
    }
  }

  void check_shapes(std::size_t k) const {
    const Param& p = *params_[k];
    VQVAE2_CHECK(p.value.shape() == exp_avg_[k].shape() && p.grad.shape() == p.value.shape(), "Adam::step: parameter '",
                 names_[k], "' has value ", p.value.shape().str(), " and grad ", p.grad.shape().str(),
                 " but the optimiser state is ", exp_avg_[k].shape().str(), ".");
  }

  AdamOptions options_;
  std::vector<std::string> names_;
  std::vector<Param*> params_;
  std::vector<TensorT> exp_avg_, exp_avg_sq_;
  std::int64_t step_count_ = 0;
};

}  // namespace vqvae2::train
