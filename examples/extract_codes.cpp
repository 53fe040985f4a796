// vqvae2_extract_codes: encodes one OASIS split with a trained VQ-VAE-2 and
// writes its top and bottom code maps to a code file (data/code_file.hpp), the
// training data of the PixelSNAIL priors. The images are read from disk one
// batch at a time; only the codes are kept. The file is written atomically.
#include <cstdio>
#include <filesystem>

#include "cli.hpp"
#include "configs.hpp"
#include "precision.hpp"
#include "vqvae2/data/code_file.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"

namespace fs = std::filesystem;
using namespace vqvae2;

namespace {

struct Args {
  std::string checkpoint, data, split = "train", out;
  int batch = 32, threads = 2;
  bool any_size = false;
  std::string precision = "fp32";
  Precision run_precision = Precision::fp32;
};

template <class Config>
int run(const Args& a) {
  Context<Cpu> ctx(a.threads);
  train::VQVAETrainer<Config> trainer(ctx, {});
  trainer.model().set_precision(a.run_precision);
  trainer.load(a.checkpoint);
  const auto files = data::list_pngs(data::oasis_split_folder(a.data, a.split));
  data::LoadOptions lo;
  lo.allow_other_sizes = a.any_size;
  lo.threads = a.threads;
  std::fprintf(stderr, "encoding %zu images of %s/%s with %s (configuration %s, step %lld)\n", files.size(),
               a.data.c_str(), a.split.c_str(), a.checkpoint.c_str(), Config::name,
               static_cast<long long>(trainer.step_count()));
  cli::Progress progress(static_cast<long long>(files.size()));
  data::CodeSet codes =
      data::encode_image_files(ctx, trainer.model(), files, a.batch, lo,
                               [&](std::int64_t done, std::int64_t) { progress.update(done, done, ""); });
  progress.finish();
  if (fs::path(a.out).has_parent_path()) fs::create_directories(fs::path(a.out).parent_path());
  data::write_code_file(a.out, codes);
  std::printf("%s: %lld images, top codes %dx%d, bottom codes %dx%d, %d codes, VQ-VAE-2 %s (weight hash %s)\n",
              a.out.c_str(), static_cast<long long>(codes.count()), codes.top_height, codes.top_width,
              codes.bottom_height, codes.bottom_width, codes.num_codes, codes.vqvae_fingerprint.c_str(),
              data::CodeSet::hex(codes.vqvae_weight_hash).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  cli::Parser p("vqvae2_extract_codes",
                "encode an OASIS split with a trained VQ-VAE-2 into a code file for the priors");
  p.option("checkpoint", &a.checkpoint, "checkpoint written by vqvae2_train_vqvae (required)")
      .option("data", &a.data, "folder holding keras_png_slices_{train,validate,test} (required)")
      .option("split", &a.split, "split to encode: train, validate or test")
      .option("out", &a.out, "code file to write (required)")
      .option("batch", &a.batch, "images per batch (only one batch of images is in memory)")
      .option("threads", &a.threads, "CPU threads")
      .option("precision", &a.precision, cli::kPrecisionHelp)
      .flag("any-size", &a.any_size, "accept any common image size whose sides are multiples of 8 (default: 256x256)");
  try {
    if (!p.parse(argc, argv)) return 0;
    VQVAE2_CHECK(!a.checkpoint.empty() && !a.data.empty() && !a.out.empty(),
                 "vqvae2_extract_codes: --checkpoint, --data and --out are required (see --help).");
    a.run_precision = cli::resolve_precision("vqvae2_extract_codes", a.precision);
    VQVAE2_CHECK(a.batch > 0, "vqvae2_extract_codes: --batch must be positive, got ", a.batch, ".");
    const std::string fingerprint = train::Checkpoint::load(a.checkpoint).fingerprint();
    return cli::with_config(fingerprint, true, [&]<class Config>() { return run<Config>(a); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
