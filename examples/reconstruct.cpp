// vqvae2_reconstruct: reconstructs one split with a trained VQ-VAE-2 and scores
// every image as its saved 8-bit PNG would be scored: SSIM (scikit-image's
// defaults: 7x7 uniform window, data_range 255; and the Gaussian variant) and PSNR.
// Writes <out>/metrics.csv, <out>/summary.json, <out>/grid.png and, with
// --save-images, <out>/images/<source name>.png.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.hpp"
#include "configs.hpp"
#include "precision.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/data/png.hpp"
#include "vqvae2/metrics/ssim.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"
#include "vqvae2/viz/image_grid.hpp"

namespace fs = std::filesystem;
using namespace vqvae2;

namespace {

struct Args {
  std::string checkpoint, data, split = "test", out;
  int batch = 16, grid = 8, threads = 2;
  bool save_images = false;
  std::string precision = "fp32";
  Precision run_precision = Precision::fp32;
};

template <class Config>
int run(const Args& a) {
  Context<Cpu> ctx(a.threads);
  train::VQVAETrainer<Config> trainer(ctx, {});
  trainer.load(a.checkpoint);
  trainer.model().set_precision(a.run_precision);
  auto& model = trainer.model();
  data::ImageSet set = data::load_oasis_split(a.data, a.split);
  fs::create_directories(a.out);
  if (a.save_images) fs::create_directories(fs::path(a.out) / "images");

  metrics::Ssim ssim_uniform;
  metrics::Ssim ssim_gaussian(metrics::SsimOptions::wang2004());
  const int h = set.height, w = set.width;
  const std::int64_t pixels = static_cast<std::int64_t>(h) * w;
  std::vector<std::uint8_t> recon_bytes(static_cast<std::size_t>(set.count * pixels));
  std::vector<double> ssim(set.count), ssim_g(set.count), psnr(set.count);

  ctx.training = false;  // evaluation: code books are not updated
  data::SequentialBatches<float> batches(set, a.batch);
  cli::Progress progress(set.count);
  while (batches.next()) {
    const auto& y = model.forward(ctx, batches.batch());
    for (std::int64_t b = 0; b < batches.count(); ++b) {
      const std::int64_t i = batches.first() + b;
      std::uint8_t* r = recon_bytes.data() + i * pixels;
      metrics::unit_to_bytes(y.data() + b * pixels, pixels, r);
      ssim[i] = ssim_uniform(set.image(i), r, h, w);
      ssim_g[i] = ssim_gaussian(set.image(i), r, h, w);
      psnr[i] = metrics::psnr(set.image(i), r, h, w);
      if (a.save_images) data::write_png_grey(fs::path(a.out) / "images" / set.names[i], r, w, h);
    }
    progress.update(batches.first() + batches.count(), batches.first() + batches.count(), "");
  }
  progress.finish();

  std::ostringstream csv;
  csv << "file,ssim,ssim_gaussian,psnr\n";
  double mean = 0, mean_g = 0, mean_psnr = 0, lo = 1e9, hi = -1e9;
  for (std::int64_t i = 0; i < set.count; ++i) {
    csv << set.names[i] << ',' << ssim[i] << ',' << ssim_g[i] << ',' << psnr[i] << '\n';
    mean += ssim[i];
    mean_g += ssim_g[i];
    mean_psnr += psnr[i];
    lo = std::min(lo, ssim[i]);
    hi = std::max(hi, ssim[i]);
  }
  const double n = static_cast<double>(set.count);
  mean /= n;
  mean_g /= n;
  mean_psnr /= n;
  io::write_file_atomic((fs::path(a.out) / "metrics.csv").string(), csv.str());
  char json[1024];
  std::snprintf(
      json, sizeof json,
      "{\n  \"split\": \"%s\",\n  \"images\": %lld,\n  \"configuration\": \"%s\",\n  \"checkpoint\": \"%s\",\n"
      "  \"training_steps\": %lld,\n  \"ssim_mean\": %.6f,\n  \"ssim_min\": %.6f,\n  \"ssim_max\": %.6f,\n"
      "  \"ssim_gaussian_mean\": %.6f,\n  \"psnr_mean_db\": %.4f\n}\n",
      a.split.c_str(), static_cast<long long>(set.count), Config::name, a.checkpoint.c_str(),
      static_cast<long long>(trainer.step_count()), mean, lo, hi, mean_g, mean_psnr);
  io::write_file_atomic((fs::path(a.out) / "summary.json").string(), std::string(json));

  // Grid: originals in the top row, reconstructions below.
  std::vector<viz::GreyView> top, bottom;
  for (std::int64_t i = 0; i < std::min<std::int64_t>(a.grid, set.count); ++i) {
    top.push_back({set.image(i), h, w});
    bottom.push_back({recon_bytes.data() + i * pixels, h, w});
  }
  viz::write_grid_png((fs::path(a.out) / "grid.png").string(), {top, bottom});
  std::printf("%s split: %lld images, mean SSIM %.4f (min %.4f, max %.4f), Gaussian SSIM %.4f, PSNR %.2f dB\n",
              a.split.c_str(), static_cast<long long>(set.count), mean, lo, hi, mean_g, mean_psnr);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  cli::Parser p("vqvae2_reconstruct", "reconstruct a split with a trained VQ-VAE-2 and score it (SSIM, PSNR)");
  p.option("checkpoint", &a.checkpoint, "checkpoint written by vqvae2_train_vqvae (required)")
      .option("data", &a.data, "folder holding keras_png_slices_{train,validate,test} (required)")
      .option("split", &a.split, "split to reconstruct: train, validate or test")
      .option("out", &a.out, "output folder (default: <checkpoint folder>/reconstruct_<split>)")
      .option("batch", &a.batch, "batch size")
      .option("grid", &a.grid, "number of images in grid.png")
      .option("threads", &a.threads, "CPU threads")
      .option("precision", &a.precision, cli::kPrecisionHelp)
      .flag("save-images", &a.save_images, "also write every reconstruction as an 8-bit PNG under its source name");
  try {
    if (!p.parse(argc, argv)) return 0;
    VQVAE2_CHECK(!a.checkpoint.empty() && !a.data.empty(), "vqvae2_reconstruct: --checkpoint and --data are required.");
    a.run_precision = cli::resolve_precision("vqvae2_reconstruct", a.precision);
    if (a.out.empty()) a.out = (fs::path(a.checkpoint).parent_path() / ("reconstruct_" + a.split)).string();
    const std::string fingerprint = train::Checkpoint::load(a.checkpoint).fingerprint();
    return cli::with_config(fingerprint, true, [&]<class Config>() { return run<Config>(a); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
