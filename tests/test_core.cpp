#include <doctest/doctest.h>

#include <set>

#include "vqvae2/vqvae2.hpp"

using namespace vqvae2;

TEST_CASE("Shape and Tensor basics: views alias, clone copies, resize reuses storage") {
  Tensor<float> t(nchw(2, 3, 4, 5));
  CHECK(t.numel() == 120);
  CHECK(t.shape().str() == "[2, 3, 4, 5]");
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  CHECK(t.at(1, 2, 3, 4) == 119.0f);

  Tensor<float> flat = t.reshape(Shape{6, 20});
  flat[7] = -1.0f;
  CHECK(t[7] == -1.0f);

  Tensor<float> second = t.slice0(1, 1);
  CHECK(second.shape() == nchw(1, 3, 4, 5));
  CHECK(second[0] == 60.0f);

  Tensor<float> copy = t.clone();
  copy[0] = 42.0f;
  CHECK(t[0] == 0.0f);

  Tensor<float> r(Shape{100});
  const float* before = r.data();
  r.resize(Shape{50});
  CHECK(r.data() == before);
  r.resize(Shape{200});
  CHECK(r.numel() == 200);
}

TEST_CASE("Tensor rejects a bad reshape with a message naming both shapes") {
  Tensor<float> t(nchw(1, 2, 3, 4));
  CHECK_THROWS_WITH_AS(t.reshape(Shape{5, 5}), doctest::Contains("[1, 2, 3, 4]"), Error);
  CHECK_THROWS_AS(t.slice0(1, 1), Error);
}

TEST_CASE("Philox-4x32-10 matches the Random123 known-answer vectors") {
  // Known-answer test from Random123 (kat_vectors): philox4x32 10 rounds,
  // counter = 0, key = 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
  PhiloxBlock b = philox4x32_10(0, 0, 0);
  CHECK(b.v[0] == 0x6627e8d5u);
  CHECK(b.v[1] == 0xe169c58du);
  CHECK(b.v[2] == 0xbc57ac4cu);
  CHECK(b.v[3] == 0x9b00dbd8u);
  // counter = all ones, key = all ones -> 408f276d 41c83b0e a20bc7c6 6d5451fd.
  PhiloxBlock c = philox4x32_10(~0ULL, ~0ULL, ~0ULL);
  CHECK(c.v[0] == 0x408f276du);
  CHECK(c.v[1] == 0x41c83b0eu);
  CHECK(c.v[2] == 0xa20bc7c6u);
  CHECK(c.v[3] == 0x6d5451fdu);
}

TEST_CASE("Generator: reproducible, advancing, and with sane moments") {
  Generator a(7), b(7);
  Tensor<float> x(Shape{10000}), y(Shape{10000});
  a.normal(x, 0.0f, 1.0f);
  b.normal(y, 0.0f, 1.0f);
  for (std::int64_t i = 0; i < x.numel(); ++i) REQUIRE(x[i] == y[i]);
  a.normal(y, 0.0f, 1.0f);
  CHECK(x[0] != y[0]);
  double mean = 0, var = 0;
  for (float v : x) mean += v;
  mean /= x.numel();
  for (float v : x) var += (v - mean) * (v - mean);
  var /= x.numel();
  CHECK(std::abs(mean) < 0.05);
  CHECK(std::abs(var - 1.0) < 0.05);
  Tensor<double> u(Shape{10000});
  a.uniform(u, 0.0, 1.0);
  for (double v : u) REQUIRE((v > 0.0 && v <= 1.0));
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(a.below(10));
  CHECK(seen.size() == 10);
}
