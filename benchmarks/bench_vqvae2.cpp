// The whole VQ-VAE-2 training step (forward, quantiser EMA, backward, Adam) of
// the default OASIS configuration at 256x256. Counters: images/s, GFLOP/s (by
// the reference's 3.87 GMAC forward, x3 for a training step), peak RSS.
// Arguments: batch, image size, bf16 (0: fp32; 1: the bf16 precision policy, which runs
// fp32 where the CPU has no AVX-512 BF16 and then reports bf16_native 0).
// Run one case per process (--benchmark_filter) so the peak RSS is its own.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <type_traits>

#include "vqvae2/train/vqvae_trainer.hpp"

using namespace vqvae2;

namespace {

double peak_rss_mb() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_maxrss) / 1024.0;
}

template <class Config>
void BM_VQVAE2_TrainStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), size = static_cast<int>(state.range(1));
  const bool bf16 = state.range(2) != 0;
  Context<Cpu> ctx(2);
  train::VQVAETrainer<Config> trainer(ctx, {});  // forward, quantiser EMA, backward, Adam
  trainer.model().set_precision(bf16 ? Precision::bf16 : Precision::fp32);
  Generator g(1);
  Tensor<float> x(nchw(batch, 1, size, size));
  g.uniform(x, -1.0f, 1.0f);
  auto step = [&] { benchmark::DoNotOptimize(trainer.step(x).loss); };
  step();  // first step allocates every workspace
  for (auto _ : state) step();
  state.counters["img/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  if constexpr (std::is_same_v<Config, models::Oasis256>) {
    // REFERENCE.md: 3.87 GMAC per 256x256 forward; backward costs about twice the forward.
    const double gmac_fwd = 3.87 * (size / 256.0) * (size / 256.0);
    state.counters["FLOPS"] =
        benchmark::Counter(3 * 2 * gmac_fwd * 1e9 * batch, benchmark::Counter::kIsIterationInvariantRate);
  }
  state.counters["peak_rss_MB"] = peak_rss_mb();
  state.counters["bf16_native"] = bf16 && ops::onednn::bf16_native();
}

}  // namespace

BENCHMARK(BM_VQVAE2_TrainStep<models::Oasis256>)
    ->ArgNames({"batch", "size", "bf16"})
    ->ArgsProduct({{8, 32}, {256}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(5.0);
BENCHMARK(BM_VQVAE2_TrainStep<models::Small>)
    ->ArgNames({"batch", "size", "bf16"})
    ->ArgsProduct({{16}, {256}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(5.0);
BENCHMARK_MAIN();
