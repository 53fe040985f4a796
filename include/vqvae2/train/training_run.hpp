// TrainingRun<Model, StepStats, EpochStats>: the state every training run of
// the library shares, whatever it trains (the VQ-VAE-2, the PixelSNAIL priors):
// the model, its Adam optimiser, the initialisation generator and any further
// generators (dropout, dead-code restarts), the loader position, and the
// per-step and per-epoch histories. It writes all of it into a checkpoint and
// restores it exactly, validating everything before changing anything.
//
// A trainer derives from it and adds its own step, evaluation and whatever its
// checkpoints carry beyond the common part:
//   save:  Checkpoint c = make_checkpoint("kind");  ...extras...;  c.save(path);
//   load:  Checkpoint c = open_checkpoint(path, "kind");  ...own checks...;
//          check_checkpoint(c);  ...checks of the extras...;
//          apply_checkpoint(c);  ...apply the extras...
//
// StepStats and EpochStats are rows of doubles: each provides
//   static constexpr int kColumns;  void to_row(double*) const;  static X from_row(const double*);
// EpochStats also has `std::int64_t end_step` (set by add_epoch).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vqvae2/core/rng.hpp"
#include "vqvae2/data/loader.hpp"
#include "vqvae2/train/adam.hpp"
#include "vqvae2/train/checkpoint.hpp"

namespace vqvae2::train {

// Rows <-> a [n, kColumns] double tensor.
template <class Row>
Tensor<double, Cpu> pack_rows(const std::vector<Row>& rows) {
  Tensor<double, Cpu> t(Shape{static_cast<std::int64_t>(rows.size()), Row::kColumns});
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i].to_row(t.data() + static_cast<std::int64_t>(i) * Row::kColumns);
  return t;
}
template <class Row>
std::vector<Row> unpack_rows(const Tensor<double, Cpu>& t) {
  std::vector<Row> rows;
  rows.reserve(static_cast<std::size_t>(t.dim(0)));
  for (std::int64_t i = 0; i < t.dim(0); ++i) rows.push_back(Row::from_row(t.data() + i * Row::kColumns));
  return rows;
}

// Checks that a checkpoint holds every parameter of `net` under `prefix` with
// its shape (dtype is checked when applying), without changing anything.
template <class Module>
void expect_module(const Checkpoint& c, const std::string& path, Module& net, std::string_view prefix = {}) {
  auto expect = [&](const std::string& name, const Shape& shape) {
    VQVAE2_CHECK(c.has_tensor(name), "Checkpoint '", path, "' has no tensor '", name, "'.");
    VQVAE2_CHECK(c.shape(name) == shape, "Checkpoint '", path, "' has '", name, "' with shape ", c.shape(name).str(),
                 ", expected ", shape.str(), ".");
  };
  net.visit([&](std::string_view name, auto& p) {
    expect(prefix.empty() ? std::string(name) : std::string(prefix) + "." + std::string(name), p.value.shape());
  });
}

template <class Model, class StepStats, class EpochStats, class T = float>
class TrainingRun {
 public:
  using Optimizer = Adam<T, Cpu>;

  TrainingRun(std::uint64_t seed, const AdamOptions& adam) : gen_(seed), adam_(model_, adam) {}
  TrainingRun(const TrainingRun&) = delete;
  TrainingRun& operator=(const TrainingRun&) = delete;

  Model& model() { return model_; }
  const Model& model() const { return model_; }
  Optimizer& optimizer() { return adam_; }
  std::int64_t step_count() const { return adam_.step_count(); }
  void set_lr(double lr) { adam_.set_lr(lr); }
  const std::vector<StepStats>& step_history() const { return steps_; }
  const std::vector<EpochStats>& epoch_history() const { return epochs_; }
  // Records a finished epoch; its end_step is the current step count.
  void add_epoch(EpochStats e) {
    e.end_step = adam_.step_count();
    epochs_.push_back(e);
  }
  // Where the next batch comes from; stored in checkpoints.
  data::LoaderPosition position;

 protected:
  Generator& generator() { return gen_; }
  void add_step(const StepStats& s) { steps_.push_back(s); }
  // Further random streams saved and restored with the run, as metadata
  // "<prefix>_seed" and "<prefix>_offset". The initialisation generator is "rng".
  void add_generator(std::string prefix, Generator* g) { generators_.emplace_back(std::move(prefix), g); }

  // The common part of a checkpoint: kind, step, loader position, generators,
  // learning rate, parameters, Adam state, histories (aliases: save it promptly).
  Checkpoint make_checkpoint(std::string_view kind) {
    Checkpoint c(Model::fingerprint());
    c.set_string("kind", kind);
    c.set_u64("step", static_cast<std::uint64_t>(adam_.step_count()));
    c.set_u64("loader_epoch", static_cast<std::uint64_t>(position.epoch));
    c.set_u64("loader_batch", static_cast<std::uint64_t>(position.batch));
    for (auto& [prefix, g] : all_generators()) {
      c.set_u64(prefix + "_seed", g->seed());
      c.set_u64(prefix + "_offset", g->offset());
    }
    c.set_f64("lr", adam_.lr());
    c.add_module(model_);
    c.add_optimizer(adam_);
    c.add_tensor("history.steps", pack_rows(steps_));
    c.add_tensor("history.epochs", pack_rows(epochs_));
    return c;
  }

  // Loads a checkpoint and checks it is of this kind ("<what>" names it in the message).
  static Checkpoint open_checkpoint(const std::string& path, std::string_view kind, std::string_view what) {
    Checkpoint c = Checkpoint::load(path);
    VQVAE2_CHECK(c.has_meta("kind") && c.get_string("kind") == kind, "Checkpoint '", path, "' is not a ", what,
                 " training checkpoint", c.has_meta("kind") ? " (it holds a '" + c.get_string("kind") + "' run)" : "",
                 ".");
    return c;
  }

  // Validates the common part against this run (configuration, metadata, every
  // tensor's presence and shape) without changing anything.
  void check_checkpoint(const Checkpoint& c, const std::string& path) {
    VQVAE2_CHECK(c.fingerprint() == Model::fingerprint(), "Checkpoint '", path, "' was written for configuration '",
                 c.fingerprint(), "' but this model is '", Model::fingerprint(), "'.");
    std::vector<std::string> keys = {"step", "loader_epoch", "loader_batch", "lr"};
    for (auto& [prefix, g] : all_generators()) {
      keys.push_back(prefix + "_seed");
      keys.push_back(prefix + "_offset");
    }
    for (const auto& key : keys)
      VQVAE2_CHECK(c.has_meta(key), "Checkpoint '", path, "' lacks the training state '", key, "'.");
    auto expect_rows = [&](const char* name, int columns) {
      VQVAE2_CHECK(c.has_tensor(name), "Checkpoint '", path, "' lacks the tensor '", name, "'.");
      const Shape s = c.shape(name);
      VQVAE2_CHECK(s.rank == 2 && s.dims[1] == columns, "Checkpoint '", path, "' has '", name, "' with shape ", s.str(),
                   ", expected [n, ", columns, "].");
    };
    expect_rows("history.steps", StepStats::kColumns);
    expect_rows("history.epochs", EpochStats::kColumns);
    expect_module(c, path, model_);
    adam_.visit_state([&](std::string_view name, auto& t) {
      const std::string key = "adam." + std::string(name);
      VQVAE2_CHECK(c.has_tensor(key), "Checkpoint '", path, "' has no tensor '", key, "'.");
      VQVAE2_CHECK(c.shape(key) == t.shape(), "Checkpoint '", path, "' has '", key, "' with shape ", c.shape(key).str(),
                   ", expected ", t.shape().str(), ".");
    });
  }

  // Applies the common part (after check_checkpoint and every check of the extras).
  void apply_checkpoint(const Checkpoint& c) {
    c.apply_to(model_, Model::fingerprint());
    c.apply_to_optimizer(adam_);
    adam_.set_step_count(static_cast<std::int64_t>(c.get_u64("step")));
    adam_.set_lr(c.get_f64("lr"));
    position.epoch = static_cast<std::int64_t>(c.get_u64("loader_epoch"));
    position.batch = static_cast<std::int64_t>(c.get_u64("loader_batch"));
    for (auto& [prefix, g] : all_generators()) g->set_state(c.get_u64(prefix + "_seed"), c.get_u64(prefix + "_offset"));
    steps_ = unpack_rows<StepStats>(c.get_tensor<double>("history.steps"));
    epochs_ = unpack_rows<EpochStats>(c.get_tensor<double>("history.epochs"));
  }

 private:
  std::vector<std::pair<std::string, Generator*>> all_generators() {
    std::vector<std::pair<std::string, Generator*>> g{{"rng", &gen_}};
    g.insert(g.end(), generators_.begin(), generators_.end());
    return g;
  }

  Generator gen_;
  Model model_;
  Optimizer adam_;
  std::vector<StepStats> steps_;
  std::vector<EpochStats> epochs_;
  std::vector<std::pair<std::string, Generator*>> generators_;
};

}  // namespace vqvae2::train
