// VQVAETrainer<Config>: one VQ-VAE-2 training run as a library object: model,
// Adam, learning-rate schedule, loss history and checkpoints that resume
// exactly (parameters, code books, optimiser moments, RNG and loader position).
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

namespace vqvae2::train {

struct VQVAETrainOptions {
  double lr = 3e-4;
  double commitment_weight = 0.25;
  std::uint64_t seed = 1;
  int dead_code_restart = 0;  // re-seed a code unused for this many steps (0: off)
};

struct VQVAEStepStats {
  double loss = 0, mse = 0, commit_top = 0, commit_bottom = 0;
  double perplexity_top = 0, perplexity_bottom = 0;
  std::int64_t usage_top = 0, usage_bottom = 0;
};

// One row of the per-epoch history.
struct VQVAEEpochStats {
  double train_loss = 0, train_mse = 0, val_loss = NAN, val_mse = NAN, seconds = 0;
  std::int64_t end_step = 0;  // optimiser steps done when the epoch ended
};

template <class Config, class T = float>
class VQVAETrainer {
 public:
  using Model = models::VQVAE2<T, Cpu, Config>;
  static constexpr int kEpochColumns = 6;

  VQVAETrainer(Context<Cpu>& ctx, const VQVAETrainOptions& opt)
      : ctx_(ctx), opt_(opt), gen_(opt.seed), adam_(model_, AdamOptions{opt.lr}) {
    model_.init(gen_);
    if (opt.dead_code_restart > 0) {
      model_.quantizer_top().set_dead_code_restart(opt.dead_code_restart);
      model_.quantizer_bottom().set_dead_code_restart(opt.dead_code_restart);
    }
  }

  Model& model() { return model_; }
  Adam<T, Cpu>& optimizer() { return adam_; }
  std::int64_t step_count() const { return adam_.step_count(); }
  const std::vector<VQVAEStepStats>& step_history() const { return steps_; }
  const std::vector<VQVAEEpochStats>& epoch_history() const { return epochs_; }
  // Records a finished epoch; its end_step is the current step count.
  void add_epoch(VQVAEEpochStats e) {
    e.end_step = adam_.step_count();
    epochs_.push_back(e);
  }
  // Where the next batch comes from; stored in checkpoints.
  data::LoaderPosition position;

  // One optimiser step on batch x ([N, 1, H, W] in [-1, 1]).
  VQVAEStepStats step(const Tensor<T, Cpu>& x) {
    ctx_.training = true;
    adam_.zero_grad();
    const auto& recon = model_.forward(ctx_, x);
    VQVAEStepStats s;
    s.mse = mse_.forward(ctx_, recon, x);
    s.commit_top = model_.commitment_top();
    s.commit_bottom = model_.commitment_bottom();
    s.loss = s.mse + opt_.commitment_weight * (s.commit_top + s.commit_bottom);
    VQVAE2_CHECK(std::isfinite(s.loss), "VQVAETrainer: the loss became ", s.loss, " at step ", adam_.step_count() + 1,
                 " (mse ", s.mse, ", commitments ", s.commit_top, ", ", s.commit_bottom,
                 "); lower the learning rate or resume from the last checkpoint.");
    model_.backward(ctx_, mse_.backward(ctx_), opt_.commitment_weight);
    adam_.step();
    s.perplexity_top = model_.quantizer_top().perplexity();
    s.perplexity_bottom = model_.quantizer_bottom().perplexity();
    s.usage_top = model_.quantizer_top().code_usage();
    s.usage_bottom = model_.quantizer_bottom().code_usage();
    steps_.push_back(s);
    return s;
  }

  void set_lr(double lr) { adam_.set_lr(lr); }

  // Mean loss and MSE over a whole image set in evaluation mode (code books fixed).
  std::pair<double, double> evaluate(const data::ImageSet& set, std::int64_t batch) {
    const bool was_training = ctx_.training;
    ctx_.training = false;
    data::SequentialBatches<T> batches(set, batch);
    double mse_sum = 0, loss_sum = 0;
    std::int64_t images = 0;
    while (batches.next()) {
      const auto& x = batches.batch();
      const auto& recon = model_.forward(ctx_, x);
      double m = mse_.forward(ctx_, recon, x);
      double l = m + opt_.commitment_weight * (model_.commitment_top() + model_.commitment_bottom());
      mse_sum += m * static_cast<double>(x.dim(0));
      loss_sum += l * static_cast<double>(x.dim(0));
      images += x.dim(0);
    }
    ctx_.training = was_training;
    return {loss_sum / static_cast<double>(images), mse_sum / static_cast<double>(images)};
  }

  // Everything a resumed run needs, written atomically.
  void save(const std::string& path) {
    Checkpoint c(Model::fingerprint());
    c.set_string("kind", "vqvae2");
    c.set_u64("step", static_cast<std::uint64_t>(adam_.step_count()));
    c.set_u64("loader_epoch", static_cast<std::uint64_t>(position.epoch));
    c.set_u64("loader_batch", static_cast<std::uint64_t>(position.batch));
    c.set_u64("rng_seed", gen_.seed());
    c.set_u64("rng_offset", gen_.offset());
    c.set_f64("lr", adam_.lr());
    for (auto [name, q] : quantizers()) {
      c.set_u64(name + ".restart_seed", q->restart_generator().seed());
      c.set_u64(name + ".restart_offset", q->restart_generator().offset());
    }
    c.add_module(model_);
    BufferView buffers{model_};
    c.add_module(buffers, "buffers");
    c.add_optimizer(adam_);
    c.add_tensor("history.steps", pack_steps());
    c.add_tensor("history.epochs", pack_epochs());
    c.save(path);
  }

  // Restores a run saved by save(); on any error nothing is changed.
  void load(const std::string& path) {
    Checkpoint c = Checkpoint::load(path);
    VQVAE2_CHECK(c.has_meta("kind") && c.get_string("kind") == "vqvae2", "Checkpoint '", path,
                 "' is not a VQ-VAE-2 training checkpoint.");
    // Validate everything before changing anything: each apply_to checks its own
    // set completely, so check the later sets' names and shapes up front.
    BufferView buffers{model_};
    VQVAE2_CHECK(c.fingerprint() == Model::fingerprint(), "Checkpoint '", path, "' was written for configuration '",
                 c.fingerprint(), "' but this model is '", Model::fingerprint(), "'.");
    for (std::string key :
         {"step", "loader_epoch", "loader_batch", "rng_seed", "rng_offset", "lr", "quantize_t.restart_seed",
          "quantize_t.restart_offset", "quantize_b.restart_seed", "quantize_b.restart_offset"})
      VQVAE2_CHECK(c.has_meta(key), "Checkpoint '", path, "' lacks the training state '", key, "'.");
    for (const char* key : {"history.steps", "history.epochs"})
      VQVAE2_CHECK(c.has_tensor(key), "Checkpoint '", path, "' lacks the tensor '", key, "'.");
    auto expect = [&](std::string_view name, const Shape& shape) {
      VQVAE2_CHECK(c.has_tensor(name), "Checkpoint '", path, "' has no tensor '", name, "'.");
      VQVAE2_CHECK(c.shape(name) == shape, "Checkpoint '", path, "' has '", name, "' with shape ", c.shape(name).str(),
                   ", expected ", shape.str(), ".");
    };
    buffers.visit([&](std::string_view name, auto& h) { expect("buffers." + std::string(name), h.value.shape()); });
    adam_.visit_state([&](std::string_view name, auto& t) { expect("adam." + std::string(name), t.shape()); });
    c.apply_to(model_, Model::fingerprint());
    c.apply_to(buffers, Model::fingerprint(), "buffers");
    c.apply_to_optimizer(adam_);
    adam_.set_step_count(static_cast<std::int64_t>(c.get_u64("step")));
    adam_.set_lr(c.get_f64("lr"));
    position.epoch = static_cast<std::int64_t>(c.get_u64("loader_epoch"));
    position.batch = static_cast<std::int64_t>(c.get_u64("loader_batch"));
    gen_.set_state(c.get_u64("rng_seed"), c.get_u64("rng_offset"));
    for (auto [name, q] : quantizers())
      q->restart_generator().set_state(c.get_u64(name + ".restart_seed"), c.get_u64(name + ".restart_offset"));
    unpack_steps(c.get_tensor<double>("history.steps"));
    unpack_epochs(c.get_tensor<double>("history.epochs"));
  }

 private:
  std::array<std::pair<std::string, typename Model::Quantizer*>, 2> quantizers() {
    return {{{"quantize_t", &model_.quantizer_top()}, {"quantize_b", &model_.quantizer_bottom()}}};
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

  static constexpr int kStepColumns = 8;
  Tensor<double, Cpu> pack_steps() const {
    Tensor<double, Cpu> t(Shape{static_cast<std::int64_t>(steps_.size()), kStepColumns});
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const auto& s = steps_[i];
      double row[kStepColumns] = {s.loss,
                                  s.mse,
                                  s.commit_top,
                                  s.commit_bottom,
                                  s.perplexity_top,
                                  s.perplexity_bottom,
                                  static_cast<double>(s.usage_top),
                                  static_cast<double>(s.usage_bottom)};
      for (int j = 0; j < kStepColumns; ++j) t[static_cast<std::int64_t>(i) * kStepColumns + j] = row[j];
    }
    return t;
  }
  void unpack_steps(const Tensor<double, Cpu>& t) {
    steps_.clear();
    for (std::int64_t i = 0; i < t.dim(0); ++i) {
      const double* r = t.data() + i * kStepColumns;
      steps_.push_back(
          {r[0], r[1], r[2], r[3], r[4], r[5], static_cast<std::int64_t>(r[6]), static_cast<std::int64_t>(r[7])});
    }
  }
  Tensor<double, Cpu> pack_epochs() const {
    Tensor<double, Cpu> t(Shape{static_cast<std::int64_t>(epochs_.size()), kEpochColumns});
    for (std::size_t i = 0; i < epochs_.size(); ++i) {
      const auto& e = epochs_[i];
      double row[kEpochColumns] = {e.train_loss, e.train_mse, e.val_loss,
                                   e.val_mse,    e.seconds,   static_cast<double>(e.end_step)};
      for (int j = 0; j < kEpochColumns; ++j) t[static_cast<std::int64_t>(i) * kEpochColumns + j] = row[j];
    }
    return t;
  }
  void unpack_epochs(const Tensor<double, Cpu>& t) {
    epochs_.clear();
    for (std::int64_t i = 0; i < t.dim(0); ++i) {
      const double* r = t.data() + i * kEpochColumns;
      epochs_.push_back({r[0], r[1], r[2], r[3], r[4], static_cast<std::int64_t>(r[5])});
    }
  }

  Context<Cpu>& ctx_;
  VQVAETrainOptions opt_;
  Generator gen_;
  Model model_;
  Adam<T, Cpu> adam_;
  nn::MSELoss<T, Cpu> mse_;
  std::vector<VQVAEStepStats> steps_;
  std::vector<VQVAEEpochStats> epochs_;
};

}  // namespace vqvae2::train
