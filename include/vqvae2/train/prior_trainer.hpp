// PriorTrainer<Config>: one PixelSNAIL prior training run on a code file, as a
// library object. The run state and its checkpoints are TrainingRun's (the same
// mechanism as the VQ-VAE-2's trainer); this adds the step (forward -> softmax
// cross-entropy -> backward -> Adam), the evaluation (NLL in nats and bits per
// code, top-1 accuracy) and, in checkpoints, the level ("hier": top or bottom,
// from Config::conditioned), the dropout stream and the VQ-VAE-2 whose codes the
// prior learns (fingerprint and weight hash of the code file), so that neither
// training nor sampling can mix a prior with another model's codes.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vqvae2/data/code_file.hpp"
#include "vqvae2/models/pixelsnail.hpp"
#include "vqvae2/nn/loss.hpp"
#include "vqvae2/train/adam.hpp"
#include "vqvae2/train/checkpoint.hpp"
#include "vqvae2/train/training_run.hpp"

namespace vqvae2::train {

struct PriorTrainOptions {
  double lr = 3e-4;  // the reference's
  std::uint64_t seed = 1;
  Precision precision = Precision::fp32;  // of the prior's convolutions (core/precision.hpp)
};

struct PriorStepStats {
  double loss = 0;      // mean cross-entropy, nats per code
  double accuracy = 0;  // top-1

  static constexpr int kColumns = 2;
  void to_row(double* r) const {
    r[0] = loss;
    r[1] = accuracy;
  }
  static PriorStepStats from_row(const double* r) { return {r[0], r[1]}; }
};

struct PriorEvaluation {
  double nll = NAN;   // nats per code
  double bits = NAN;  // bits per code (nll / ln 2)
  double accuracy = NAN;
};

struct PriorEpochStats {
  double train_loss = 0, train_accuracy = 0, val_nll = NAN, val_bits = NAN, val_accuracy = NAN, seconds = 0;
  std::int64_t end_step = 0;

  static constexpr int kColumns = 7;
  void to_row(double* r) const {
    const double row[kColumns] = {
        train_loss, train_accuracy, val_nll, val_bits, val_accuracy, seconds, static_cast<double>(end_step)};
    for (int j = 0; j < kColumns; ++j) r[j] = row[j];
  }
  static PriorEpochStats from_row(const double* r) {
    return {r[0], r[1], r[2], r[3], r[4], r[5], static_cast<std::int64_t>(r[6])};
  }
};

template <class Config, class T = float>
class PriorTrainer : public TrainingRun<models::PixelSNAIL<T, Cpu, Config>, PriorStepStats, PriorEpochStats, T> {
  using Run = TrainingRun<models::PixelSNAIL<T, Cpu, Config>, PriorStepStats, PriorEpochStats, T>;

 public:
  using Model = models::PixelSNAIL<T, Cpu, Config>;
  static constexpr data::CodeLevel kLevel = Config::conditioned ? data::CodeLevel::bottom : data::CodeLevel::top;
  static const char* hier() { return data::code_level_name(kLevel); }

  PriorTrainer(Context<Cpu>& ctx, const PriorTrainOptions& opt) : Run(opt.seed, AdamOptions{opt.lr}), ctx_(ctx) {
    this->model().init(this->generator());
    this->model().set_precision(opt.precision);
    this->add_generator("dropout", &this->model().dropout_generator());
  }

  // The VQ-VAE-2 whose codes this prior models (from the code file of a new run;
  // restored by load()).
  void set_code_source(const data::CodeSet& codes) {
    code_fingerprint_ = codes.vqvae_fingerprint;
    code_hash_ = codes.vqvae_weight_hash;
  }
  const std::string& code_fingerprint() const { return code_fingerprint_; }
  std::uint64_t code_weight_hash() const { return code_hash_; }

  // Refuses a code set this prior cannot train on: wrong map size or code-book
  // size, or (once a source is known) codes of another VQ-VAE-2. `path` names the
  // file, `source` what the run's source is (e.g. "the VQ-VAE-2 of checkpoint 'x'").
  void check_codes(const data::CodeSet& codes, const std::string& path, std::string_view source) const {
    const bool top = kLevel == data::CodeLevel::top;
    const int h = top ? codes.top_height : codes.bottom_height, w = top ? codes.top_width : codes.bottom_width;
    VQVAE2_CHECK(h == Config::height && w == Config::width, "Code file '", path, "' has ", hier(), " maps of ", h, "x",
                 w, " but the ", hier(), " prior '", Config::name, "' models ", Config::height, "x", Config::width,
                 " maps.");
    VQVAE2_CHECK(codes.num_codes == Config::n_class, "Code file '", path, "' has ", codes.num_codes,
                 " codes per map but the prior '", Config::name, "' models ", Config::n_class, ".");
    if (Config::conditioned)
      VQVAE2_CHECK(codes.top_height * 2 == Config::height && codes.top_width * 2 == Config::width, "Code file '", path,
                   "' has top maps of ", codes.top_height, "x", codes.top_width, ", not half the bottom maps.");
    if (!code_fingerprint_.empty()) codes.check_source(code_fingerprint_, code_hash_, path, source);
  }

  // One optimiser step on code maps [B, H, W] (and, for the bottom prior, the top maps).
  PriorStepStats step(const Tensor<std::int32_t, Cpu>& codes, const Tensor<std::int32_t, Cpu>* condition = nullptr) {
    auto& adam = this->optimizer();
    ctx_.training = true;
    adam.zero_grad();
    const auto& logits = this->model().forward(ctx_, codes, condition);
    PriorStepStats s;
    s.loss = ce_.forward(ctx_, logits, codes);
    s.accuracy = ce_.accuracy();
    VQVAE2_CHECK(std::isfinite(s.loss), "PriorTrainer: the loss became ", s.loss, " at step ", adam.step_count() + 1,
                 "; lower the learning rate or resume from the last checkpoint.");
    this->model().backward(ctx_, ce_.backward(ctx_));
    adam.step();
    this->add_step(s);
    return s;
  }

  // Negative log-likelihood and top-1 accuracy over every map of a code set, in
  // evaluation mode (no dropout).
  PriorEvaluation evaluate(const data::CodeSet& set, std::int64_t batch) {
    VQVAE2_CHECK(batch > 0 && set.count() > 0, "PriorTrainer::evaluate: empty code set or batch.");
    const bool was_training = ctx_.training;
    ctx_.training = false;
    double nll = 0, correct = 0;
    std::int64_t positions = 0;
    std::vector<std::int64_t> idx;
    try {
      for (std::int64_t first = 0; first < set.count(); first += batch) {
        const std::int64_t count = std::min(batch, set.count() - first);
        idx.resize(static_cast<std::size_t>(count));
        for (std::int64_t i = 0; i < count; ++i) idx[static_cast<std::size_t>(i)] = first + i;
        data::fill_code_batch(set, kLevel, idx.data(), count, eval_codes_,
                              Config::conditioned ? &eval_condition_ : nullptr);
        const auto& logits = this->model().forward(ctx_, eval_codes_, Config::conditioned ? &eval_condition_ : nullptr);
        const double n = static_cast<double>(eval_codes_.numel());
        nll += ce_.forward(ctx_, logits, eval_codes_) * n;
        correct += ce_.accuracy() * n;
        positions += eval_codes_.numel();
      }
    } catch (...) {
      ctx_.training = was_training;
      throw;
    }
    ctx_.training = was_training;
    PriorEvaluation e;
    e.nll = nll / static_cast<double>(positions);
    e.bits = e.nll / std::log(2.0);
    e.accuracy = correct / static_cast<double>(positions);
    return e;
  }

  // Everything a resumed run needs, written atomically.
  void save(const std::string& path) {
    Checkpoint c = this->make_checkpoint("pixelsnail");
    c.set_string("hier", hier());
    c.set_string("code_vqvae_fingerprint", code_fingerprint_);
    c.set_u64("code_vqvae_weight_hash", code_hash_);
    c.save(path);
  }

  // The level and code source a prior checkpoint records, without a model (for
  // programs that pick the configuration from the checkpoint, and for samplers).
  struct Info {
    std::string hier, fingerprint, code_fingerprint;
    std::uint64_t code_weight_hash = 0;
  };
  static Info read_info(const Checkpoint& c, const std::string& path) {
    for (const char* key : {"hier", "code_vqvae_fingerprint", "code_vqvae_weight_hash"})
      VQVAE2_CHECK(c.has_meta(key), "Checkpoint '", path, "' lacks the prior state '", key, "'.");
    return {c.get_string("hier"), c.fingerprint(), c.get_string("code_vqvae_fingerprint"),
            c.get_u64("code_vqvae_weight_hash")};
  }

  // Restores a run saved by save(); on any error nothing is changed.
  void load(const std::string& path) {
    Checkpoint c = Run::open_checkpoint(path, "pixelsnail", "PixelSNAIL prior");
    const Info info = read_info(c, path);
    VQVAE2_CHECK(info.hier == hier(), "Checkpoint '", path, "' holds a ", info.hier, " prior, but this run trains the ",
                 hier(), " prior.");
    this->check_checkpoint(c, path);
    this->apply_checkpoint(c);
    code_fingerprint_ = info.code_fingerprint;
    code_hash_ = info.code_weight_hash;
  }

 private:
  Context<Cpu>& ctx_;
  nn::SoftmaxCrossEntropy<T, Cpu> ce_;
  Tensor<std::int32_t, Cpu> eval_codes_, eval_condition_;
  std::string code_fingerprint_;
  std::uint64_t code_hash_ = 0;
};

}  // namespace vqvae2::train
