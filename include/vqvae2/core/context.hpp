// Context<Device>: what ops need besides their operands. On the CPU: the thread
// count and the oneDNN engine and stream (created once). The CUDA context
// (stream, cuDNN and cuBLAS handles) is declared by the CUDA backend.
#pragma once

#include <dnnl.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vqvae2/core/device.hpp"

namespace vqvae2 {

template <class Device>
class Context;

template <>
class Context<Cpu> {
 public:
  // threads <= 0 keeps OpenMP's default (OMP_NUM_THREADS or all cores).
  explicit Context(int threads = 0) : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
#if defined(_OPENMP)
    if (threads > 0) omp_set_num_threads(threads);
#endif
    (void)threads;
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int threads() const {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }
  dnnl::engine& engine() { return engine_; }
  dnnl::stream& stream() { return stream_; }
  // Training switches dropout on; evaluation and sampling switch it off.
  bool training = true;

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
};

}  // namespace vqvae2
