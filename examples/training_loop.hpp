// The epoch loop every training program shares (vqvae2_train_vqvae,
// vqvae2_train_prior): resume, progress bar, --minutes budget, Ctrl-C, an
// atomic checkpoint after every epoch and when stopped, loss CSVs and a curve.
//
// A program describes its run as a Job:
//   std::int64_t batches_per_epoch();
//   vqvae2::data::LoaderPosition& position();   // the trainer's
//   std::int64_t step_count();
//   long long step(std::string& text);    // one step on the next batch: images used; text for the bar
//   void end_epoch(double seconds);        // validation, history, one printed line
//   void save();                           // checkpoint and logs, atomically
// and optionally
//   void end_of_budget();  // the --minutes budget ended inside an epoch: a last validation
// and run_epochs() drives it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/data/loader.hpp"
#include "vqvae2/viz/plot.hpp"

namespace cli {

inline std::atomic<bool>& interrupted() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline void on_interrupt(int) { interrupted() = true; }

// The checkpoint to resume from: `resume` is auto (ckpt if it exists), none, or a path; "" for a fresh run.
inline std::string resume_source(const std::string& resume, const std::string& ckpt) {
  if (resume == "auto") return std::filesystem::exists(ckpt) ? ckpt : std::string();
  if (resume.empty() || resume == "none") return {};
  VQVAE2_CHECK(std::filesystem::exists(resume), "--resume: checkpoint '", resume, "' does not exist.");
  return resume;
}

struct LoopOptions {
  long long epochs = 1;
  double minutes = 0;      // 0: no time budget
  std::string checkpoint;  // for the closing messages
};

struct LoopResult {
  long long images = 0;
  double minutes = 0;
  bool interrupted = false, out_of_time = false;
};

template <class Job>
LoopResult run_epochs(Job& job, const LoopOptions& o) {
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  const auto start = std::chrono::steady_clock::now();
  auto minutes_used = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
  };
  const std::int64_t per_epoch = job.batches_per_epoch();
  auto& pos = job.position();
  LoopResult r;
  Progress progress(o.epochs * per_epoch, o.minutes * 60, pos.epoch * per_epoch + pos.batch);
  std::string text;
  while (pos.epoch < o.epochs && !interrupted() && !r.out_of_time) {
    const auto epoch_start = std::chrono::steady_clock::now();
    while (pos.batch < per_epoch) {
      text.clear();
      r.images += job.step(text);
      ++pos.batch;
      progress.update(pos.epoch * per_epoch + pos.batch, r.images, text);
      if (interrupted()) break;
      if (o.minutes > 0 && minutes_used() >= o.minutes) {
        r.out_of_time = true;
        break;
      }
    }
    if (pos.batch >= per_epoch) {
      progress.finish();
      job.end_epoch(std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count());
      ++pos.epoch;
      pos.batch = 0;
    }
    job.save();
  }
  progress.finish();
  r.interrupted = interrupted();
  r.minutes = minutes_used();
  // A budget that ends inside an epoch would otherwise leave no validation number for
  // the time spent (a short run of a large model may never finish an epoch).
  if constexpr (requires { job.end_of_budget(); })
    if (r.out_of_time && !r.interrupted && pos.batch > 0) job.end_of_budget();
  if (r.interrupted) std::fprintf(stderr, "interrupted: checkpoint saved to %s\n", o.checkpoint.c_str());
  if (r.out_of_time)
    std::fprintf(stderr, "time budget of %.1f minutes reached: checkpoint saved to %s\n", o.minutes,
                 o.checkpoint.c_str());
  std::fprintf(stderr, "trained %lld images in %.1f minutes (%.2f img/s); %lld steps in all\n", r.images, r.minutes,
               static_cast<double>(r.images) / std::max(1e-9, r.minutes * 60),
               static_cast<long long>(job.step_count()));
  return r;
}

// A CSV file written atomically: a header line and rows of numbers.
class Csv {
 public:
  explicit Csv(const std::string& header) : text_(header + "\n") {}
  template <class... V>
  void row(const V&... v) {
    bool first = true;
    ((text_ += (first ? "" : ","), text_ += cell(v), first = false), ...);
    text_ += '\n';
  }
  void write(const std::string& path) const { vqvae2::io::write_file_atomic(path, text_); }

 private:
  static std::string cell(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
  }
  static std::string cell(long long v) { return std::to_string(v); }
  static std::string cell(std::int64_t v) { return std::to_string(v); }
  static std::string cell(std::size_t v) { return std::to_string(v); }
  static std::string cell(int v) { return std::to_string(v); }
  std::string text_;
};

// The loss curve by step: the training loss averaged over `window`-step windows,
// and a validation value at each epoch end (NaNs skipped). Nothing is written
// before there is a point to draw.
inline void write_loss_curve(const std::string& path, const std::vector<double>& step_loss,
                             const std::vector<double>& val_step, const std::vector<double>& val_value,
                             const std::string& train_label, const std::string& val_label, vqvae2::viz::PlotOptions po,
                             std::size_t window = 20) {
  vqvae2::viz::Series smooth{train_label + " (per " + std::to_string(window) + " steps)", {}, {}},
      val{val_label, {}, {}};
  for (std::size_t i = 0; i + window <= step_loss.size(); i += window) {
    double m = 0;
    for (std::size_t j = i; j < i + window; ++j) m += step_loss[j];
    smooth.x.push_back(static_cast<double>(i + window));
    smooth.y.push_back(m / static_cast<double>(window));
  }
  for (std::size_t i = 0; i < val_step.size() && i < val_value.size(); ++i)
    if (std::isfinite(val_value[i])) {
      val.x.push_back(val_step[i]);
      val.y.push_back(val_value[i]);
    }
  std::vector<vqvae2::viz::Series> series;
  if (!smooth.y.empty()) series.push_back(smooth);
  if (!val.y.empty()) series.push_back(val);
  if (series.empty()) return;
  po.x_label = "step";
  vqvae2::viz::write_plot_png(path, series, po);
}

}  // namespace cli
