// A small command-line parser shared by the example programs: --flag value or
// --flag=value, typed defaults, --help generated from the declarations, and one
// clear sentence for an unknown flag or a bad value.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "vqvae2/core/error.hpp"

namespace cli {

class Parser {
 public:
  Parser(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  Parser& option(const std::string& name, std::string* target, const std::string& help) {
    return add(
        name, help, *target, [target](const std::string& v) { *target = v; }, true);
  }
  Parser& option(const std::string& name, int* target, const std::string& help) {
    return add(
        name, help, std::to_string(*target), [this, name, target](const std::string& v) { *target = to_long(name, v); },
        true);
  }
  Parser& option(const std::string& name, long long* target, const std::string& help) {
    return add(
        name, help, std::to_string(*target), [this, name, target](const std::string& v) { *target = to_long(name, v); },
        true);
  }
  Parser& option(const std::string& name, double* target, const std::string& help) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", *target);
    return add(
        name, help, buf, [this, name, target](const std::string& v) { *target = to_double(name, v); }, true);
  }
  Parser& flag(const std::string& name, bool* target, const std::string& help) {
    return add(
        name, help, *target ? "on" : "off", [target](const std::string&) { *target = true; }, false);
  }

  // Returns false when --help was given (the caller exits 0). Throws vqvae2::Error on bad flags.
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_help();
        return false;
      }
      VQVAE2_CHECK(arg.rfind("--", 0) == 0, program_, ": unexpected argument '", arg,
                   "' (flags start with --; see --help).");
      std::string name = arg.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      auto it = options_.find(name);
      VQVAE2_CHECK(it != options_.end(), program_, ": unknown flag --", name, " (see --help).");
      if (it->second.takes_value && !has_value) {
        VQVAE2_CHECK(i + 1 < argc, program_, ": flag --", name, " needs a value.");
        value = argv[++i];
      }
      it->second.set(value);
    }
    return true;
  }

  void print_help() const {
    std::printf("%s - %s\n\nFlags:\n", program_.c_str(), summary_.c_str());
    for (const auto& name : order_) {
      const auto& o = options_.at(name);
      std::printf("  --%-22s %s (default: %s)\n", (name + (o.takes_value ? " V" : "")).c_str(), o.help.c_str(),
                  o.default_value.empty() ? "\"\"" : o.default_value.c_str());
    }
    std::printf("  --%-22s %s\n", "help", "print this help");
  }

 private:
  struct Option {
    std::string help, default_value;
    std::function<void(const std::string&)> set;
    bool takes_value;
  };
  Parser& add(const std::string& name, const std::string& help, const std::string& def,
              std::function<void(const std::string&)> set, bool takes_value) {
    options_[name] = Option{help, def, std::move(set), takes_value};
    order_.push_back(name);
    return *this;
  }
  long long to_long(const std::string& name, const std::string& v) const {
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    VQVAE2_CHECK(!v.empty() && end && *end == '\0', program_, ": flag --", name, " expects an integer, got '", v, "'.");
    return x;
  }
  double to_double(const std::string& name, const std::string& v) const {
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    VQVAE2_CHECK(!v.empty() && end && *end == '\0', program_, ": flag --", name, " expects a number, got '", v, "'.");
    return x;
  }
  std::string program_, summary_;
  std::map<std::string, Option> options_;
  std::vector<std::string> order_;
};

// Progress of a run: where it is and what bounds it (the step count and,
// optionally, a time budget). A pure description, so its formatting is testable.
struct ProgressState {
  long long done = 0;           // steps (or items) done, counting those of earlier runs
  long long total = 0;          // steps at which the run ends
  long long done_at_start = 0;  // steps already done when this run started (a resume)
  long long images = 0;         // images processed in this run (for the rate)
  double seconds = 0;           // wall time of this run so far
  double budget_seconds = 0;    // time budget of this run (0: none)
};

// Fraction of the bar and the remaining time: the earlier of the step count's
// end (at this run's rate) and the budget's end. eta < 0: not known yet.
struct ProgressEstimate {
  double fraction = 0;
  double eta_seconds = -1;
  bool budget_bound = false;  // the time budget ends the run first
};

inline ProgressEstimate estimate_progress(const ProgressState& s) {
  ProgressEstimate e;
  const long long steps_this_run = s.done - s.done_at_start;
  const double by_steps = s.total > 0 ? static_cast<double>(s.done) / static_cast<double>(s.total) : 0;
  double step_eta = -1;
  if (s.done >= s.total)
    step_eta = 0;
  else if (steps_this_run > 0)
    step_eta = s.seconds * static_cast<double>(s.total - s.done) / static_cast<double>(steps_this_run);
  e.fraction = by_steps;
  e.eta_seconds = step_eta;
  if (s.budget_seconds > 0) {
    const double budget_left = s.budget_seconds > s.seconds ? s.budget_seconds - s.seconds : 0;
    if (step_eta < 0 || budget_left < step_eta) {
      e.eta_seconds = budget_left;
      e.fraction = s.seconds / s.budget_seconds;
      e.budget_bound = true;
    }
  }
  e.fraction = e.fraction < 0 ? 0 : (e.fraction > 1 ? 1 : e.fraction);
  return e;
}

// "1m23s", "2h05m", "--" for unknown.
inline std::string format_duration(double seconds) {
  if (seconds < 0) return "--";
  const long long s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// One line: [#####-----] 123/456 12.3 img/s <extra> ETA 1m23s (budget)
inline std::string format_progress(const ProgressState& s, const std::string& extra, int width = 24) {
  const ProgressEstimate e = estimate_progress(s);
  const int filled = static_cast<int>(width * e.fraction);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(width - filled), '-');
  const double rate = s.seconds > 0 ? static_cast<double>(s.images) / s.seconds : 0;
  char buf[512];
  std::snprintf(buf, sizeof buf, "[%s] %lld/%lld %6.2f img/s %s%sETA %s%s", bar.c_str(), s.done, s.total, rate,
                extra.c_str(), extra.empty() ? "" : " ", format_duration(e.eta_seconds).c_str(),
                e.budget_bound ? " (time budget)" : "");
  return buf;
}

// Progress on stderr. On a terminal: one line redrawn in place (carriage
// return). Otherwise (a log file, a pipe): a plain line every `interval_seconds`
// and at finish(), so logs stay readable.
class Progress {
 public:
  explicit Progress(long long total, double budget_seconds = 0, long long done_at_start = 0,
                    double interval_seconds = 10)
      : start_(std::chrono::steady_clock::now()), interval_(interval_seconds), tty_(::isatty(::fileno(stderr)) != 0) {
    state_.total = total;
    state_.budget_seconds = budget_seconds;
    state_.done_at_start = done_at_start;
  }
  // done: steps done in all; images: images processed in this run.
  void update(long long done, long long images, const std::string& extra) {
    state_.done = done;
    state_.images = images;
    state_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    line_ = format_progress(state_, extra);
    pending_ = true;
    if (tty_) {
      std::fprintf(stderr, "\r%s ", line_.c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else if (state_.seconds - last_print_ >= interval_ || done >= state_.total) {
      print_plain();
    }
  }
  // Ends the current line (terminal) or prints the latest state if it has not been (log).
  void finish() {
    if (tty_) {
      if (drawn_) std::fprintf(stderr, "\n");
      drawn_ = false;
    } else if (pending_) {
      print_plain();
    }
    pending_ = false;
  }
  const ProgressState& state() const { return state_; }

 private:
  void print_plain() {
    std::fprintf(stderr, "%s\n", line_.c_str());
    std::fflush(stderr);
    last_print_ = state_.seconds;
    pending_ = false;
  }
  ProgressState state_;
  std::chrono::steady_clock::time_point start_;
  double interval_;
  bool tty_;
  bool drawn_ = false, pending_ = false;
  double last_print_ = 0;
  std::string line_;
};

}  // namespace cli
