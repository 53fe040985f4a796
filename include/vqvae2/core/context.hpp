// Context<Device>: what ops need besides their operands. On the CPU: the thread
// count, the training flag, and the oneDNN engine and stream. The CUDA context
// (stream, cuDNN and cuBLAS handles) is declared by the CUDA backend.
//
// core/ does not include <dnnl.hpp>: nvcc 13's front end cannot parse it in
// C++20 mode, and core must stay nvcc-clean. engine()/stream() are templates
// whose bodies are instantiated only by the oneDNN backend (ops/cpu/*_dnnl.hpp),
// which includes <dnnl.hpp> and is compiled by the host compiler.
#pragma once

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/precision.hpp"

namespace dnnl {
struct engine;
struct stream;
}  // namespace dnnl

namespace vqvae2 {

template <class Device>
class Context;

template <>
class Context<Cpu> {
 public:
  // threads <= 0 keeps OpenMP's default (OMP_NUM_THREADS or all cores).
  explicit Context(int threads = 0) {
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

  // One CPU engine and stream per process: oneDNN's CPU engine is stateless
  // apart from its primitive cache, so sharing it between contexts is safe.
  template <class Engine = dnnl::engine>
  Engine& engine() {
    static Engine e(Engine::kind::cpu, 0);
    return e;
  }
  template <class Stream = dnnl::stream, class Engine = dnnl::engine>
  Stream& stream() {
    static Stream s(engine<Engine>());
    return s;
  }

  // Training switches dropout and the quantiser's EMA updates on.
  bool training = true;
  // Precision of the convolutions run on this context (core/precision.hpp); models set it
  // for their own forward and backward.
  Precision precision = Precision::fp32;
};

}  // namespace vqvae2
