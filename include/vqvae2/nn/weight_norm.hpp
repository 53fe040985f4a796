// Weight normalisation (Salimans & Kingma 2016), as torch.nn.utils.weight_norm
// with dim=0: every output row i of the weight is w_i = g_i * v_i / ||v_i||,
// the norm taken over all dimensions but the first. One implementation, used
// by WNConv2d and WNLinear (and through WNConv2d by CausalConv2d).
//
// Backward, with n_i = ||v_i|| and s_i = sum_j dw_ij * v_ij / n_i:
//   dg_i  = s_i
//   dv_ij = (g_i / n_i) * (dw_ij - s_i * v_ij / n_i)
#pragma once

#include <cmath>
#include <cstdint>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/tensor.hpp"

namespace vqvae2::nn {

// Element-wise pieces, written once for the CPU loops here and a later CUDA kernel.
template <class T>
struct WeightNormScale {
  VQVAE2_HD T operator()(T g, T v, T inv_norm) const { return g * v * inv_norm; }
};
template <class T>
struct WeightNormGradV {
  // dv = (g / n) * (dw - s * v / n), with inv_norm = 1 / n.
  VQVAE2_HD T operator()(T dw, T v, T g, T s, T inv_norm) const { return g * inv_norm * (dw - s * v * inv_norm); }
};

// Checks that g has one entry per row of v ([out, 1, ...] or [out]).
template <class T, class D>
void check_weight_norm_shapes(const char* where, const Tensor<T, D>& g, const Tensor<T, D>& v) {
  VQVAE2_CHECK(v.rank() >= 2 && v.dim(0) > 0 && g.numel() == v.dim(0) && g.dim(0) == v.dim(0), where, ": weight_g ",
               g.shape().str(), " must hold one scale per output row of weight_v ", v.shape().str(), ".");
}

// w = g * v / ||v|| row by row; inv_norm[i] = 1 / ||v_i|| is kept for backward.
// w and inv_norm are resized.
template <class T>
void weight_norm_forward(Context<Cpu>&, const Tensor<T, Cpu>& g, const Tensor<T, Cpu>& v, Tensor<T, Cpu>& w,
                         Tensor<T, Cpu>& inv_norm) {
  check_weight_norm_shapes("weight_norm_forward", g, v);
  const std::int64_t rows = v.dim(0), cols = v.numel() / rows;
  w.resize(v.shape());
  inv_norm.resize(Shape{rows});
  const T* pv = v.data();
  const T* pg = g.data();
  T* pw = w.data();
  T* pn = inv_norm.data();
  bool zero_row = false;
#pragma omp parallel for reduction(|| : zero_row) if (rows * cols > 32768)
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* vi = pv + i * cols;
    // Accumulate in double: rows hold up to 256*5*5 = 6400 entries.
    double sq = 0;
    for (std::int64_t j = 0; j < cols; ++j) sq += static_cast<double>(vi[j]) * static_cast<double>(vi[j]);
    if (sq == 0) {
      zero_row = true;
      pn[i] = T(0);
      continue;
    }
    const T inv = static_cast<T>(1.0 / std::sqrt(sq));
    pn[i] = inv;
    WeightNormScale<T> f;
    for (std::int64_t j = 0; j < cols; ++j) pw[i * cols + j] = f(pg[i], vi[j], inv);
  }
  VQVAE2_CHECK(!zero_row, "weight_norm_forward: a row of weight_v ", v.shape().str(),
               " is all zeros, so its direction (v / ||v||) is undefined.");
}

// Adds dL/dg and dL/dv given dL/dw. When mask is given (same shape as v, 0 or 1),
// dv is multiplied by it, so masked-out entries of v receive no gradient.
template <class T>
void weight_norm_backward(Context<Cpu>&, const Tensor<T, Cpu>& g, const Tensor<T, Cpu>& v,
                          const Tensor<T, Cpu>& inv_norm, const Tensor<T, Cpu>& dw, Tensor<T, Cpu>& dg,
                          Tensor<T, Cpu>& dv, const Tensor<T, Cpu>* mask = nullptr) {
  check_weight_norm_shapes("weight_norm_backward", g, v);
  VQVAE2_CHECK(dw.shape() == v.shape() && dv.shape() == v.shape() && dg.numel() == g.numel() &&
                   inv_norm.numel() == v.dim(0) && (!mask || mask->shape() == v.shape()),
               "weight_norm_backward: weight gradient ", dw.shape().str(), ", weight_v gradient ", dv.shape().str(),
               " and weight_g gradient ", dg.shape().str(), " do not match weight_v ", v.shape().str(), ".");
  const std::int64_t rows = v.dim(0), cols = v.numel() / rows;
  const T* pv = v.data();
  const T* pg = g.data();
  const T* pn = inv_norm.data();
  const T* pdw = dw.data();
  const T* pm = mask ? mask->data() : nullptr;
  T* pdg = dg.data();
  T* pdv = dv.data();
#pragma omp parallel for if (rows * cols > 32768)
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* vi = pv + i * cols;
    const T* dwi = pdw + i * cols;
    double acc = 0;
    for (std::int64_t j = 0; j < cols; ++j) acc += static_cast<double>(dwi[j]) * static_cast<double>(vi[j]);
    const T s = static_cast<T>(acc) * pn[i];
    pdg[i] += s;
    WeightNormGradV<T> f;
    T* dvi = pdv + i * cols;
    if (pm) {
      const T* mi = pm + i * cols;
      for (std::int64_t j = 0; j < cols; ++j) dvi[j] += mi[j] * f(dwi[j], vi[j], pg[i], s, pn[i]);
    } else {
      for (std::int64_t j = 0; j < cols; ++j) dvi[j] += f(dwi[j], vi[j], pg[i], s, pn[i]);
    }
  }
}

// g_i = ||v_i||, so that w = v right after initialisation (what weight_norm does
// when it wraps an initialised layer).
template <class T>
void weight_norm_init_g(Tensor<T, Cpu>& g, const Tensor<T, Cpu>& v) {
  check_weight_norm_shapes("weight_norm_init_g", g, v);
  const std::int64_t rows = v.dim(0), cols = v.numel() / rows;
  for (std::int64_t i = 0; i < rows; ++i) {
    double sq = 0;
    for (std::int64_t j = 0; j < cols; ++j) sq += static_cast<double>(v[i * cols + j]) * v[i * cols + j];
    g[i] = static_cast<T>(std::sqrt(sq));
  }
}

}  // namespace vqvae2::nn
