// vqvae2_train_prior: trains a PixelSNAIL prior (top, or bottom conditioned on
// the top codes) on a code file written by vqvae2_extract_codes.
// Writes <out>/checkpoint.bin (atomically, every epoch, on Ctrl-C and at the
// end), <out>/loss_steps.csv, <out>/loss_epochs.csv and <out>/loss_curve.png, and
// <out>/last_validation.json when a --minutes budget ends inside an epoch.
// The checkpoint records the level and the VQ-VAE-2 the codes came from, so a
// resumed run refuses codes of another VQ-VAE-2 and sampling refuses a prior
// trained on another model's codes.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli.hpp"
#include "configs.hpp"
#include "precision.hpp"
#include "training_loop.hpp"
#include "vqvae2/data/code_file.hpp"
#include "vqvae2/train/prior_trainer.hpp"

namespace fs = std::filesystem;
using namespace vqvae2;

namespace {

struct Args {
  std::string hier, codes, val_codes, out, config = "small", resume = "auto";
  int epochs = 10, batch = 16, threads = 2;
  double lr = 3e-4, minutes = 0;
  long long seed = 1;
  std::string precision = "fp32";
  Precision run_precision = Precision::fp32;
};

template <class Trainer>
void write_logs(const Args& a, const Trainer& t, const char* config_name) {
  cli::Csv steps("step,loss_nats,accuracy");
  const auto& sh = t.step_history();
  std::vector<double> step_loss;
  for (std::size_t i = 0; i < sh.size(); ++i) {
    steps.row(i + 1, sh[i].loss, sh[i].accuracy);
    step_loss.push_back(sh[i].loss);
  }
  steps.write((fs::path(a.out) / "loss_steps.csv").string());
  cli::Csv epochs("epoch,end_step,train_loss_nats,train_accuracy,val_nll_nats,val_bits_per_code,val_accuracy,seconds");
  const auto& eh = t.epoch_history();
  std::vector<double> val_step, val_nll;
  for (std::size_t i = 0; i < eh.size(); ++i) {
    const auto& e = eh[i];
    epochs.row(i + 1, e.end_step, e.train_loss, e.train_accuracy, e.val_nll, e.val_bits, e.val_accuracy, e.seconds);
    val_step.push_back(static_cast<double>(e.end_step));
    val_nll.push_back(e.val_nll);
  }
  epochs.write((fs::path(a.out) / "loss_epochs.csv").string());
  viz::PlotOptions po;
  po.title = std::string("PixelSNAIL ") + a.hier + " prior (" + config_name + ")";
  po.y_label = "cross-entropy (nats per code)";
  cli::write_loss_curve((fs::path(a.out) / "loss_curve.png").string(), step_loss, val_step, val_nll, "train loss",
                        "validation NLL", po);
}

template <class Config>
int run(const Args& a, const std::shared_ptr<const data::CodeSet>& codes, const data::CodeSet* val) {
  using Trainer = train::PriorTrainer<Config>;
  Context<Cpu> ctx(a.threads);
  train::PriorTrainOptions to;
  to.lr = a.lr;
  to.seed = static_cast<std::uint64_t>(a.seed);
  to.precision = a.run_precision;
  Trainer trainer(ctx, to);
  trainer.check_codes(*codes, a.codes, "");

  const std::string ckpt = (fs::path(a.out) / "checkpoint.bin").string();
  if (const std::string from = cli::resume_source(a.resume, ckpt); !from.empty()) {
    trainer.load(from);
    trainer.check_codes(*codes, a.codes, "the VQ-VAE-2 whose codes the checkpoint '" + from + "' was trained on");
    if (val)
      trainer.check_codes(*val, a.val_codes, "the VQ-VAE-2 whose codes the checkpoint '" + from + "' was trained on");
    std::fprintf(stderr, "resumed from %s at step %lld (epoch %lld, batch %lld)\n", from.c_str(),
                 static_cast<long long>(trainer.step_count()), static_cast<long long>(trainer.position.epoch),
                 static_cast<long long>(trainer.position.batch));
  } else {
    trainer.set_code_source(*codes);
    if (val) trainer.check_codes(*val, a.val_codes, "the VQ-VAE-2 of the training codes '" + a.codes + "'");
  }
  std::fprintf(stderr,
               "%s prior %s (%lld parameters): %lld training maps of %dx%d, %lld validation maps; VQ-VAE-2 %s "
               "(weight hash %s)\n",
               Trainer::hier(), Config::name, static_cast<long long>(trainer.model().parameter_count()),
               static_cast<long long>(codes->count()), Config::height, Config::width,
               static_cast<long long>(val ? val->count() : 0), trainer.code_fingerprint().c_str(),
               data::CodeSet::hex(trainer.code_weight_hash()).c_str());

  data::LoaderOptions lopt;
  lopt.batch_size = a.batch;
  lopt.seed = static_cast<std::uint64_t>(a.seed);
  VQVAE2_CHECK(codes->count() >= a.batch, "vqvae2_train_prior: '", a.codes, "' holds ", codes->count(),
               " code maps, fewer than one batch of ", a.batch, ".");
  data::CodeBatchLoader loader(codes, Trainer::kLevel, Config::conditioned, lopt);
  loader.seek(trainer.position.epoch, trainer.position.batch);
  fs::create_directories(a.out);

  struct Job {
    const Args& a;
    Trainer& trainer;
    data::CodeBatchLoader& loader;
    const data::CodeSet* val;
    const std::string& ckpt;
    double loss_sum = 0, acc_sum = 0;
    std::int64_t steps = 0;

    std::int64_t batches_per_epoch() { return loader.batches_per_epoch(); }
    data::LoaderPosition& position() { return trainer.position; }
    std::int64_t step_count() { return trainer.step_count(); }
    long long step(std::string& text) {
      loader.next();
      const auto s = trainer.step(loader.batch(), loader.condition());
      loss_sum += s.loss;
      acc_sum += s.accuracy;
      ++steps;
      char extra[128];
      std::snprintf(extra, sizeof extra, "ep %lld loss %.4f nats acc %.3f",
                    static_cast<long long>(trainer.position.epoch + 1), s.loss, s.accuracy);
      text = extra;
      return loader.batch().dim(0);
    }
    void end_of_budget() {
      if (!val) return;
      const auto v = trainer.evaluate(*val, a.batch);
      const double epochs = static_cast<double>(trainer.position.epoch) +
                            static_cast<double>(trainer.position.batch) / static_cast<double>(batches_per_epoch());
      std::fprintf(stderr,
                   "at the end of the budget (step %lld, epoch %.2f): validation NLL %.4f nats/code, %.4f bits/code, "
                   "top-1 accuracy %.3f\n",
                   static_cast<long long>(trainer.step_count()), epochs, v.nll, v.bits, v.accuracy);
      char json[256];
      std::snprintf(json, sizeof json,
                    "{\"step\": %lld, \"epochs\": %.4f, \"val_nll_nats\": %.6f, \"val_bits_per_code\": %.6f, "
                    "\"val_accuracy\": %.6f}\n",
                    static_cast<long long>(trainer.step_count()), epochs, v.nll, v.bits, v.accuracy);
      io::write_file_atomic((fs::path(a.out) / "last_validation.json").string(), json);
    }
    void end_epoch(double seconds) {
      train::PriorEpochStats e;
      e.train_loss = steps ? loss_sum / static_cast<double>(steps) : NAN;
      e.train_accuracy = steps ? acc_sum / static_cast<double>(steps) : NAN;
      if (val) {
        const auto v = trainer.evaluate(*val, a.batch);
        e.val_nll = v.nll;
        e.val_bits = v.bits;
        e.val_accuracy = v.accuracy;
      }
      e.seconds = seconds;
      trainer.add_epoch(e);
      std::fprintf(stderr,
                   "epoch %lld: train loss %.4f nats/code (accuracy %.3f); validation NLL %.4f nats/code, %.4f "
                   "bits/code, top-1 accuracy %.3f; %.0f s\n",
                   static_cast<long long>(trainer.position.epoch + 1), e.train_loss, e.train_accuracy, e.val_nll,
                   e.val_bits, e.val_accuracy, e.seconds);
      loss_sum = acc_sum = 0;
      steps = 0;
    }
    void save() {
      trainer.save(ckpt);
      write_logs(a, trainer, Config::name);
    }
  } job{a, trainer, loader, val, ckpt};
  cli::run_epochs(job, {a.epochs, a.minutes, ckpt});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  cli::Parser p("vqvae2_train_prior", "train a PixelSNAIL prior on the codes written by vqvae2_extract_codes");
  p.option("hier", &a.hier, "which prior: top, or bottom (conditioned on the top codes) (required)")
      .option("codes", &a.codes, "training code file from vqvae2_extract_codes (required)")
      .option("val-codes", &a.val_codes, "validation code file (same VQ-VAE-2): NLL and accuracy per epoch")
      .option("out", &a.out, "output folder: checkpoint, loss CSVs, loss curve (required)")
      .option("config", &a.config, "prior configuration: reference, small, tiny")
      .option("epochs", &a.epochs, "number of epochs (the run stops earlier at --minutes)")
      .option("minutes", &a.minutes, "training time budget in minutes (0: none)")
      .option("batch", &a.batch, "batch size")
      .option("lr", &a.lr, "Adam learning rate")
      .option("seed", &a.seed, "seed of initialisation, dropout and shuffling")
      .option("resume", &a.resume, "auto (resume <out>/checkpoint.bin if present), none, or a checkpoint path")
      .option("threads", &a.threads, "CPU threads")
      .option("precision", &a.precision, cli::kPrecisionHelp);
  try {
    if (!p.parse(argc, argv)) return 0;
    VQVAE2_CHECK(a.hier == "top" || a.hier == "bottom", "vqvae2_train_prior: --hier must be top or bottom, got '",
                 a.hier, "'.");
    VQVAE2_CHECK(!a.codes.empty() && !a.out.empty(),
                 "vqvae2_train_prior: --codes and --out are required (see --help).");
    VQVAE2_CHECK(a.batch > 0, "vqvae2_train_prior: --batch must be positive, got ", a.batch, ".");
    a.run_precision = cli::resolve_precision("vqvae2_train_prior", a.precision);
    auto codes = std::make_shared<const data::CodeSet>(data::read_code_file(a.codes));
    std::unique_ptr<data::CodeSet> val;
    if (!a.val_codes.empty()) val = std::make_unique<data::CodeSet>(data::read_code_file(a.val_codes));
    return cli::with_prior_family(a.config, [&]<class Top, class Bottom>() {
      return a.hier == "top" ? run<Top>(a, codes, val.get()) : run<Bottom>(a, codes, val.get());
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
