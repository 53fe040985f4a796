// Learning-rate schedules as small value types: lr(step) is the rate for the
// optimiser step with 0-based index `step`, i.e.
//   opt.set_lr(schedule.lr(opt.step_count()));  opt.step();
// They hold no state, so a run resumed from a checkpoint (which stores the
// step count) continues on the same curve.
#pragma once

#include <cmath>
#include <cstdint>
#include <variant>

#include "vqvae2/core/error.hpp"

namespace vqvae2::train {

struct ConstantLr {
  double value = 3e-4;
  double lr(std::int64_t /*step*/) const { return value; }
};

// Linear warm-up then cosine decay, the reference's "cycle" scheduler
// (CycleScheduler with momentum=None): over `total_steps` steps, the first
// `warmup_steps` rise linearly from lr_start to lr_max, the rest fall along a
// half cosine from lr_max to lr_end; after total_steps the cycle restarts.
// Step s of the warm-up uses proportion (s + 1) / warmup_steps, and step s of
// the decay (s - warmup_steps + 1) / decay_steps, exactly as the reference,
// so the warm-up ends on lr_max and the cycle ends on lr_end.
struct WarmupCosineLr {
  double lr_max = 3e-4;
  std::int64_t total_steps = 1;
  std::int64_t warmup_steps = 0;
  double lr_start = 3e-4 / 25;
  double lr_end = 3e-4 / 25 / 1e4;

  // The reference's construction: warm-up = floor(total * warmup_proportion),
  // lr_start = lr_max / divider, lr_end = lr_start / 1e4.
  static WarmupCosineLr cycle(double lr_max, std::int64_t total_steps, double warmup_proportion = 0.3,
                              double divider = 25.0) {
    VQVAE2_CHECK(warmup_proportion >= 0.0 && warmup_proportion < 1.0,
                 "WarmupCosineLr::cycle: warmup_proportion must be in [0, 1), got ", warmup_proportion, ".");
    VQVAE2_CHECK(divider > 0.0, "WarmupCosineLr::cycle: divider must be positive, got ", divider, ".");
    WarmupCosineLr s;
    s.lr_max = lr_max;
    s.total_steps = total_steps;
    s.warmup_steps = static_cast<std::int64_t>(static_cast<double>(total_steps) * warmup_proportion);
    s.lr_start = lr_max / divider;
    s.lr_end = s.lr_start / 1e4;
    s.validate();
    return s;
  }

  void validate() const {
    VQVAE2_CHECK(total_steps > 0, "WarmupCosineLr: total_steps must be positive, got ", total_steps, ".");
    VQVAE2_CHECK(warmup_steps >= 0 && warmup_steps < total_steps, "WarmupCosineLr: warmup_steps must be in [0, ",
                 total_steps, "), got ", warmup_steps, ".");
  }

  double lr(std::int64_t step) const {
    VQVAE2_CHECK(step >= 0, "WarmupCosineLr::lr: negative step ", step, ".");
    validate();
    std::int64_t s = step % total_steps;
    if (s < warmup_steps) {
      double t = static_cast<double>(s + 1) / static_cast<double>(warmup_steps);
      return lr_start + t * (lr_max - lr_start);
    }
    double t = static_cast<double>(s - warmup_steps + 1) / static_cast<double>(total_steps - warmup_steps);
    constexpr double kPi = 3.14159265358979323846;
    return lr_end + (lr_max - lr_end) / 2.0 * (std::cos(kPi * t) + 1.0);
  }
};

// A schedule chosen at run time (e.g. from a command-line flag).
using LrSchedule = std::variant<ConstantLr, WarmupCosineLr>;

inline double lr_at(const LrSchedule& schedule, std::int64_t step) {
  return std::visit([step](const auto& s) { return s.lr(step); }, schedule);
}

}  // namespace vqvae2::train
