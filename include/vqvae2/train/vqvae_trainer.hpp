// VQVAETrainer<Config>: one VQ-VAE-2 training run as a library object: model,
// Adam, learning-rate schedule, loss history and checkpoints that resume
// exactly (parameters, code books, optimiser moments, RNG and loader position).
// The run state and its checkpointing are TrainingRun's (training_run.hpp),
// shared with the priors' trainer; this adds the step, the evaluation and the
// code books (and their restart generators) in the checkpoint.
// The example programs add the command line, progress bar and pictures.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/loader.hpp"
#include "vqvae2/models/vqvae2.hpp"
#include "vqvae2/nn/loss.hpp"
#include "vqvae2/train/adam.hpp"
#include "vqvae2/train/checkpoint.hpp"
#include "vqvae2/train/training_run.hpp"

namespace vqvae2::train {

struct VQVAETrainOptions {
  double lr = 3e-4;
  double commitment_weight = 0.25;
  std::uint64_t seed = 1;
  int dead_code_restart = 0;              // re-seed a code unused for this many steps (0: off)
  Precision precision = Precision::fp32;  // of the model's convolutions (core/precision.hpp)
};

struct VQVAEStepStats {
  double loss = 0, mse = 0, commit_top = 0, commit_bottom = 0;
  double perplexity_top = 0, perplexity_bottom = 0;
  std::int64_t usage_top = 0, usage_bottom = 0;

  static constexpr int kColumns = 8;  // a history row (training_run.hpp)
  void to_row(double* r) const {
    const double row[kColumns] = {loss,
                                  mse,
                                  commit_top,
                                  commit_bottom,
                                  perplexity_top,
                                  perplexity_bottom,
                                  static_cast<double>(usage_top),
                                  static_cast<double>(usage_bottom)};
    for (int j = 0; j < kColumns; ++j) r[j] = row[j];
  }
  static VQVAEStepStats from_row(const double* r) {
    return {r[0], r[1], r[2], r[3], r[4], r[5], static_cast<std::int64_t>(r[6]), static_cast<std::int64_t>(r[7])};
  }
};

// One row of the per-epoch history.
struct VQVAEEpochStats {
  double train_loss = 0, train_mse = 0, val_loss = NAN, val_mse = NAN, seconds = 0;
  std::int64_t end_step = 0;  // optimiser steps done when the epoch ended

  static constexpr int kColumns = 6;
  void to_row(double* r) const {
    const double row[kColumns] = {train_loss, train_mse, val_loss, val_mse, seconds, static_cast<double>(end_step)};
    for (int j = 0; j < kColumns; ++j) r[j] = row[j];
  }
  static VQVAEEpochStats from_row(const double* r) {
    return {r[0], r[1], r[2], r[3], r[4], static_cast<std::int64_t>(r[5])};
  }
};

template <class Config, class T = float>
class VQVAETrainer : public TrainingRun<models::VQVAE2<T, Cpu, Config>, VQVAEStepStats, VQVAEEpochStats, T> {
  using Run = TrainingRun<models::VQVAE2<T, Cpu, Config>, VQVAEStepStats, VQVAEEpochStats, T>;

 public:
  using Model = models::VQVAE2<T, Cpu, Config>;
  static constexpr int kEpochColumns = VQVAEEpochStats::kColumns;

  VQVAETrainer(Context<Cpu>& ctx, const VQVAETrainOptions& opt)
      : Run(opt.seed, AdamOptions{opt.lr}), ctx_(ctx), opt_(opt) {
    this->model().init(this->generator());
    this->model().set_precision(opt.precision);
    for (auto [name, q] : quantizers()) {
      if (opt.dead_code_restart > 0) q->set_dead_code_restart(opt.dead_code_restart);
      this->add_generator(name + ".restart", &q->restart_generator());
    }
  }

  // One optimiser step on batch x ([N, 1, H, W] in [-1, 1]).
  VQVAEStepStats step(const Tensor<T, Cpu>& x) {
    auto& model = this->model();
    auto& adam = this->optimizer();
    ctx_.training = true;
    adam.zero_grad();
    const auto& recon = model.forward(ctx_, x);
    VQVAEStepStats s;
    s.mse = mse_.forward(ctx_, recon, x);
    s.commit_top = model.commitment_top();
    s.commit_bottom = model.commitment_bottom();
    s.loss = s.mse + opt_.commitment_weight * (s.commit_top + s.commit_bottom);
    VQVAE2_CHECK(std::isfinite(s.loss), "VQVAETrainer: the loss became ", s.loss, " at step ", adam.step_count() + 1,
                 " (mse ", s.mse, ", commitments ", s.commit_top, ", ", s.commit_bottom,
                 "); lower the learning rate or resume from the last checkpoint.");
    model.backward(ctx_, mse_.backward(ctx_), opt_.commitment_weight);
    adam.step();
    s.perplexity_top = model.quantizer_top().perplexity();
    s.perplexity_bottom = model.quantizer_bottom().perplexity();
    s.usage_top = model.quantizer_top().code_usage();
    s.usage_bottom = model.quantizer_bottom().code_usage();
    this->add_step(s);
    return s;
  }

  // Mean loss and MSE over a whole image set in evaluation mode (code books fixed).
  std::pair<double, double> evaluate(const data::ImageSet& set, std::int64_t batch) {
    auto& model = this->model();
    const bool was_training = ctx_.training;
    ctx_.training = false;
    data::SequentialBatches<T> batches(set, batch);
    double mse_sum = 0, loss_sum = 0;
    std::int64_t images = 0;
    while (batches.next()) {
      const auto& x = batches.batch();
      const auto& recon = model.forward(ctx_, x);
      double m = mse_.forward(ctx_, recon, x);
      double l = m + opt_.commitment_weight * (model.commitment_top() + model.commitment_bottom());
      mse_sum += m * static_cast<double>(x.dim(0));
      loss_sum += l * static_cast<double>(x.dim(0));
      images += x.dim(0);
    }
    ctx_.training = was_training;
    return {loss_sum / static_cast<double>(images), mse_sum / static_cast<double>(images)};
  }

  // Everything a resumed run needs, written atomically.
  void save(const std::string& path) {
    Checkpoint c = this->make_checkpoint("vqvae2");
    BufferView buffers{this->model()};
    c.add_module(buffers, "buffers");
    c.save(path);
  }

  // Restores a run saved by save(); on any error nothing is changed.
  void load(const std::string& path) {
    Checkpoint c = Run::open_checkpoint(path, "vqvae2", "VQ-VAE-2");
    BufferView buffers{this->model()};
    this->check_checkpoint(c, path);
    expect_module(c, path, buffers, "buffers");
    this->apply_checkpoint(c);
    c.apply_to(buffers, Model::fingerprint(), "buffers");
  }

 private:
  std::array<std::pair<std::string, typename Model::Quantizer*>, 2> quantizers() {
    return {{{"quantize_t", &this->model().quantizer_top()}, {"quantize_b", &this->model().quantizer_bottom()}}};
  }

  // Presents the quantisers' code books as parameters so checkpoints can walk them.
  struct BufferView {
    Model& model;
    template <class F>
    void visit(F&& f) {
      model.visit_buffers([&](std::string_view name, auto& tensor) {
        struct Holder {
          std::decay_t<decltype(tensor)> value;
        } holder{tensor};  // aliases the buffer's storage
        f(name, holder);
      });
    }
  };

  Context<Cpu>& ctx_;
  VQVAETrainOptions opt_;
  nn::MSELoss<T, Cpu> mse_;
};

}  // namespace vqvae2::train
