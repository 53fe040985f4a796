// The PixelSNAIL priors (models::TopReference 32x32 with attention, models::BottomReference
// 64x64 conditioned on the top codes; REFERENCE.md) on 2 threads: the training step, the
// evaluation forward and cached sampling. The Small configurations (TopSmall, BottomSmall)
// are registered too, for smoke tests of the scripts in seconds.
//
// Registered names (stable; benchmarks/compare_priors.py selects them with
// --benchmark_filter='^NAME/batch:B/'), Prior in {Top, Bottom, TopSmall, BottomSmall}, B in {1, 8}:
//   PixelSNAIL_<Prior>_Train/batch:B/real_time
//       zero_grad, forward (training mode: dropout on), softmax cross-entropy against the
//       input codes, backward, Adam step (lr 3e-4). The first step (allocation) is untimed.
//   PixelSNAIL_<Prior>_TrainBF16/batch:B/real_time
//       the same step with the bf16 precision policy (bf16_native 0: the CPU lacks
//       AVX-512 BF16 and it ran in fp32).
//   PixelSNAIL_<Prior>_Forward/batch:B/real_time
//       the forward in evaluation mode: the cost of one position of the naive sampler
//       (sample::sample_naive runs it height*width times per batch).
//   PixelSNAIL_<Prior>_CachedSample/batch:B/iterations:1/real_time
//       sample::CachedSampler::sample of a whole map (begin() with the conditioning network
//       included), once.
// The bottom prior's condition is random top codes [B, H/2, W/2]; its input random codes.
//
// Counters (every benchmark):
//   weight_bytes    4 x parameter count (the fp32 prior as stored: 339 MB top, 359 MB bottom)
//   streamed_bytes  the weights a batch-1 cached sampling step reads per position: every
//                   weight but the stem's (gathered: one column per tap), the conditioning
//                   network's and the blocks' condition projections (run once per map) and
//                   the causal convolutions' masked taps (3 of 25 for kernel 5); weight_g is
//                   folded into the weights. Bandwidth floor of batch-1 sampling per image:
//                   streamed_bytes x positions / bandwidth (bench_stream).
//   positions       height x width
//   peak_rss_MB     getrusage maxrss of the process: run one benchmark per process.
// Train: img/s, FLOPS (3 x the forward's), Forward: img/s, FLOPS; the forward's FLOPs are
// 2 x its multiply-adds counted as the reference does (REFERENCE.md: dense 5x5 kernels and
// dense one-hot stem, full L x L attention; 87.9 GMAC top, 347.6 bottom per image).
// CachedSample: s_per_img (wall time / B), positions_per_s (positions x B / wall time),
// weight_GBps (streamed_bytes x positions / wall time: the bandwidth it achieves as a
// weight stream), FLOPS (2 x streamed weights x positions x B, attention excluded) and
// cpu_per_wall (process CPU time / wall time: about 1 when one thread does the work, 2 for both).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/models/pixelsnail_configs.hpp"
#include "vqvae2/nn/loss.hpp"
#include "vqvae2/sample/cached_sampler.hpp"
#include "vqvae2/sample/naive_sampler.hpp"
#include "vqvae2/train/adam.hpp"

using namespace vqvae2;

namespace {

constexpr int kThreads = 2;
using Codes = Tensor<std::int32_t, Cpu>;

double peak_rss_mb() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_maxrss) / 1024.0;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

Codes random_codes(std::int64_t B, std::int64_t H, std::int64_t W, int n_class, std::uint64_t seed) {
  Codes c(Shape{B, H, W});
  Generator g(seed);
  for (std::int64_t i = 0; i < c.numel(); ++i) c[i] = static_cast<std::int32_t>(g.below(n_class));
  return c;
}

// Multiply-adds of one forward per image, counted as the reference's figures are (see top).
template <class Config>
double forward_macs() {
  const double H = Config::height, W = Config::width, P = H * W, C = Config::channel, R = Config::res_channel;
  const double K = Config::kernel * Config::kernel, NC = Config::n_class;
  const int ks = Config::kernel % 2 == 0 ? Config::kernel + 1 : Config::kernel;
  double per_pos = NC * C * ((ks / 2) * ks + ((ks + 1) / 2) * (ks / 2));  // dense one-hot stem
  const double gated = C * R * K + R * 2 * C * K + (Config::conditioned ? Config::cond_res_channel * 2 * C : 0.0);
  per_pos += Config::n_block * Config::n_res_block * gated;
  if constexpr (Config::attention) {
    const double A = C / 2;
    const double key = (2 * C + 2) * C + C * 2 * C, query = (C + 2) * C + C * 2 * C;
    const double proj = A * ((C + 2) + 2 * (2 * C + 2)), out = C * C + A * C + C * 2 * C;
    per_pos += Config::n_block * (key + query + proj + out + 2 * P * A);  // q k^T and p v over all L
  } else {
    per_pos += Config::n_block * (C + 2) * C;
  }
  per_pos += C * NC;  // head
  double total = per_pos * P;
  if constexpr (Config::conditioned) {
    const double Q = P / 4, CR = Config::cond_res_channel;
    total += Q * (NC * CR * 9 + Config::n_cond_res_block * (CR * CR * 9 + CR * 2 * CR * 9));
  }
  return total;
}

// Weights (floats) a cached sampling step reads per position at batch 1 (see top).
template <class Model>
double streamed_weights(Model& m) {
  constexpr int kw = Model::ConfigType::kernel;
  double n = 0;
  m.visit([&](std::string_view name, auto& p) {
    const auto& v = p.value;
    const bool once = name.starts_with("cond_resnet.") || name.find(".condition.") != std::string_view::npos;
    if (once || name.ends_with("weight_g")) return;
    if (name.starts_with("horizontal.") || name.starts_with("vertical.")) {
      if (v.rank() == 4)
        n += static_cast<double>(v.dim(0)) * v.dim(2) * v.dim(3);  // one column per tap
      else
        n += static_cast<double>(v.numel());
      return;
    }
    const bool causal = name.find(".resblocks.") != std::string_view::npos && v.rank() == 4 && v.dim(2) > 1;
    if (causal) {
      const double taps = static_cast<double>(v.dim(2)) * v.dim(3), hidden = kw - kw / 2;
      n += static_cast<double>(v.numel()) * (taps - hidden) / taps;
    } else {
      n += static_cast<double>(v.numel());
    }
  });
  return n;
}

template <class Config>
struct Setup {
  using Model = models::PixelSNAIL<float, Cpu, Config>;
  static constexpr std::int64_t P = std::int64_t{Config::height} * Config::width;
  Context<Cpu> ctx{kThreads};
  Model m;
  Codes codes, cond;
  const Codes* c = nullptr;
  explicit Setup(std::int64_t B) {
    Generator g(1);
    m.init(g);
    codes = random_codes(B, Config::height, Config::width, Config::n_class, 2);
    if constexpr (Config::conditioned) {
      cond = random_codes(B, Config::height / 2, Config::width / 2, Config::n_class, 3);
      c = &cond;
    }
  }
  void common_counters(benchmark::State& state) {
    state.counters["weight_bytes"] = 4.0 * static_cast<double>(m.parameter_count());
    state.counters["streamed_bytes"] = 4.0 * streamed_weights(m);
    state.counters["positions"] = static_cast<double>(P);
    state.counters["peak_rss_MB"] = peak_rss_mb();
  }
};

template <class Config, bool BF16 = false>
void BM_Train(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  Setup<Config> s(B);
  s.ctx.training = true;
  s.m.set_precision(BF16 ? Precision::bf16 : Precision::fp32);
  nn::SoftmaxCrossEntropy<float> ce;
  train::Adam<float> adam(s.m, train::AdamOptions{.lr = 3e-4});
  auto step = [&] {
    adam.zero_grad();
    const auto& logits = s.m.forward(s.ctx, s.codes, s.c);
    benchmark::DoNotOptimize(ce.forward(s.ctx, logits, s.codes));
    s.m.backward(s.ctx, ce.backward(s.ctx));
    adam.step();
  };
  step();  // allocates every workspace and the Adam moments
  for (auto _ : state) step();
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOPS"] =
      benchmark::Counter(3 * 2 * forward_macs<Config>() * B, benchmark::Counter::kIsIterationInvariantRate);
  if (BF16) state.counters["bf16_native"] = ops::onednn::bf16_native();
  s.common_counters(state);
}

template <class Config>
void BM_Forward(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  Setup<Config> s(B);
  s.ctx.training = false;
  benchmark::DoNotOptimize(s.m.forward(s.ctx, s.codes, s.c).data());  // allocates
  for (auto _ : state) benchmark::DoNotOptimize(s.m.forward(s.ctx, s.codes, s.c).data());
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOPS"] =
      benchmark::Counter(2 * forward_macs<Config>() * B, benchmark::Counter::kIsIterationInvariantRate);
  s.common_counters(state);
}

template <class Config>
void BM_CachedSample(benchmark::State& state) {
  const std::int64_t B = state.range(0);
  Setup<Config> s(B);
  sample::CachedSampler<typename Setup<Config>::Model> sampler(s.m);
  double seconds = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    sampler.sample(s.ctx, sample::SampleRequest{&s.codes, s.c, 0, 0}, sample::SampleOptions{});
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(s.codes.data());
  }
  const double cpu = process_cpu_seconds() - cpu0;
  const double runs = static_cast<double>(state.iterations()), P = static_cast<double>(Setup<Config>::P);
  const double per_run = seconds / runs, w = streamed_weights(s.m);
  state.counters["s_per_img"] = per_run / B;
  state.counters["positions_per_s"] = P * B / per_run;
  state.counters["weight_GBps"] = 4.0 * w * P / per_run / 1e9;
  state.counters["FLOPS"] = 2.0 * w * P * B / per_run;
  state.counters["cpu_per_wall"] = cpu / seconds;
  s.common_counters(state);
}

template <class Config>
void register_prior(const std::string& prior) {
  const std::string base = "PixelSNAIL_" + prior + "_";
  benchmark::RegisterBenchmark((base + "Train").c_str(), BM_Train<Config>)
      ->ArgName("batch")
      ->Arg(1)
      ->Arg(8)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark((base + "TrainBF16").c_str(), BM_Train<Config, true>)
      ->ArgName("batch")
      ->Arg(1)
      ->Arg(8)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark((base + "Forward").c_str(), BM_Forward<Config>)
      ->ArgName("batch")
      ->Arg(1)
      ->Arg(8)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark((base + "CachedSample").c_str(), BM_CachedSample<Config>)
      ->ArgName("batch")
      ->Arg(1)
      ->Arg(8)
      ->Iterations(1)
      ->Unit(benchmark::kSecond)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_prior<models::TopReference>("Top");
  register_prior<models::BottomReference>("Bottom");
  register_prior<models::TopSmall>("TopSmall");
  register_prior<models::BottomSmall>("BottomSmall");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
