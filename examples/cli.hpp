// A small command-line parser shared by the example programs: --flag value or
// --flag=value, typed defaults, --help generated from the declarations, and one
// clear sentence for an unknown flag or a bad value.
#pragma once

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

// One-line progress bar: [#####-----] 123/456 12.3 img/s loss 0.0123 ETA 1m23s
class Progress {
 public:
  explicit Progress(long long total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  void update(long long done, long long images, const std::string& extra) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double rate = secs > 0 ? images / secs : 0;
    double eta = done > 0 ? secs * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
    int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '-');
    std::fprintf(stderr, "\r[%s] %lld/%lld %6.2f img/s %s ETA %dm%02ds ", bar.c_str(), done, total_, rate,
                 extra.c_str(), static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    std::fflush(stderr);
  }
  void finish() { std::fprintf(stderr, "\n"); }

 private:
  long long total_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace cli
