// vqvae2_generate: new brain slices from a trained VQ-VAE-2 and its two PixelSNAIL
// priors: top codes from the top prior, bottom codes from the bottom prior given the
// top codes, then the VQ-VAE-2's decoder. Writes <out>/grid.png and <out>/sample_NNN.png
// and prints the time of each stage. Three further uses, on slices of a data split:
//   --from-test        keep a slice's top codes, resample only the bottom codes
//                      (grid rows: original, reconstruction, resampled bottoms)
//   --complete ROWS    keep the first ROWS rows of the top code map (2*ROWS of the
//                      bottom map) and sample the rest (rows: original, the kept part,
//                      completions)
//   --likelihood       the priors' per-position NLL as heat maps beside each slice,
//                      and bits per code per slice in <out>/likelihood.csv
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.hpp"
#include "configs.hpp"
#include "precision.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/data/code_file.hpp"
#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/png.hpp"
#include "vqvae2/metrics/ssim.hpp"
#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/sample/cached_sampler.hpp"
#include "vqvae2/sample/naive_sampler.hpp"
#include "vqvae2/sample/prior_checkpoint.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"
#include "vqvae2/viz/image_grid.hpp"

namespace fs = std::filesystem;
using namespace vqvae2;

namespace {

struct Args {
  std::string vqvae, top, bottom, out = "runs/generate", data, split = "test", sampler = "cached";
  int n = 16, batch = 8, threads = 2, top_k = 512, complete = -1, count = 8, variants = 3;
  double temperature = 1.0;
  long long seed = 1;
  bool from_test = false, likelihood = false;
  std::string precision = "fp32";
  Precision run_precision = Precision::fp32;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

using Codes = Tensor<std::int32_t, Cpu>;

template <class VQConfig, class TopConfig, class BottomConfig>
class SliceGenerator {
 public:
  using TopPrior = models::PixelSNAIL<float, Cpu, TopConfig>;
  using BottomPrior = models::PixelSNAIL<float, Cpu, BottomConfig>;
  static constexpr int kTopH = TopConfig::height, kTopW = TopConfig::width;
  static constexpr int kBotH = BottomConfig::height, kBotW = BottomConfig::width;
  static constexpr int kImgH = 4 * kBotH, kImgW = 4 * kBotW;

  SliceGenerator(const Args& a) : a_(a), ctx_(a.threads), vq_(ctx_, {}) {
    vq_.load(a.vqvae);
    const std::uint64_t hash = data::weight_hash(vq_.model());
    const std::string fp = vq_.model().fingerprint();
    if (!a.top.empty()) {
      sample::load_prior_weights(a.top, "top", fp, hash, top_);
      have_top_ = true;
    }
    sample::load_prior_weights(a.bottom, "bottom", fp, hash, bottom_);
    // The decoder and the priors' whole-network passes (naive sampler, likelihood); the
    // cached sampler computes its columns in fp32 whatever the policy.
    vq_.model().set_precision(a.run_precision);
    top_.set_precision(a.run_precision);
    bottom_.set_precision(a.run_precision);
    ctx_.training = false;
  }

  // Top codes [B, kTopH, kTopW] sampled from position start on (earlier ones kept).
  void sample_top(Codes& top, std::int64_t start, std::int64_t first) {
    VQVAE2_CHECK(have_top_, "vqvae2_generate: sampling top codes needs the top prior (--top).");
    sample::SampleRequest r{&top, nullptr, start, first};
    if (a_.sampler == "naive")
      sample::sample_naive(ctx_, top_, r, options(TopConfig::n_class, 0));
    else
      sample::CachedSampler<TopPrior>(top_).sample(ctx_, r, options(TopConfig::n_class, 0));
  }
  void sample_bottom(Codes& bottom, const Codes& top, std::int64_t start, std::int64_t first) {
    sample::SampleRequest r{&bottom, &top, start, first};
    if (a_.sampler == "naive")
      sample::sample_naive(ctx_, bottom_, r, options(BottomConfig::n_class, 1));
    else
      sample::CachedSampler<BottomPrior>(bottom_).sample(ctx_, r, options(BottomConfig::n_class, 1));
  }
  // Decoded images as bytes, appended to out.
  void decode(const Codes& top, const Codes& bottom, std::vector<std::uint8_t>& out) {
    const auto& img = vq_.model().decode_codes(ctx_, top, bottom);
    const std::size_t at = out.size();
    out.resize(at + static_cast<std::size_t>(img.numel()));
    metrics::unit_to_bytes(img.data(), img.numel(), out.data() + at);
  }

  int run() {
    fs::create_directories(a_.out);
    if (a_.likelihood) return likelihood();
    if (a_.from_test || a_.complete >= 0) return from_slices();
    return new_samples();
  }

 private:
  sample::SampleOptions options(int n_class, std::uint64_t level) const {
    sample::SampleOptions o;
    o.temperature = a_.temperature;
    o.top_k = a_.top_k == n_class ? 0 : a_.top_k;
    // The two levels draw from different streams of the same seed.
    o.seed = static_cast<std::uint64_t>(a_.seed) * 2 + level;
    o.validate(n_class);
    return o;
  }

  int new_samples() {
    std::vector<std::uint8_t> images;
    double t_top = 0, t_bottom = 0, t_decode = 0;
    for (std::int64_t first = 0; first < a_.n; first += a_.batch) {
      const std::int64_t B = std::min<std::int64_t>(a_.batch, a_.n - first);
      Codes top(Shape{B, kTopH, kTopW}), bottom(Shape{B, kBotH, kBotW});
      auto t0 = std::chrono::steady_clock::now();
      sample_top(top, 0, first);
      t_top += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      sample_bottom(bottom, top, 0, first);
      t_bottom += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      decode(top, bottom, images);
      t_decode += seconds_since(t0);
      std::fprintf(stderr, "sampled %lld/%d\n", static_cast<long long>(first + B), a_.n);
    }
    const std::int64_t pixels = static_cast<std::int64_t>(kImgH) * kImgW;
    std::vector<std::vector<viz::GreyView>> rows;
    for (int i = 0; i < a_.n; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "sample_%03d.png", i);
      data::write_png_grey(fs::path(a_.out) / name, images.data() + i * pixels, kImgW, kImgH);
      if (i % 8 == 0) rows.emplace_back();
      rows.back().push_back({images.data() + i * pixels, kImgH, kImgW});
    }
    viz::write_grid_png((fs::path(a_.out) / "grid.png").string(), rows);
    std::printf(
        "%d samples (%s sampler, batch %d, temperature %g, top-k %d): top codes %.1f s, bottom codes %.1f s, "
        "decoding %.2f s; %.2f s per image\n-> %s/grid.png and sample_NNN.png\n",
        a_.n, a_.sampler.c_str(), a_.batch, a_.temperature, a_.top_k, t_top, t_bottom, t_decode,
        (t_top + t_bottom + t_decode) / a_.n, a_.out.c_str());
    return 0;
  }

  // The first `count` slices of the split (sorted by name), encoded.
  data::CodeSet encode_slices(std::vector<std::uint8_t>& originals) {
    VQVAE2_CHECK(!a_.data.empty(), "vqvae2_generate: --from-test, --complete and --likelihood need --data.");
    auto files = data::list_pngs(data::oasis_split_folder(a_.data, a_.split));
    if (a_.count > 0 && static_cast<int>(files.size()) > a_.count) files.resize(static_cast<std::size_t>(a_.count));
    data::LoadOptions lo;
    lo.threads = a_.threads;
    for (const auto& f : files) {
      data::GreyImage img = data::read_png_grey(f);
      VQVAE2_CHECK(img.width == kImgW && img.height == kImgH, "vqvae2_generate: '", f.string(), "' is ", img.width, "x",
                   img.height, ", but these priors are for ", kImgW, "x", kImgH, " images.");
      originals.insert(originals.end(), img.pixels.begin(), img.pixels.end());
    }
    return data::encode_image_files(ctx_, vq_.model(), files, a_.batch, lo, [](std::int64_t, std::int64_t) {});
  }

  static Codes codes_of(const data::CodeSet& s, bool top_level, std::int64_t i) {
    const std::int64_t h = top_level ? s.top_height : s.bottom_height, w = top_level ? s.top_width : s.bottom_width;
    Codes c(Shape{1, h, w});
    const std::uint16_t* src = top_level ? s.top_map(i) : s.bottom_map(i);
    for (std::int64_t k = 0; k < h * w; ++k) c[k] = src[k];
    return c;
  }

  int from_slices() {
    if (a_.complete >= 0)
      VQVAE2_CHECK(a_.complete >= 1 && a_.complete < kTopH, "vqvae2_generate: --complete ", a_.complete,
                   " is outside the top code map's rows 1..", kTopH - 1, ".");
    VQVAE2_CHECK(a_.variants >= 1 && a_.variants <= 16, "vqvae2_generate: --variants must be 1..16, got ", a_.variants,
                 ".");
    std::vector<std::uint8_t> originals;
    const data::CodeSet set = encode_slices(originals);
    const std::int64_t pixels = static_cast<std::int64_t>(kImgH) * kImgW;
    std::vector<std::vector<std::uint8_t>> tiles;  // per slice: reconstruction, (kept part), variants
    double t_sample = 0;
    for (std::int64_t i = 0; i < set.count(); ++i) {
      const Codes top0 = codes_of(set, true, i), bottom0 = codes_of(set, false, i);
      std::vector<std::uint8_t> row;
      decode(top0, bottom0, row);  // the reconstruction
      if (a_.complete >= 0) {
        // The kept part: the slice with the rows below the cut darkened.
        std::vector<std::uint8_t> kept(originals.begin() + i * pixels, originals.begin() + (i + 1) * pixels);
        const int cut = a_.complete * (kImgH / kTopH);
        for (int y = cut; y < kImgH; ++y)
          for (int x = 0; x < kImgW; ++x) kept[static_cast<std::size_t>(y) * kImgW + x] /= 4;
        row.insert(row.end(), kept.begin(), kept.end());
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (int v = 0; v < a_.variants; ++v) {
        const std::int64_t sample_index = i * a_.variants + v;
        Codes top = top0.clone(), bottom = bottom0.clone();
        if (a_.complete >= 0) {
          sample_top(top, static_cast<std::int64_t>(a_.complete) * kTopW, sample_index);
          sample_bottom(bottom, top, static_cast<std::int64_t>(2 * a_.complete) * kBotW, sample_index);
        } else {
          sample_bottom(bottom, top, 0, sample_index);
        }
        decode(top, bottom, row);
      }
      t_sample += seconds_since(t0);
      tiles.push_back(std::move(row));
      std::fprintf(stderr, "slice %lld/%lld (%s)\n", static_cast<long long>(i + 1), static_cast<long long>(set.count()),
                   set.names[static_cast<std::size_t>(i)].c_str());
    }
    std::vector<std::vector<viz::GreyView>> rows;
    for (std::int64_t i = 0; i < set.count(); ++i) {
      rows.emplace_back();
      rows.back().push_back({originals.data() + i * pixels, kImgH, kImgW});
      const auto& t = tiles[static_cast<std::size_t>(i)];
      for (std::size_t k = 0; k * pixels < t.size(); ++k) rows.back().push_back({t.data() + k * pixels, kImgH, kImgW});
    }
    const std::string name = a_.complete >= 0 ? "completion_grid.png" : "resampled_bottom_grid.png";
    viz::write_grid_png((fs::path(a_.out) / name).string(), rows);
    std::printf(
        "%lld slices of %s, %d variants each (%s): sampling %.1f s in all\n-> %s/%s (columns: original, "
        "reconstruction, %s%d samples)\n",
        static_cast<long long>(set.count()), a_.split.c_str(), a_.variants,
        a_.complete >= 0 ? "completion" : "bottom codes resampled given the top codes", t_sample, a_.out.c_str(),
        name.c_str(), a_.complete >= 0 ? "the kept rows, " : "", a_.variants);
    return 0;
  }

  // Per-position NLL (nats) of the codes under a prior, into nll [H * W].
  template <class Prior>
  static void position_nll(const Tensor<float, Cpu>& logits, const Codes& codes, std::vector<double>& nll) {
    constexpr int NC = Prior::ConfigType::n_class;
    const std::int64_t P = codes.numel();
    nll.assign(static_cast<std::size_t>(P), 0.0);
    for (std::int64_t p = 0; p < P; ++p) {
      double m = -INFINITY;
      for (int k = 0; k < NC; ++k) m = std::max(m, static_cast<double>(logits[k * P + p]));
      double s = 0;
      for (int k = 0; k < NC; ++k) s += std::exp(static_cast<double>(logits[k * P + p]) - m);
      nll[static_cast<std::size_t>(p)] = m + std::log(s) - static_cast<double>(logits[codes[p] * P + p]);
    }
  }

  // An NLL map upscaled to the image (nearest), bright = unusual; fixed scale 0..max_nats.
  static void heat_map(const std::vector<double>& nll, int h, int w, double max_nats, std::uint8_t* out) {
    const int sy = kImgH / h, sx = kImgW / w;
    for (int y = 0; y < kImgH; ++y)
      for (int x = 0; x < kImgW; ++x) {
        const double v = nll[static_cast<std::size_t>(y / sy) * w + x / sx] / max_nats;
        out[static_cast<std::size_t>(y) * kImgW + x] =
            static_cast<std::uint8_t>(std::lround(255 * std::clamp(v, 0.0, 1.0)));
      }
  }

  int likelihood() {
    VQVAE2_CHECK(have_top_, "vqvae2_generate: --likelihood needs the top prior (--top).");
    std::vector<std::uint8_t> originals;
    const data::CodeSet set = encode_slices(originals);
    const std::int64_t pixels = static_cast<std::int64_t>(kImgH) * kImgW;
    // Heat maps on one scale for all slices: log(n_class) nats, the uniform prior's NLL.
    const double max_nats = std::log(static_cast<double>(TopConfig::n_class));
    std::vector<std::uint8_t> heat(static_cast<std::size_t>(set.count() * 2 * pixels));
    std::ostringstream csv;
    csv << "file,top_bits_per_code,bottom_bits_per_code,bits_per_code\n";
    std::vector<double> nll_t, nll_b;
    double sum_all = 0;
    for (std::int64_t i = 0; i < set.count(); ++i) {
      const Codes top = codes_of(set, true, i), bottom = codes_of(set, false, i);
      position_nll<TopPrior>(top_.forward(ctx_, top), top, nll_t);
      position_nll<BottomPrior>(bottom_.forward(ctx_, bottom, &top), bottom, nll_b);
      double st = 0, sb = 0;
      for (double v : nll_t) st += v;
      for (double v : nll_b) sb += v;
      const double bt = st / nll_t.size() / std::log(2.0), bb = sb / nll_b.size() / std::log(2.0);
      const double ball = (st + sb) / static_cast<double>(nll_t.size() + nll_b.size()) / std::log(2.0);
      sum_all += ball;
      csv << set.names[static_cast<std::size_t>(i)] << ',' << bt << ',' << bb << ',' << ball << '\n';
      heat_map(nll_t, kTopH, kTopW, max_nats, heat.data() + (2 * i) * pixels);
      heat_map(nll_b, kBotH, kBotW, max_nats, heat.data() + (2 * i + 1) * pixels);
    }
    io::write_file_atomic((fs::path(a_.out) / "likelihood.csv").string(), csv.str());
    std::vector<std::vector<viz::GreyView>> rows;
    for (std::int64_t i = 0; i < set.count(); ++i)
      rows.push_back({{originals.data() + i * pixels, kImgH, kImgW},
                      {heat.data() + (2 * i) * pixels, kImgH, kImgW},
                      {heat.data() + (2 * i + 1) * pixels, kImgH, kImgW}});
    viz::write_grid_png((fs::path(a_.out) / "likelihood_grid.png").string(), rows);
    std::printf(
        "%lld slices of %s: mean %.3f bits per code -> %s/likelihood.csv, likelihood_grid.png (columns: "
        "slice, top-prior NLL, bottom-prior NLL; white = %.2f nats or more)\n",
        static_cast<long long>(set.count()), a_.split.c_str(), sum_all / set.count(), a_.out.c_str(), max_nats);
    return 0;
  }

  const Args& a_;
  Context<Cpu> ctx_;
  train::VQVAETrainer<VQConfig> vq_;
  TopPrior top_;
  BottomPrior bottom_;
  bool have_top_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  cli::Parser p("vqvae2_generate", "generate brain slices with a trained VQ-VAE-2 and its PixelSNAIL priors");
  p.option("vqvae", &a.vqvae, "checkpoint written by vqvae2_train_vqvae (required)")
      .option("top", &a.top, "top prior checkpoint (vqvae2_train_prior --hier top)")
      .option("bottom", &a.bottom, "bottom prior checkpoint (vqvae2_train_prior --hier bottom; required)")
      .option("out", &a.out, "output folder")
      .option("n", &a.n, "number of new samples")
      .option("batch", &a.batch, "images sampled together")
      .option("temperature", &a.temperature, "sampling temperature (> 0)")
      .option("top-k", &a.top_k, "sample among the k most likely codes (1..number of codes; all by default)")
      .option("seed", &a.seed, "seed of the sampling streams")
      .option("sampler", &a.sampler, "cached (incremental) or naive (the whole prior per position)")
      .option("data", &a.data, "folder holding keras_png_slices_* (for --from-test, --complete, --likelihood)")
      .option("split", &a.split, "split whose slices --from-test, --complete and --likelihood use")
      .option("count", &a.count, "number of slices for --from-test, --complete, --likelihood (0: all)")
      .option("variants", &a.variants, "samples per slice for --from-test and --complete")
      .flag("from-test", &a.from_test, "keep each slice's top codes and resample the bottom codes")
      .option("complete", &a.complete,
              "keep the first ROWS rows of the top code map (2*ROWS bottom) and sample the rest")
      .flag("likelihood", &a.likelihood, "per-position NLL heat maps and bits per code of real slices")
      .option("precision", &a.precision,
              std::string(cli::kPrecisionHelp) +
                  "; for the decoder, --sampler naive and --likelihood (the cached sampler computes in fp32)");
  try {
    if (!p.parse(argc, argv)) return 0;
    VQVAE2_CHECK(!a.vqvae.empty() && !a.bottom.empty(), "vqvae2_generate: --vqvae and --bottom are required.");
    a.run_precision = cli::resolve_precision("vqvae2_generate", a.precision);
    VQVAE2_CHECK(a.sampler == "cached" || a.sampler == "naive",
                 "vqvae2_generate: --sampler must be cached or naive, got '", a.sampler, "'.");
    VQVAE2_CHECK(a.n >= 1 && a.batch >= 1, "vqvae2_generate: --n and --batch must be positive.");
    VQVAE2_CHECK(std::isfinite(a.temperature) && a.temperature > 0,
                 "vqvae2_generate: --temperature must be a positive number, got ", a.temperature, ".");
    const bool need_top = !a.from_test;
    VQVAE2_CHECK(!need_top || !a.top.empty(), "vqvae2_generate: ",
                 a.likelihood ? "--likelihood" : (a.complete >= 0 ? "--complete" : "sampling new images"),
                 " needs the top prior (--top): the bottom prior is conditioned on top codes.");
    const std::string vq_fp = train::Checkpoint::load(a.vqvae).fingerprint();
    const std::string family = cli::prior_family_of(a.bottom, "bottom");
    if (!a.top.empty())
      VQVAE2_CHECK(cli::prior_family_of(a.top, "top") == family, "vqvae2_generate: the top prior '", a.top,
                   "' and the bottom prior '", a.bottom, "' are of different configurations.");
    return cli::with_config(vq_fp, true, [&]<class VQConfig>() {
      return cli::with_prior_family(family, [&]<class TopConfig, class BottomConfig>() {
        // Only matching pairs are instantiated (a build-time saving); others are refused.
        if constexpr (TopConfig::n_class == VQConfig::num_codes && BottomConfig::n_class == VQConfig::num_codes) {
          SliceGenerator<VQConfig, TopConfig, BottomConfig> g(a);
          return g.run();
        } else {
          vqvae2::fail("vqvae2_generate: the priors model ", TopConfig::n_class, " codes but the VQ-VAE-2 '", a.vqvae,
                       "' has ", VQConfig::num_codes, ".");
          return 1;
        }
      });
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
