#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/train/adam.hpp"
#include "vqvae2/train/schedule.hpp"

using namespace vqvae2;
using vqvae2::test::Golden;
using vqvae2::test::max_rel_error;

namespace {

// The smallest module: two parameters and a visit, like the golden script's.
template <class T>
struct TwoParams {
  Parameter<T> w{Shape{3, 4}};
  Parameter<T> b{Shape{5}};
  template <class F>
  void visit(F&& f) {
    f("w", w);
    f("b", b);
  }
};

struct Big {
  Parameter<float> p{Shape{200000}};
  template <class F>
  void visit(F&& f) {
    f("p", p);
  }
};

// Reports one parameter twice: a module bug the optimiser must refuse.
struct Twice {
  Parameter<float> a{Shape{1}};
  template <class F>
  void visit(F&& f) {
    f("a", a);
    f("a", a);
  }
};

template <class T>
void add_into(Tensor<T>& dst, const Tensor<T>& src) {
  for (std::int64_t i = 0; i < dst.numel(); ++i) dst[i] += src[i];
}

// Float results must match torch (run in double) within 1e-4 relative; the
// double run, which differs only in rounding order, within 1e-12.
template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-4 : 1e-12;
}
// Per-element absolute floor (test::check_close): a few rounded operations on O(1)
// parameters and moments, ~1e-7 in float and ~1e-16 in double.
template <class T>
double abs_tolerance() {
  return std::is_same_v<T, float> ? 1e-7 : 1e-15;
}

template <class T>
void run_golden_config(const std::string& cfg, train::AdamOptions opts) {
  Golden g("adam.bin");
  TwoParams<T> m;
  m.w.value.copy_from(g.get_as<T>("w0"));
  m.b.value.copy_from(g.get_as<T>("b0"));
  Tensor<double> lrs = g.get(cfg + ".lr");
  opts.lr = lrs[0];
  train::Adam<T> opt(m, opts);
  CHECK(opt.size() == 2);
  for (int k = 1; k <= 3; ++k) {
    CAPTURE(cfg);
    CAPTURE(k);
    opt.set_lr(lrs[k - 1]);
    opt.zero_grad();
    add_into(m.w.grad, g.get_as<T>("gw" + std::to_string(k)));
    add_into(m.b.grad, g.get_as<T>("gb" + std::to_string(k)));
    Tensor<T> gw_before = m.w.grad.clone();
    opt.step();
    CHECK(opt.step_count() == k);
    // The optimiser only reads grads: clearing them is zero_grad()'s job.
    CHECK(max_rel_error(m.w.grad, gw_before) == 0.0);
    test::check_close(m.w.value, g.get(cfg + ".w.step" + std::to_string(k)), abs_tolerance<T>(), tolerance<T>(),
                      "w.step" + std::to_string(k));
    test::check_close(m.b.value, g.get(cfg + ".b.step" + std::to_string(k)), abs_tolerance<T>(), tolerance<T>(),
                      "b.step" + std::to_string(k));
  }
  std::vector<std::string> names;
  opt.visit_state([&](std::string_view name, Tensor<T>& t) {
    names.emplace_back(name);
    test::check_close(t, g.get(cfg + "." + std::string(name)), abs_tolerance<T>(), tolerance<T>(), std::string(name));
  });
  CHECK(names == std::vector<std::string>{"w.exp_avg", "w.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"});
}

}  // namespace

TEST_CASE_TEMPLATE("Adam matches torch.optim.Adam for three steps, with a learning-rate change", T, float, double) {
  run_golden_config<T>("plain", train::AdamOptions{});
}

TEST_CASE_TEMPLATE("Adam with L2 weight decay, other betas and eps matches torch.optim.Adam", T, float, double) {
  train::AdamOptions o;
  o.beta1 = 0.8;
  o.beta2 = 0.99;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  run_golden_config<T>("l2", o);
}

TEST_CASE_TEMPLATE("Adam with decoupled weight decay matches torch.optim.AdamW", T, float, double) {
  train::AdamOptions o;
  o.weight_decay = 0.1;
  o.decoupled_weight_decay = true;
  run_golden_config<T>("adamw", o);
}

TEST_CASE("Adam: a large tensor takes the threaded path and agrees with a scalar double reference") {
  // 200k elements crosses the OpenMP threshold; the reference is written here
  // straight from the formula, in double.
  Big m;
  Generator gen(3);
  gen.normal(m.p.value, 0.0f, 1.0f);
  const std::int64_t n = m.p.value.numel();
  std::vector<double> p(n), mo(n, 0.0), v(n, 0.0);
  for (std::int64_t i = 0; i < n; ++i) p[i] = m.p.value[i];
  train::Adam<float> opt(m, {.lr = 0.05});
  for (int t = 1; t <= 4; ++t) {
    opt.zero_grad();
    gen.normal(m.p.grad, 0.0f, 1.0f);
    opt.step();
    const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
    for (std::int64_t i = 0; i < n; ++i) {
      double g = m.p.grad[i];
      mo[i] = 0.9 * mo[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      p[i] -= 0.05 / bc1 * mo[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-8);
    }
  }
  double err = 0;
  for (std::int64_t i = 0; i < n; ++i) err = std::max(err, std::abs(p[i] - m.p.value[i]));
  CHECK(err < 1e-5);
}

TEST_CASE("Adam: zero_grad clears grads; moments are allocated once and reused") {
  TwoParams<float> m;
  m.w.grad.fill(1.0f);
  m.b.grad.fill(2.0f);
  train::Adam<float> opt(m);
  opt.step();
  std::vector<const float*> first;
  opt.visit_state([&](std::string_view, Tensor<float>& t) { first.push_back(t.data()); });
  opt.step();
  std::vector<const float*> second;
  opt.visit_state([&](std::string_view, Tensor<float>& t) { second.push_back(t.data()); });
  CHECK(first == second);
  opt.zero_grad();
  for (float g : m.w.grad) REQUIRE(g == 0.0f);
  for (float g : m.b.grad) REQUIRE(g == 0.0f);
  // A zero gradient from zero moments leaves the parameters where they are.
  TwoParams<float> fresh;
  fresh.w.value.fill(0.5f);
  train::Adam<float> idle(fresh);
  idle.step();
  for (float x : fresh.w.value) REQUIRE(x == 0.5f);
}

TEST_CASE("Adam rejects bad options and a parameter that changed shape") {
  TwoParams<float> m;
  CHECK_THROWS_WITH_AS(train::Adam<float>(m, {.lr = -1.0}), doctest::Contains("learning rate"), Error);
  CHECK_THROWS_WITH_AS(train::Adam<float>(m, {.beta1 = 1.0}), doctest::Contains("betas"), Error);
  CHECK_THROWS_WITH_AS(train::Adam<float>(m, {.eps = 0.0}), doctest::Contains("eps"), Error);
  train::Adam<float> opt(m);
  CHECK_THROWS_AS(opt.set_lr(std::nan("")), Error);
  opt.step();
  m.w.reset(Shape{2, 2});
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("parameter 'w'"), Error);
  Twice twice;
  CHECK_THROWS_WITH_AS(train::Adam<float>{twice}, doctest::Contains("twice"), Error);
}

TEST_CASE("ConstantLr and the reference's warm-up + cosine cycle") {
  train::ConstantLr c{3e-4};
  CHECK(c.lr(0) == 3e-4);
  CHECK(c.lr(123456) == 3e-4);

  // 100 steps, 30 of warm-up, from 1/25 up to 1, then down to 1/25/1e4.
  auto s = train::WarmupCosineLr::cycle(1.0, 100, 0.3, 25.0);
  const double pi = 3.14159265358979323846;
  const double start = 0.04, end = 0.04 / 1e4;
  CHECK(s.warmup_steps == 30);
  CHECK(s.lr(0) == doctest::Approx(start + (1.0 - start) / 30.0).epsilon(1e-12));
  CHECK(s.lr(14) == doctest::Approx(start + (1.0 - start) * 15.0 / 30.0).epsilon(1e-12));
  CHECK(s.lr(29) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(s.lr(30) == doctest::Approx(end + (1.0 - end) / 2 * (std::cos(pi / 70.0) + 1)).epsilon(1e-12));
  CHECK(s.lr(64) == doctest::Approx(end + (1.0 - end) / 2).epsilon(1e-12));
  CHECK(s.lr(99) == doctest::Approx(end).epsilon(1e-9));
  CHECK(s.lr(100) == s.lr(0));  // the cycle restarts, like the reference
  for (int k = 1; k < 30; ++k) REQUIRE(s.lr(k) > s.lr(k - 1));
  for (int k = 30; k < 100; ++k) REQUIRE(s.lr(k) < s.lr(k - 1));

  // A warm-up shorter than one step is skipped: the decay starts at once.
  auto nw = train::WarmupCosineLr::cycle(2.0, 10, 0.05);
  CHECK(nw.warmup_steps == 0);
  CHECK(nw.lr(0) == doctest::Approx(nw.lr_end + (2.0 - nw.lr_end) / 2 * (std::cos(pi / 10) + 1)).epsilon(1e-12));

  train::LrSchedule chosen = s;
  CHECK(train::lr_at(chosen, 64) == s.lr(64));
  chosen = c;
  CHECK(train::lr_at(chosen, 64) == 3e-4);

  CHECK_THROWS_WITH_AS(train::WarmupCosineLr::cycle(1.0, 10, 1.0), doctest::Contains("warmup_proportion"), Error);
  CHECK_THROWS_WITH_AS(train::WarmupCosineLr::cycle(1.0, 0), doctest::Contains("total_steps"), Error);
  CHECK_THROWS_AS(s.lr(-1), Error);
}
