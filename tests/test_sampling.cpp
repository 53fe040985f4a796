// Samplers: the categorical draw (support, temperature, top-k, frequencies), the naive
// sampler's causality-based contract, and the cached incremental sampler held to the
// naive one: the same logits at every position and the same codes, code for code.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/sample/cached_sampler.hpp"
#include "vqvae2/sample/categorical.hpp"
#include "vqvae2/sample/naive_sampler.hpp"

using namespace vqvae2;
using namespace vqvae2::sample;

namespace {

template <class Config>
using Prior = models::PixelSNAIL<float, Cpu, Config>;

template <class Config>
void init_prior(Prior<Config>& m, std::uint64_t seed) {
  Generator g(seed);
  m.init(g);
}

Tensor<std::int32_t, Cpu> random_codes(std::int64_t B, std::int64_t H, std::int64_t W, int n_class,
                                       std::uint64_t seed) {
  Tensor<std::int32_t, Cpu> t(Shape{B, H, W});
  Generator g(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<std::int32_t>(g.below(n_class));
  return t;
}

}  // namespace

TEST_CASE("The cached sampler's product y = w x + b equals a double-precision one at every batch size") {
  using namespace vqvae2::sample::cached_detail;
  Generator g(7);
  // 4-row blocks with a remainder (13 rows), batches around the 8-sample vector and the 32-sample block.
  for (const Eigen::Index B : {1, 2, 7, 8, 9, 31, 32, 33, 41}) {
    const Eigen::Index rows = 13, K = 37;
    RowMat w(rows, K);
    Vec bias(rows);
    Mat x(K, B), y(rows, B);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = g.uniform01() - 0.5f;
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = g.uniform01() - 0.5f;
    for (Eigen::Index i = 0; i < rows; ++i) bias[i] = g.uniform01() - 0.5f;
    std::vector<float> xt(static_cast<std::size_t>(K * padded_batch(B)), 123.0f);  // stale contents
    y.setConstant(99.0f);
    affine(w, bias, x, y, xt.data());
    double worst = 0;
    for (Eigen::Index o = 0; o < rows; ++o)
      for (Eigen::Index b = 0; b < B; ++b) {
        double ref = bias[o];
        for (Eigen::Index k = 0; k < K; ++k) ref += static_cast<double>(w(o, k)) * x(k, b);
        worst = std::max(worst, std::abs(ref - y(o, b)));
      }
    INFO("batch " << B);
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("draw_code: inverse CDF over softmax(logits / T), restricted to the top k") {
  const float logits[5] = {0.0f, 2.0f, -1.0f, 2.0f, 1.0f};
  DrawScratch scratch;
  SampleOptions opt;
  // Frequencies over a fine grid of u follow softmax: u in (0, 1] steps of 1/N.
  auto frequencies = [&](const SampleOptions& o) {
    std::vector<double> f(5, 0.0);
    const int N = 200000;
    for (int i = 1; i <= N; ++i)
      f[static_cast<std::size_t>(draw_code(logits, 1, 5, o, i / double(N), scratch))] += 1.0 / N;
    return f;
  };
  auto softmax = [&](double t, int k) {
    std::vector<double> p(5);
    double sum = 0;
    for (int i = 0; i < 5; ++i) {
      p[static_cast<std::size_t>(i)] = std::exp(logits[i] / t);
      sum += p[static_cast<std::size_t>(i)];
    }
    if (k == 2) {  // the two largest are codes 1 and 3 (equal logits)
      sum = p[1] + p[3];
      for (int i : {0, 2, 4}) p[static_cast<std::size_t>(i)] = 0;
    }
    if (k == 1) {  // a tie at the k-th value keeps the lower code
      sum = p[1];
      for (int i : {0, 2, 3, 4}) p[static_cast<std::size_t>(i)] = 0;
    }
    for (auto& x : p) x /= sum;
    return p;
  };
  for (double t : {1.0, 0.5, 2.0})
    for (int k : {0, 2, 1}) {
      opt.temperature = t;
      opt.top_k = k;
      auto f = frequencies(opt);
      auto p = softmax(t, k);
      for (int i = 0; i < 5; ++i)
        CHECK(f[static_cast<std::size_t>(i)] == doctest::Approx(p[static_cast<std::size_t>(i)]).epsilon(1e-4));
    }
  // u = 1 (the largest value) picks the last class in the support, never one outside it.
  opt.temperature = 1.0;
  opt.top_k = 2;
  CHECK(draw_code(logits, 1, 5, opt, 1.0, scratch) == 3);
  // A stride reads a column of an NCHW map.
  const float strided[10] = {5.0f, 0.0f, -50.0f, 0.0f, -50.0f, 0.0f, -50.0f, 0.0f, -50.0f, 0.0f};
  opt.top_k = 0;
  CHECK(draw_code(strided, 2, 5, opt, 0.5, scratch) == 0);
}

TEST_CASE("SampleOptions: temperature and top-k are validated") {
  SampleOptions o;
  o.temperature = 0;
  CHECK_THROWS_WITH(o.validate(512), doctest::Contains("temperature"));
  o.temperature = -1;
  CHECK_THROWS(o.validate(512));
  o.temperature = NAN;
  CHECK_THROWS(o.validate(512));
  o.temperature = 1;
  o.top_k = 513;
  CHECK_THROWS_WITH(o.validate(512), doctest::Contains("top-k"));
  o.top_k = -1;
  CHECK_THROWS(o.validate(512));
  o.top_k = 512;
  CHECK_NOTHROW(o.validate(512));
}

TEST_CASE("sampling_uniform depends on (seed, sample, position) only, and is in (0, 1]") {
  const double a = sampling_uniform(7, 3, 10, 64);
  CHECK(a == sampling_uniform(7, 3, 10, 64));
  CHECK(a != sampling_uniform(8, 3, 10, 64));
  CHECK(a != sampling_uniform(7, 4, 10, 64));
  CHECK(a != sampling_uniform(7, 3, 11, 64));
  double lo = 1, hi = 0, mean = 0;
  for (int i = 0; i < 4096; ++i) {
    const double u = sampling_uniform(1, i / 64, i % 64, 64);
    lo = std::min(lo, u), hi = std::max(hi, u), mean += u / 4096;
  }
  CHECK(lo > 0);
  CHECK(hi <= 1);
  CHECK(mean == doctest::Approx(0.5).epsilon(0.03));
}

template <class Config>
void check_cached_logits_match_forward(const Tensor<std::int32_t, Cpu>* condition) {
  Prior<Config> m;
  init_prior(m, 11);
  Context<Cpu> ctx(2);
  ctx.training = false;
  const std::int64_t B = 2, P = Config::height * Config::width;
  auto codes = random_codes(B, Config::height, Config::width, Config::n_class, 5);
  const Tensor<float, Cpu> full = m.forward(ctx, codes, condition);
  CachedSampler<Prior<Config>> cached(m);
  cached.begin(ctx, B, condition);
  double worst = 0, scale = 0;
  for (std::int64_t p = 0; p < P; ++p) {
    cached.step(codes, static_cast<int>(p));
    for (std::int64_t b = 0; b < B; ++b)
      for (int k = 0; k < Config::n_class; ++k) {
        const double want = full[(b * Config::n_class + k) * P + p], got = cached.logits()(k, b);
        worst = std::max(worst, std::abs(got - want) / (1e-3 + std::abs(want)));
        scale = std::max(scale, std::abs(want));
      }
  }
  INFO("largest logit " << scale);
  // float arithmetic in another order (oneDNN vs per-tap GEMV): relative 1e-4.
  CHECK(worst < 1e-4);
  CHECK(scale > 0.01);  // the logits are not trivially zero
}

TEST_CASE("CachedSampler: the logits at every position equal the full forward's (top, with attention)") {
  check_cached_logits_match_forward<models::TopTiny>(nullptr);
}

TEST_CASE("CachedSampler: the logits at every position equal the full forward's (bottom, conditioned)") {
  auto top =
      random_codes(2, models::BottomTiny::height / 2, models::BottomTiny::width / 2, models::BottomTiny::n_class, 9);
  check_cached_logits_match_forward<models::BottomTiny>(&top);
}

template <class Config>
void check_cached_equals_naive(const Tensor<std::int32_t, Cpu>* condition, std::int64_t start) {
  Prior<Config> m;
  init_prior(m, 23);
  Context<Cpu> ctx(2);
  const std::int64_t B = condition ? condition->dim(0) : 3, P = Config::height * Config::width;
  int compared = 0, distinct = 0;
  const std::pair<double, int> settings[] = {{1.0, 0}, {0.7, 4}, {1.5, 0}};
  for (std::uint64_t seed : {1u, 2u, 3u})
    for (auto [t, k] : settings) {
      SampleOptions opt;
      opt.seed = seed, opt.temperature = t, opt.top_k = k;
      auto prefix = random_codes(B, Config::height, Config::width, Config::n_class, 100 + seed);
      Tensor<std::int32_t, Cpu> naive = prefix.clone(), fast = prefix.clone();
      SampleRequest rn{&naive, condition, start, 0}, rf{&fast, condition, start, 0};
      sample_naive(ctx, m, rn, opt);
      CachedSampler<Prior<Config>> cached(m);
      cached.sample(ctx, rf, opt);
      bool same = true;
      for (std::int64_t i = 0; i < naive.numel(); ++i) same = same && naive[i] == fast[i];
      CHECK(same);
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t p = 0; p < start; ++p) CHECK(fast[b * P + p] == prefix[b * P + p]);
      ++compared;
      // The draws are not degenerate: several codes appear.
      std::vector<int> seen(Config::n_class, 0);
      for (std::int64_t i = 0; i < fast.numel(); ++i) seen[static_cast<std::size_t>(fast[i])] = 1;
      int n = 0;
      for (int s : seen) n += s;
      distinct = std::max(distinct, n);
    }
  CHECK(compared == 9);
  CHECK(distinct >= 4);
}

TEST_CASE("CachedSampler draws the same codes as the naive sampler (top, with attention)") {
  check_cached_equals_naive<models::TopTiny>(nullptr, 0);
}

TEST_CASE("CachedSampler draws the same codes as the naive sampler (bottom, conditioned)") {
  auto top =
      random_codes(2, models::BottomTiny::height / 2, models::BottomTiny::width / 2, models::BottomTiny::n_class, 4);
  check_cached_equals_naive<models::BottomTiny>(&top, 0);
}

TEST_CASE("Completion: a given prefix of rows is kept and the rest sampled the same way by both samplers") {
  check_cached_equals_naive<models::TopTiny>(nullptr, 3 * models::TopTiny::width);
}

TEST_CASE("A sample's codes do not depend on the batch it is drawn in") {
  using Config = models::TopTiny;
  Prior<Config> m;
  init_prior(m, 31);
  Context<Cpu> ctx(2);
  SampleOptions opt;
  opt.seed = 77;
  Tensor<std::int32_t, Cpu> both(Shape{2, Config::height, Config::width});
  CachedSampler<Prior<Config>> cached(m);
  cached.sample(ctx, SampleRequest{&both, nullptr, 0, 0}, opt);
  const std::int64_t P = Config::height * Config::width;
  for (std::int64_t b = 0; b < 2; ++b) {
    Tensor<std::int32_t, Cpu> one(Shape{1, Config::height, Config::width});
    cached.sample(ctx, SampleRequest{&one, nullptr, 0, b}, opt);
    bool same = true;
    for (std::int64_t p = 0; p < P; ++p) same = same && one[p] == both[b * P + p];
    CHECK(same);
  }
  // Different samples differ.
  bool differ = false;
  for (std::int64_t p = 0; p < P; ++p) differ = differ || both[p] != both[P + p];
  CHECK(differ);
}

TEST_CASE("Sampling rejects bad requests with one sentence") {
  using Config = models::BottomTiny;
  Prior<Config> m;
  init_prior(m, 1);
  Context<Cpu> ctx(1);
  Tensor<std::int32_t, Cpu> codes(Shape{1, Config::height, Config::width});
  SampleOptions opt;
  CHECK_THROWS_WITH(sample_naive(ctx, m, SampleRequest{&codes, nullptr, 0, 0}, opt),
                    doctest::Contains("conditioned on top codes"));
  auto top = random_codes(1, Config::height / 2, Config::width / 2, Config::n_class, 4);
  CHECK_THROWS_WITH(sample_naive(ctx, m, SampleRequest{&codes, &top, Config::height * Config::width + 1, 0}, opt),
                    doctest::Contains("outside the map"));
  opt.temperature = 0;
  CachedSampler<Prior<Config>> cached(m);
  CHECK_THROWS_WITH(cached.sample(ctx, SampleRequest{&codes, &top, 0, 0}, opt), doctest::Contains("temperature"));
}
