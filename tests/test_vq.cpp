#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/gradcheck.hpp"
#include "vqvae2/vq/vector_quantizer.hpp"

using namespace vqvae2;

namespace {

// Sets the code book (and embed_avg, as init does) from a [D, K] row-major list.
template <class VQ>
void set_code_book(VQ& vq, const std::vector<double>& e) {
  REQUIRE(static_cast<std::int64_t>(e.size()) == vq.embed().numel());
  for (std::size_t i = 0; i < e.size(); ++i) {
    vq.embed()[static_cast<std::int64_t>(i)] = static_cast<typename VQ::Acc>(e[i]);
    vq.embed_avg()[static_cast<std::int64_t>(i)] = static_cast<typename VQ::Acc>(e[i]);
  }
  vq.cluster_size().zero();
}

// NCHW tensor [N, D, 1, R/N] holding rows given as a list of D-vectors (row r -> n = r / (R/N)).
template <class T>
Tensor<T> rows_to_nchw(const std::vector<std::vector<double>>& rows, std::int64_t n_images) {
  const std::int64_t R = static_cast<std::int64_t>(rows.size()), D = static_cast<std::int64_t>(rows[0].size());
  const std::int64_t W = R / n_images;
  Tensor<T> z(nchw(n_images, D, 1, W));
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t d = 0; d < D; ++d) z.at(r / W, d, 0, r % W) = static_cast<T>(rows[r][d]);
  return z;
}

// Row r of an NCHW tensor (rows ordered n, h, w).
template <class T>
std::vector<double> row_of(const Tensor<T>& z, std::int64_t r) {
  const std::int64_t HW = z.dim(2) * z.dim(3);
  std::vector<double> v(z.dim(1));
  for (std::int64_t d = 0; d < z.dim(1); ++d) v[d] = z[(r / HW) * z.dim(1) * HW + d * HW + r % HW];
  return v;
}

template <class VQ>
std::vector<double> code_of(VQ& vq, int k) {
  std::vector<double> v(VQ::embed_dim);
  for (int d = 0; d < VQ::embed_dim; ++d) v[d] = vq.embed()[std::int64_t{d} * VQ::num_codes + k];
  return v;
}

// Hand-made 2-D code book: e0 = (0,0), e1 = (1,0), e2 = (0,1), e3 = (2,2), stored [D, K].
const std::vector<double> kSquare = {0, 1, 0, 2, /* d = 1 */ 0, 0, 1, 2};

}  // namespace

TEST_CASE_TEMPLATE("nearest code on hand-made data, ties going to the lowest index", T, float, double) {
  vq::VectorQuantizer<T, Cpu, 2, 4> vq;
  set_code_book(vq, kSquare);
  // Every value is dyadic, so all distances are exact and the ties are exact ties.
  std::vector<std::vector<double>> rows = {
      {0.875, 0.125},  // 1
      {0.5, 0.0},      // tie 0/1 -> 0
      {0.5, 0.5},      // tie 0/1/2 -> 0
      {1.5, 1.5},      // 3
      {1.5, 1.0},      // tie 1/3 -> 1
      {1.0, 1.5},      // tie 2/3 -> 2
      {0.25, 0.75},    // 2
      {3.0, 2.5},      // 3
  };
  const std::vector<int> expected = {1, 0, 0, 3, 1, 2, 2, 3};
  Tensor<T> z = rows_to_nchw<T>(rows, 2);
  Context<Cpu> ctx;
  ctx.training = false;
  const Tensor<T>& q = vq.forward(ctx, z);
  REQUIRE(vq.indices().shape() == Shape{2, 1, 4});
  for (std::size_t r = 0; r < rows.size(); ++r) {
    INFO("row ", r);
    CHECK(vq.indices()[static_cast<std::int64_t>(r)] == expected[r]);
    std::vector<double> qr = row_of(q, static_cast<std::int64_t>(r));
    CHECK(qr[0] == kSquare[expected[r]]);
    CHECK(qr[1] == kSquare[4 + expected[r]]);
  }
  // Commitment loss: mean over all elements of (q - z)^2, computed here from the rows.
  double sq = 0;
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (int d = 0; d < 2; ++d) sq += std::pow(rows[r][d] - kSquare[d * 4 + expected[r]], 2);
  CHECK(vq.commitment_loss() == doctest::Approx(sq / 16).epsilon(1e-12));
}

TEST_CASE_TEMPLATE("ties go to the lowest index inside and across SIMD lanes and in the tail", T, float, double) {
  // 20 codes on a line, c_k = (4k, 0), with duplicates: c13 = c5 (same double lane, other
  // float lane), c18 = c2 (tail for float), c11 = c10 (neighbouring lanes).
  constexpr int K = 20;
  std::vector<double> book(2 * K, 0.0);
  for (int k = 0; k < K; ++k) book[k] = 4.0 * k;
  book[13] = book[5];
  book[18] = book[2];
  book[11] = book[10];
  vq::VectorQuantizer<T, Cpu, 2, K> vq;
  set_code_book(vq, book);
  std::vector<std::vector<double>> rows;
  std::vector<int> expected;
  auto add = [&](double x, int k) {
    rows.push_back({x, 0.0});
    expected.push_back(k);
  };
  add(book[5], 5);    // exact duplicate 5 / 13
  add(book[2], 2);    // exact duplicate 2 / 18
  add(book[10], 10);  // exact duplicate 10 / 11
  add(6.0, 1);        // midway 1 / 2 (and 18)
  add(62.0, 15);      // midway 15 / 16: lane 15 against the next block or the tail
  add(70.0, 17);      // c17 = 68 is nearer than c19 = 76 (c18 is a copy of c2)
  add(74.0, 19);      // c19 = 76 nearer than 68
  add(78.0, 19);      // beyond the last code
  add(18.0, 4);       // midway 4 / 5 (and 13)
  Tensor<T> z = rows_to_nchw<T>(rows, 1);
  Context<Cpu> ctx;
  ctx.training = false;
  vq.forward(ctx, z);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    INFO("row ", r, " at ", rows[r][0]);
    CHECK(vq.indices()[static_cast<std::int64_t>(r)] == expected[r]);
  }
}

TEST_CASE("nearest code agrees with a brute-force search across chunks and threads") {
  // 2 images of 24x24 = 576 rows each: several 256-row chunks, a partial one, two threads.
  constexpr int D = 64, K = 512;
  vq::VectorQuantizer<double, Cpu, D, K> vqd;
  vq::VectorQuantizer<float, Cpu, D, K> vqf;
  Generator g(11);
  vqd.init(g);
  for (std::int64_t i = 0; i < vqd.embed().numel(); ++i) {
    vqf.embed()[i] = static_cast<float>(vqd.embed()[i]);
    vqd.embed()[i] = vqf.embed()[i];  // both hold the same (float-representable) code book
  }
  Tensor<double> zd(nchw(2, D, 24, 24));
  g.normal(zd, 0.0, 1.0);
  Tensor<float> zf(zd.shape());
  for (std::int64_t i = 0; i < zd.numel(); ++i) {
    zf[i] = static_cast<float>(zd[i]);
    zd[i] = zf[i];
  }
  Context<Cpu> ctx(2);
  ctx.training = false;
  vqd.forward(ctx, zd);
  vqf.forward(ctx, zf);
  const std::int64_t R = 2 * 24 * 24;
  int float_mismatch = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    std::vector<double> x = row_of(zd, r);
    double best = std::numeric_limits<double>::infinity();
    int bk = -1;
    std::vector<double> dist(K);
    for (int k = 0; k < K; ++k) {
      double s = 0;
      for (int d = 0; d < D; ++d) s += std::pow(x[d] - vqd.embed()[std::int64_t{d} * K + k], 2);
      dist[k] = s;
      if (s < best) best = s, bk = k;
    }
    INFO("row ", r);
    REQUIRE(vqd.indices()[r] == bk);
    // fp32 may only disagree on near-ties, and then must pick a code just as near.
    const int kf = vqf.indices()[r];
    if (kf != bk) ++float_mismatch;
    CHECK(dist[kf] - best <= 1e-4 * best);
  }
  CHECK(float_mismatch <= 2);
}

TEST_CASE_TEMPLATE("EMA update matches a hand computation over three steps", T, float, double) {
  constexpr int D = 2, K = 3;
  const double decay = 0.99, eps = 1e-5;
  const std::vector<double> e0 = {0, 4, -3, /* d = 1 */ 0, 4, 1};
  vq::VectorQuantizer<T, Cpu, D, K> vq(decay, eps);
  set_code_book(vq, e0);
  // Reference state, updated with plain loops in double.
  std::vector<double> embed = e0, avg = e0, cs(K, 0.0);
  const std::vector<std::vector<std::vector<double>>> batches = {
      {{0.5, -0.25}, {3.5, 4.5}, {4.25, 3.0}, {-0.5, 0.25}},
      {{-2.5, 1.5}, {0.25, 0.75}, {3.0, 3.0}, {-3.5, 0.5}},
      {{0.1, 0.2}, {0.3, -0.1}, {-0.2, 0.05}, {5.0, 5.0}},
  };
  Context<Cpu> ctx;
  ctx.training = true;
  for (std::size_t step = 0; step < batches.size(); ++step) {
    const auto& rows = batches[step];
    std::vector<int> idx(rows.size());
    std::vector<double> count(K, 0.0), sum(D * K, 0.0);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      double best = std::numeric_limits<double>::infinity();
      for (int k = 0; k < K; ++k) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += std::pow(rows[r][d] - embed[d * K + k], 2);
        if (s < best) best = s, idx[r] = k;
      }
      count[idx[r]] += 1;
      for (int d = 0; d < D; ++d) sum[d * K + idx[r]] += rows[r][d];
    }
    std::vector<double> q_expected(rows.size() * D);
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (int d = 0; d < D; ++d) q_expected[r * D + d] = embed[d * K + idx[r]];  // before the update
    double n = 0;
    for (int k = 0; k < K; ++k) {
      cs[k] = decay * cs[k] + (1 - decay) * count[k];
      n += cs[k];
    }
    for (int i = 0; i < D * K; ++i) avg[i] = decay * avg[i] + (1 - decay) * sum[i];
    for (int d = 0; d < D; ++d)
      for (int k = 0; k < K; ++k) embed[d * K + k] = avg[d * K + k] / ((cs[k] + eps) / (n + K * eps) * n);

    Tensor<T> z = rows_to_nchw<T>(rows, 1);
    const Tensor<T>& q = vq.forward(ctx, z);
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    INFO("step ", step);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      CHECK(vq.indices()[static_cast<std::int64_t>(r)] == idx[r]);
      std::vector<double> qr = row_of(q, static_cast<std::int64_t>(r));
      for (int d = 0; d < D; ++d) CHECK(qr[d] == doctest::Approx(q_expected[r * D + d]).epsilon(tol));
    }
    for (int k = 0; k < K; ++k) CHECK(vq.cluster_size()[k] == doctest::Approx(cs[k]).epsilon(tol));
    for (int i = 0; i < D * K; ++i) {
      CHECK(vq.embed_avg()[i] == doctest::Approx(avg[i]).epsilon(tol));
      CHECK(vq.embed()[i] == doctest::Approx(embed[i]).epsilon(tol));
    }
  }
}

TEST_CASE_TEMPLATE("PyTorch golden: the reference Quantize over two training steps", T, float, double) {
  test::Golden gold("vq.bin");
  vq::VectorQuantizer<T, Cpu, 32, 64> vq;
  Tensor<double> e0 = gold.get("embed0");
  REQUIRE(e0.shape() == Shape{32, 64});
  set_code_book(vq, std::vector<double>(e0.begin(), e0.end()));
  Context<Cpu> ctx;
  ctx.training = true;
  for (int step = 0; step < 2; ++step) {
    const std::string s = std::to_string(step), s1 = std::to_string(step + 1);
    INFO("step ", step);
    Tensor<T> x = gold.get_as<T>("x" + s);
    const Tensor<T>& q = vq.forward(ctx, x);
    Tensor<double> ind = gold.get("indices" + s);
    REQUIRE(vq.indices().shape() == ind.shape());
    int wrong = 0;
    for (std::int64_t i = 0; i < ind.numel(); ++i) wrong += vq.indices()[i] != static_cast<std::int32_t>(ind[i]);
    CHECK(wrong == 0);
    // The golden is PyTorch's fp32 run, so float and double both differ from it by fp32
    // rounding: a few operations per entry, ~1e-6 relative; atol covers EMA sums that cancel.
    const double rtol = 1e-4, atol = 1e-5;
    test::check_close(q, gold.get("quantize" + s), atol, rtol, "quantize" + s);
    CHECK(vq.commitment_loss() == doctest::Approx(gold.get("diff" + s)[0]).epsilon(1e-4));
    test::check_close(vq.embed(), gold.get("embed" + s1), atol, rtol, "embed" + s1);
    test::check_close(vq.cluster_size(), gold.get("cluster_size" + s1), atol, rtol, "cluster_size" + s1);
    test::check_close(vq.embed_avg(), gold.get("embed_avg" + s1), atol, rtol, "embed_avg" + s1);
  }
}

TEST_CASE("training forward looks codes up in the code book from before its update") {
  vq::VectorQuantizer<float, Cpu, 8, 16> vq;
  Generator g(3);
  vq.init(g);
  Tensor<float> before = vq.embed().clone();
  Tensor<float> z(nchw(2, 8, 3, 3));
  g.normal(z, 0.0f, 1.0f);
  Context<Cpu> ctx;
  ctx.training = true;
  Tensor<float> q = vq.forward(ctx, z).clone();
  Tensor<std::int32_t> idx = vq.indices().clone();
  double changed = 0;
  for (std::int64_t i = 0; i < before.numel(); ++i) changed += std::abs(before[i] - vq.embed()[i]);
  REQUIRE(changed > 1.0);  // the update moved the code book
  for (std::int64_t r = 0; r < 18; ++r) {
    std::vector<double> qr = row_of(q, r);
    for (int d = 0; d < 8; ++d) CHECK(qr[d] == before[d * 16 + idx[r]]);
  }
  // lookup() reads the current (updated) code book, into its own tensor.
  const Tensor<float>& l = vq.lookup(ctx, idx);
  REQUIRE(l.shape() == z.shape());
  for (std::int64_t r = 0; r < 18; ++r) {
    std::vector<double> lr = row_of(l, r);
    for (int d = 0; d < 8; ++d) CHECK(lr[d] == vq.embed()[d * 16 + idx[r]]);
  }
  CHECK(vq.output().data() != l.data());
}

TEST_CASE("evaluation mode leaves the buffers alone; buffers are visitable, parameters empty") {
  vq::VectorQuantizer<float, Cpu, 4, 8> vq;
  Generator g(5);
  vq.init(g);
  std::vector<std::string> names;
  vq.visit_buffers([&](std::string_view name, auto&) { names.emplace_back(name); });
  CHECK(names == std::vector<std::string>{"embed", "cluster_size", "embed_avg", "unused_steps"});
  int params = 0;
  vq.visit([&](std::string_view, auto&) { ++params; });
  CHECK(params == 0);
  Tensor<float> e = vq.embed().clone(), a = vq.embed_avg().clone();
  Tensor<float> z(nchw(1, 4, 5, 5));
  g.normal(z, 0.0f, 1.0f);
  Context<Cpu> ctx;
  ctx.training = false;
  vq.forward(ctx, z);
  for (std::int64_t i = 0; i < e.numel(); ++i) REQUIRE((vq.embed()[i] == e[i] && vq.embed_avg()[i] == a[i]));
  for (int k = 0; k < 8; ++k) CHECK(vq.cluster_size()[k] == 0.0f);
}

TEST_CASE("straight-through gradient: dq passes unchanged, the commitment term matches finite differences") {
  vq::VectorQuantizer<double, Cpu, 4, 8> vq;
  Generator g(21);
  vq.init(g);
  test::TensorD z = test::random_tensor(nchw(2, 4, 3, 3), 22);
  Context<Cpu> ctx;
  ctx.training = false;  // keep the code book (and so the assignment) fixed
  vq.forward(ctx, z);
  Tensor<std::int32_t> idx0 = vq.indices().clone();

  // Commitment only: the checker's loss is probe * commitment(z), so the backward
  // runs with dq = 0 and the probe as the commitment weight.
  test::TensorD dz_analytic;
  test::check_gradients(
      [&] {
        vq.forward(ctx, z);
        test::TensorD out(Shape{1});
        out[0] = vq.commitment_loss();
        return out;
      },
      [&](const test::TensorD& dy) { dz_analytic = vq.backward(ctx, test::TensorD::zeros(z.shape()), dy[0]).clone(); },
      [&] {
        return std::vector<test::GradTarget>{{"z", z, dz_analytic}};
      });
  vq.forward(ctx, z);
  for (std::int64_t i = 0; i < idx0.numel(); ++i) REQUIRE(vq.indices()[i] == idx0[i]);  // assignment did not move

  const double w = 0.25;
  // Straight-through: with weight 0, dz is dq exactly; with weight w, dq + w * 2 (z - q) / numel.
  test::TensorD dq = test::random_tensor(z.shape(), 23);
  test::TensorD q = vq.output().clone();
  test::TensorD dz0 = vq.backward(ctx, dq, 0.0).clone();
  for (std::int64_t i = 0; i < z.numel(); ++i) REQUIRE(dz0[i] == dq[i]);
  const test::TensorD& dz = vq.backward(ctx, dq, w);
  for (std::int64_t i = 0; i < z.numel(); ++i)
    CHECK(dz[i] == doctest::Approx(dq[i] + w * 2 * (z[i] - q[i]) / static_cast<double>(z.numel())).epsilon(1e-14));
}

TEST_CASE("dead-code restart re-seeds exactly the codes unused for N consecutive steps, from batch rows") {
  // e0 = (0,0), e1 = (10,0), e2 = (0,10), e3 = (10,10).
  const std::vector<double> book = {0, 10, 0, 10, /* d = 1 */ 0, 0, 10, 10};
  vq::VectorQuantizer<float, Cpu, 2, 4> vq, plain;
  set_code_book(vq, book);
  set_code_book(plain, book);
  vq.set_dead_code_restart(2);
  Context<Cpu> ctx;
  ctx.training = true;
  // Step 1 uses codes 0 and 1; step 2 only code 0. Codes 2 and 3 then have 2 idle steps,
  // code 1 only 1.
  Tensor<float> z1 = rows_to_nchw<float>({{0.5, 0.25}, {9.5, 0.5}, {-0.25, 0.5}, {10.5, -0.5}}, 1);
  Tensor<float> z2 = rows_to_nchw<float>({{0.75, -0.5}, {0.25, 0.125}, {-0.5, -0.75}, {1.0, 0.5}}, 1);
  vq.forward(ctx, z1);
  plain.forward(ctx, z1);
  CHECK(vq.restarted_codes().empty());
  CHECK(vq.unused_steps()[2] == 1);
  vq.forward(ctx, z2);
  plain.forward(ctx, z2);
  CHECK(vq.restarted_codes() == std::vector<std::int32_t>{2, 3});
  CHECK(vq.unused_steps()[1] == 1);
  CHECK(vq.unused_steps()[2] == 0);
  CHECK(vq.unused_steps()[3] == 0);
  for (int k : {2, 3}) {
    INFO("code ", k);
    std::vector<double> e = code_of(vq, k);
    bool from_batch = false;
    for (std::int64_t r = 0; r < 4; ++r) from_batch = from_batch || row_of(z2, r) == e;
    CHECK(from_batch);
    CHECK(vq.cluster_size()[k] == 1.0f);
    CHECK(vq.embed_avg()[k] == static_cast<float>(e[0]));
    CHECK(vq.embed_avg()[4 + k] == static_cast<float>(e[1]));
    // Without restart the reference behaviour holds: the idle code drifts away (embed_avg / ~eps).
    CHECK(std::abs(plain.embed()[4 + k]) > 1000.0f);
  }
  // Codes that were used, or idle for fewer steps, follow the plain EMA exactly.
  for (int k : {0, 1})
    for (int d = 0; d < 2; ++d) {
      CHECK(vq.embed()[d * 4 + k] == plain.embed()[d * 4 + k]);
      CHECK(vq.cluster_size()[k] == plain.cluster_size()[k]);
    }
  // The re-seeded codes are live: a batch near them now picks them.
  ctx.training = false;
  std::vector<double> e2 = code_of(vq, 2), e3 = code_of(vq, 3);
  if (e2 != e3) {
    vq.forward(ctx, rows_to_nchw<float>({e2, e3}, 1));
    CHECK(vq.indices()[0] == 2);
    CHECK(vq.indices()[1] == 3);
  }
}

TEST_CASE("usage and perplexity of the batch histogram on a hand case") {
  vq::VectorQuantizer<float, Cpu, 2, 4> vq;
  set_code_book(vq, kSquare);
  Context<Cpu> ctx;
  ctx.training = false;
  // Counts {2, 1, 1, 0}: p = (1/2, 1/4, 1/4), H = 1.5 ln 2, perplexity 2^1.5.
  vq.forward(ctx, rows_to_nchw<float>({{0, 0}, {0.125, 0}, {1, 0.125}, {0, 0.875}}, 1));
  CHECK(vq.code_usage() == 3);
  CHECK(vq.perplexity() == doctest::Approx(std::pow(2.0, 1.5)).epsilon(1e-12));
  CHECK(vq.code_counts()[0] == 2);
  CHECK(vq.code_counts()[3] == 0);
  // One of each code: uniform histogram, perplexity = 4.
  vq.forward(ctx, rows_to_nchw<float>({{0, 0}, {1, 0}, {0, 1}, {2, 2}}, 2));
  CHECK(vq.code_usage() == 4);
  CHECK(vq.perplexity() == doctest::Approx(4.0).epsilon(1e-12));
  // All rows on one code: perplexity 1.
  vq.forward(ctx, rows_to_nchw<float>({{2, 2}, {2.5, 2}, {3, 3}, {2, 1.75}}, 1));
  CHECK(vq.code_usage() == 1);
  CHECK(vq.perplexity() == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("results do not depend on the thread count, and steps reuse their buffers") {
  vq::VectorQuantizer<float, Cpu, 16, 32> a, b;
  Generator g(9);
  a.init(g);
  b.embed().copy_from(a.embed());
  b.embed_avg().copy_from(a.embed_avg());
  Tensor<float> z(nchw(3, 16, 20, 20));
  g.normal(z, 0.0f, 1.0f);
  {
    Context<Cpu> one(1);
    a.forward(one, z);
  }
  Context<Cpu> two(2);
  b.forward(two, z);
  for (std::int64_t i = 0; i < z.numel() / 16; ++i) REQUIRE(a.indices()[i] == b.indices()[i]);
  CHECK(test::max_rel_error(a.embed(), b.embed()) < 1e-6);
  CHECK(a.commitment_loss() == doctest::Approx(b.commitment_loss()).epsilon(1e-9));
  const float* out = b.output().data();
  const std::int32_t* ind = b.indices().data();
  b.forward(two, z);
  b.backward(two, b.output(), 0.25f);
  const float* dz = b.backward(two, b.output(), 0.25f).data();
  b.forward(two, z);
  CHECK(b.output().data() == out);
  CHECK(b.indices().data() == ind);
  CHECK(b.backward(two, b.output(), 0.25f).data() == dz);
}

TEST_CASE("bad shapes and indices throw a clear Error") {
  vq::VectorQuantizer<float, Cpu, 4, 8> vq;
  Context<Cpu> ctx;
  CHECK_THROWS_WITH_AS(vq.backward(ctx, Tensor<float>(nchw(1, 4, 2, 2)), 0.25f), doctest::Contains("before forward"),
                       Error);
  CHECK_THROWS_WITH_AS(vq.forward(ctx, Tensor<float>(nchw(1, 3, 2, 2))),
                       doctest::Contains("expected input [N, 4, H, W], got [1, 3, 2, 2]"), Error);
  CHECK_THROWS_AS(vq.forward(ctx, Tensor<float>(Shape{4, 2, 2})), Error);
  CHECK_THROWS_AS(vq.forward(ctx, Tensor<float>(nchw(0, 4, 2, 2))), Error);
  Tensor<float> z = Tensor<float>::zeros(nchw(1, 4, 2, 2));
  vq.forward(ctx, z);
  CHECK_THROWS_WITH_AS(vq.backward(ctx, Tensor<float>(nchw(1, 4, 2, 3)), 0.25f),
                       doctest::Contains("[1, 4, 2, 3] does not match"), Error);
  Tensor<std::int32_t> idx = Tensor<std::int32_t>::zeros(Shape{1, 2, 2});
  idx[3] = 8;
  CHECK_THROWS_WITH_AS(vq.lookup(ctx, idx), doctest::Contains("index 8 at position 3"), Error);
  idx[3] = -1;
  CHECK_THROWS_AS(vq.lookup(ctx, idx), Error);
  CHECK_THROWS_AS(vq.lookup(ctx, Tensor<std::int32_t>(Shape{4})), Error);
  CHECK_THROWS_AS(vq.set_dead_code_restart(-1), Error);
  CHECK_THROWS_AS((vq::VectorQuantizer<float, Cpu, 4, 8>(1.0)), Error);
}
