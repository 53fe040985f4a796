// Device tags and the host/device annotation used by element-wise functors.
#pragma once

#if defined(__CUDACC__)
#define VQVAE2_HD __host__ __device__
#else
#define VQVAE2_HD
#endif

namespace vqvae2 {

// A device is a type: layers and tensors are templated on it, so choosing the
// GPU is a matter of instantiating with Cuda and providing ops/cuda/ kernels.
struct Cpu {
  static constexpr const char* name = "cpu";
};
struct Cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
inline constexpr bool is_cpu_v = false;
template <>
inline constexpr bool is_cpu_v<Cpu> = true;

}  // namespace vqvae2
