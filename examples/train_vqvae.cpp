// vqvae2_train_vqvae: trains the VQ-VAE-2 on an OASIS-layout folder.
// Writes <out>/checkpoint.bin (atomically, every epoch, on Ctrl-C and at the
// end), <out>/loss_steps.csv, <out>/loss_epochs.csv and <out>/loss_curve.png.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "cli.hpp"
#include "configs.hpp"
#include "precision.hpp"
#include "training_loop.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/train/schedule.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"
#include "vqvae2/viz/plot.hpp"

namespace fs = std::filesystem;
using namespace vqvae2;

namespace {

struct Args {
  std::string data, out = "runs/vqvae2", config = "oasis256", resume = "auto", schedule = "constant";
  int epochs = 10, batch = 16, threads = 2, dead_code_restart = 0;
  double lr = 3e-4, minutes = 0, commitment = 0.25;
  long long seed = 1, max_images = 0;
  bool no_validation = false;
  std::string precision = "fp32";
  Precision run_precision = Precision::fp32;
};

template <class Trainer>
void write_logs(const Args& a, const Trainer& t) {
  cli::Csv steps("step,loss,mse,commit_top,commit_bottom,perplexity_top,perplexity_bottom,usage_top,usage_bottom");
  const auto& sh = t.step_history();
  std::vector<double> step_loss;
  for (std::size_t i = 0; i < sh.size(); ++i) {
    const auto& s = sh[i];
    steps.row(i + 1, s.loss, s.mse, s.commit_top, s.commit_bottom, s.perplexity_top, s.perplexity_bottom, s.usage_top,
              s.usage_bottom);
    step_loss.push_back(s.loss);
  }
  steps.write((fs::path(a.out) / "loss_steps.csv").string());
  cli::Csv epochs("epoch,end_step,train_loss,train_mse,val_loss,val_mse,seconds");
  const auto& eh = t.epoch_history();
  std::vector<double> val_step, val_loss;
  for (std::size_t i = 0; i < eh.size(); ++i) {
    const auto& e = eh[i];
    epochs.row(i + 1, e.end_step, e.train_loss, e.train_mse, e.val_loss, e.val_mse, e.seconds);
    val_step.push_back(static_cast<double>(e.end_step));
    val_loss.push_back(e.val_loss);
  }
  epochs.write((fs::path(a.out) / "loss_epochs.csv").string());
  viz::PlotOptions po;
  po.title = "VQ-VAE-2 (" + a.config + ") loss";
  char y_label[64];
  std::snprintf(y_label, sizeof y_label, "loss (MSE + %g commitment)", a.commitment);
  po.y_label = y_label;
  po.log_y = true;
  cli::write_loss_curve((fs::path(a.out) / "loss_curve.png").string(), step_loss, val_step, val_loss, "train loss",
                        "validation loss", po);
}

template <class Config>
int run(const Args& a) {
  Context<Cpu> ctx(a.threads);
  data::LoadOptions lo;
  std::fprintf(stderr, "loading %s ...\n", a.data.c_str());
  auto train_set = std::make_shared<data::ImageSet>(data::load_oasis_split(a.data, "train", lo));
  if (a.max_images > 0 && train_set->count > a.max_images) {
    train_set->count = a.max_images;
    train_set->pixels.resize(static_cast<std::size_t>(a.max_images * train_set->image_bytes()));
    train_set->names.resize(static_cast<std::size_t>(a.max_images));
  }
  data::ImageSet val_set;
  bool have_val = !a.no_validation && data::has_oasis_split(a.data, "validate");
  if (have_val) val_set = data::load_oasis_split(a.data, "validate", lo);
  std::fprintf(stderr, "train: %lld images, validate: %lld images, %dx%d, configuration %s (%s)\n",
               static_cast<long long>(train_set->count), static_cast<long long>(have_val ? val_set.count : 0),
               train_set->width, train_set->height, Config::name, models::config_fingerprint<Config>().c_str());

  train::VQVAETrainOptions to;
  to.lr = a.lr;
  to.commitment_weight = a.commitment;
  to.seed = static_cast<std::uint64_t>(a.seed);
  to.dead_code_restart = a.dead_code_restart;
  to.precision = a.run_precision;
  train::VQVAETrainer<Config> trainer(ctx, to);

  fs::create_directories(a.out);
  const std::string ckpt = (fs::path(a.out) / "checkpoint.bin").string();
  if (const std::string from = cli::resume_source(a.resume, ckpt); !from.empty()) {
    trainer.load(from);
    std::fprintf(stderr, "resumed from %s at step %lld (epoch %lld, batch %lld)\n", from.c_str(),
                 static_cast<long long>(trainer.step_count()), static_cast<long long>(trainer.position.epoch),
                 static_cast<long long>(trainer.position.batch));
  }

  data::LoaderOptions lopt;
  lopt.batch_size = a.batch;
  lopt.seed = static_cast<std::uint64_t>(a.seed);
  data::BatchLoader<float> loader(train_set, lopt);
  const std::int64_t per_epoch = loader.batches_per_epoch();
  VQVAE2_CHECK(per_epoch > 0, "vqvae2_train_vqvae: the train split has ", train_set->count,
               " images, fewer than one batch of ", a.batch, ".");
  loader.seek(trainer.position.epoch, trainer.position.batch);
  train::LrSchedule schedule = train::ConstantLr{a.lr};
  if (a.schedule == "cycle")
    schedule = train::WarmupCosineLr::cycle(a.lr, std::max<std::int64_t>(1, a.epochs * per_epoch));
  else
    VQVAE2_CHECK(a.schedule == "constant", "vqvae2_train_vqvae: unknown --schedule '", a.schedule,
                 "' (constant or cycle).");

  struct Job {
    const Args& a;
    train::VQVAETrainer<Config>& trainer;
    data::BatchLoader<float>& loader;
    const train::LrSchedule& schedule;
    const data::ImageSet& val_set;
    bool have_val;
    const std::string& ckpt;
    double loss_sum = 0, mse_sum = 0;
    std::int64_t steps = 0;

    std::int64_t batches_per_epoch() { return loader.batches_per_epoch(); }
    data::LoaderPosition& position() { return trainer.position; }
    std::int64_t step_count() { return trainer.step_count(); }
    long long step(std::string& text) {
      const auto& x = loader.next();
      trainer.set_lr(train::lr_at(schedule, trainer.step_count()));
      auto s = trainer.step(x);
      loss_sum += s.loss;
      mse_sum += s.mse;
      ++steps;
      char extra[160];
      std::snprintf(extra, sizeof extra, "ep %lld loss %.4f mse %.4f ppl %.0f/%.0f",
                    static_cast<long long>(trainer.position.epoch + 1), s.loss, s.mse, s.perplexity_top,
                    s.perplexity_bottom);
      text = extra;
      return x.dim(0);
    }
    void end_epoch(double seconds) {
      train::VQVAEEpochStats e;
      e.train_loss = steps ? loss_sum / static_cast<double>(steps) : NAN;
      e.train_mse = steps ? mse_sum / static_cast<double>(steps) : NAN;
      if (have_val) std::tie(e.val_loss, e.val_mse) = trainer.evaluate(val_set, a.batch);
      e.seconds = seconds;
      trainer.add_epoch(e);
      std::fprintf(stderr, "epoch %lld: train loss %.5f (mse %.5f), validation loss %.5f (mse %.5f), %.0f s\n",
                   static_cast<long long>(trainer.position.epoch + 1), e.train_loss, e.train_mse, e.val_loss, e.val_mse,
                   e.seconds);
      loss_sum = mse_sum = 0;
      steps = 0;
    }
    void save() {
      trainer.save(ckpt);
      write_logs(a, trainer);
    }
  } job{a, trainer, loader, schedule, val_set, have_val, ckpt};
  cli::run_epochs(job, {a.epochs, a.minutes, ckpt});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  cli::Parser p("vqvae2_train_vqvae", "train the VQ-VAE-2 on an OASIS-layout folder of 256x256 greyscale PNG slices");
  p.option("data", &a.data, "folder holding keras_png_slices_{train,validate,test} (required)")
      .option("out", &a.out, "output folder: checkpoint, loss CSVs, loss curve")
      .option("config", &a.config, "model configuration: oasis256 (reference), small, tiny")
      .option("epochs", &a.epochs, "number of epochs (the run stops earlier at --minutes)")
      .option("minutes", &a.minutes, "training time budget in minutes (0: none)")
      .option("batch", &a.batch, "batch size")
      .option("lr", &a.lr, "Adam learning rate")
      .option("schedule", &a.schedule, "learning-rate schedule: constant or cycle (warm-up + cosine over --epochs)")
      .option("commitment", &a.commitment, "weight of the commitment losses")
      .option("dead-code-restart", &a.dead_code_restart, "re-seed codes unused for this many steps (0: off)")
      .option("seed", &a.seed, "seed of initialisation and shuffling")
      .option("resume", &a.resume, "auto (resume <out>/checkpoint.bin if present), none, or a checkpoint path")
      .option("threads", &a.threads, "CPU threads")
      .option("precision", &a.precision, cli::kPrecisionHelp)
      .option("max-images", &a.max_images, "use only the first N training images (0: all)")
      .flag("no-validation", &a.no_validation, "skip the validation pass at each epoch end");
  try {
    if (!p.parse(argc, argv)) return 0;
    VQVAE2_CHECK(!a.data.empty(), "vqvae2_train_vqvae: --data is required (see --help).");
    a.run_precision = cli::resolve_precision("vqvae2_train_vqvae", a.precision);
    return cli::with_config(a.config, false, [&]<class Config>() { return run<Config>(a); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
