// STREAM-like memory bandwidth: the yardstick for batch-1 cached sampling, which streams
// every weight of the prior once per code position (REFERENCE.md, "Sampling cost").
// Arrays of doubles far larger than the caches (MiB per array: the first argument),
// OpenMP static schedule on the given number of threads, pages first touched by the
// threads that use them. Bytes counted as STREAM does (no write-allocate traffic).
//
// Registered names (stable):
//   Stream_Read/MiB:512/threads:T/real_time    s += a[i]            8 bytes per element
//   Stream_Copy/MiB:512/threads:T/real_time    c[i] = a[i]          16 bytes per element
//   Stream_Triad/MiB:512/threads:T/real_time   a[i] = b[i] + q c[i] 24 bytes per element
// T in {1, 2}. Counter: bytes_per_second (Google Benchmark's SetBytesProcessed).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <memory>

namespace {

struct Arrays {
  std::int64_t n;
  std::unique_ptr<double[]> a, b, c;
  Arrays(std::int64_t mib, int threads)
      : n(mib * 1024 * 1024 / 8), a(new double[n]), b(new double[n]), c(new double[n]) {
    double *pa = a.get(), *pb = b.get(), *pc = c.get();
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) pa[i] = 1.0, pb[i] = 2.0, pc[i] = 0.5;
  }
};

void BM_Read(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(1));
  Arrays x(state.range(0), threads);
  const double* a = x.a.get();
  const std::int64_t n = x.n;
  for (auto _ : state) {
    double s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
    {
      // The same contiguous chunks as schedule(static); 16 independent sums so the loads,
      // not the latency of one chain of additions, set the pace.
      const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const std::int64_t begin = n * t / nt, end = n * (t + 1) / nt;
      double acc[16] = {};
      std::int64_t i = begin;
      for (; i + 16 <= end; i += 16)
        for (int k = 0; k < 16; ++k) acc[k] += a[i + k];
      for (; i < end; ++i) acc[0] += a[i];
      for (int k = 0; k < 16; ++k) s += acc[k];
    }
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * n * 8);
}

void BM_Copy(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(1));
  Arrays x(state.range(0), threads);
  const double* a = x.a.get();
  double* c = x.c.get();
  const std::int64_t n = x.n;
  for (auto _ : state) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) c[i] = a[i];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 16);
}

void BM_Triad(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(1));
  Arrays x(state.range(0), threads);
  double* a = x.a.get();
  const double *b = x.b.get(), *c = x.c.get();
  const std::int64_t n = x.n;
  const double q = 3.0;
  for (auto _ : state) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) a[i] = b[i] + q * c[i];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 24);
}

}  // namespace

BENCHMARK(BM_Read)->Name("Stream_Read")->ArgNames({"MiB", "threads"})->Args({512, 1})->Args({512, 2})->UseRealTime();
BENCHMARK(BM_Copy)->Name("Stream_Copy")->ArgNames({"MiB", "threads"})->Args({512, 1})->Args({512, 2})->UseRealTime();
BENCHMARK(BM_Triad)->Name("Stream_Triad")->ArgNames({"MiB", "threads"})->Args({512, 1})->Args({512, 2})->UseRealTime();
BENCHMARK_MAIN();
