// Reads golden files written by tests/golden/golden_io.py: named float64 arrays.
// Layout (little endian): "VQG1", u32 count, then per array: u32 name length,
// name bytes, u32 rank, rank x i64 dims, numel x f64 data.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"

#ifndef VQVAE2_GOLDEN_DIR
#error "VQVAE2_GOLDEN_DIR must point at tests/golden"
#endif

namespace vqvae2::test {

class Golden {
 public:
  explicit Golden(const std::string& file) : path_(std::string(VQVAE2_GOLDEN_DIR) + "/" + file) {
    std::ifstream in(path_, std::ios::binary);
    VQVAE2_CHECK(in, "Golden: cannot open ", path_, ".");
    char magic[4];
    in.read(magic, 4);
    VQVAE2_CHECK(in && std::memcmp(magic, "VQG1", 4) == 0, "Golden: ", path_, " is not a golden file.");
    std::uint32_t count = read<std::uint32_t>(in);
    for (std::uint32_t k = 0; k < count; ++k) {
      std::uint32_t len = read<std::uint32_t>(in);
      std::string name(len, '\0');
      in.read(name.data(), len);
      std::uint32_t rank = read<std::uint32_t>(in);
      Shape s;
      s.rank = static_cast<int>(rank);
      for (std::uint32_t d = 0; d < rank; ++d) s.dims[d] = read<std::int64_t>(in);
      Tensor<double> t(s);
      in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.bytes()));
      VQVAE2_CHECK(in, "Golden: ", path_, " is truncated in array '", name, "'.");
      arrays_.emplace(name, t);
    }
  }

  Tensor<double> get(const std::string& name) const {
    auto it = arrays_.find(name);
    VQVAE2_CHECK(it != arrays_.end(), "Golden: ", path_, " has no array '", name, "'.");
    return it->second;
  }
  template <class T>
  Tensor<T> get_as(const std::string& name) const {
    Tensor<double> d = get(name);
    Tensor<T> t(d.shape());
    for (std::int64_t i = 0; i < d.numel(); ++i) t[i] = static_cast<T>(d[i]);
    return t;
  }

 private:
  template <class V>
  static V read(std::ifstream& in) {
    V v{};
    in.read(reinterpret_cast<char*>(&v), sizeof(V));
    return v;
  }
  std::string path_;
  std::map<std::string, Tensor<double>> arrays_;
};

// max |a - b| / max |b|: relative to the golden's largest entry, so entries far below it
// are barely checked. Compare goldens with check_close; this remains for comparisons of
// two implementations where only the scale matters. Shapes must agree, not only counts.
template <class A, class B>
double max_rel_error(const Tensor<A>& a, const Tensor<B>& b) {
  VQVAE2_CHECK(a.shape() == b.shape(), "max_rel_error: ", a.shape().str(), " vs ", b.shape().str(), ".");
  double scale = 0, err = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  scale = std::max(scale, 1e-12);
  for (std::int64_t i = 0; i < b.numel(); ++i)
    err = std::max(err, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])) / scale);
  return err;
}

// Per-element comparison (the rule for goldens, docs/layers.md): every element must satisfy
//   |a - b| <= atol + rtol |b|   and   |a - b| <= rtol max|b|,
// the second keeping it at least as strict as max_rel_error(a, b) < rtol. Shapes must be
// equal. One CHECK per tensor; on failure it names the count of bad elements and the worst.
template <class A, class B>
void check_close(const Tensor<A>& a, const Tensor<B>& b, double atol, double rtol, const std::string& what) {
  INFO(what);
  REQUIRE_MESSAGE(a.shape() == b.shape(), what, ": shape ", a.shape().str(), " differs from the golden's ",
                  b.shape().str());
  double scale = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  std::int64_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    const double bi = static_cast<double>(b[i]), err = std::abs(static_cast<double>(a[i]) - bi);
    const double bound = std::min(atol + rtol * std::abs(bi), rtol * scale);
    const double ratio = bound > 0 ? err / bound : (err > 0 ? HUGE_VAL : 0.0);
    if (!(err <= bound)) ++bad;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", b.numel(), " elements outside atol ", atol, " + rtol ", rtol,
                " |golden|; worst at flat index ", worst, ": got ", static_cast<double>(a[worst]), ", golden ",
                static_cast<double>(b[worst]), " (", worst_ratio, " x the bound)");
}

}  // namespace vqvae2::test
