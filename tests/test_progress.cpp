// The training programs' progress bar (examples/cli.hpp): ETA and fraction under
// a step count and a time budget.
#include <doctest/doctest.h>

#include "../examples/cli.hpp"

TEST_CASE("Without a budget the ETA follows the steps at this run's rate") {
  cli::ProgressState s;
  s.total = 100;
  s.done = 25;
  s.seconds = 50;  // 2 s a step
  const auto e = cli::estimate_progress(s);
  CHECK(e.fraction == doctest::Approx(0.25));
  CHECK(e.eta_seconds == doctest::Approx(150));
  CHECK_FALSE(e.budget_bound);
  s.done = 0;
  CHECK(cli::estimate_progress(s).eta_seconds < 0);  // unknown before the first step
  CHECK(cli::format_progress(s, "").find("ETA --") != std::string::npos);
}

TEST_CASE("A resumed run's rate counts only its own steps") {
  cli::ProgressState s;
  s.total = 100;
  s.done_at_start = 50;
  s.done = 60;
  s.seconds = 20;  // 10 steps in 20 s
  const auto e = cli::estimate_progress(s);
  CHECK(e.eta_seconds == doctest::Approx(80));
  CHECK(e.fraction == doctest::Approx(0.6));
}

TEST_CASE("Under --minutes the budget's end bounds the ETA and sets the bar (--epochs 100000 --minutes 9)") {
  cli::ProgressState s;
  s.total = 100000LL * 150;  // 100000 epochs of 150 steps
  s.done = 30;
  s.seconds = 60;
  s.budget_seconds = 9 * 60;
  const auto e = cli::estimate_progress(s);
  CHECK(e.budget_bound);
  CHECK(e.eta_seconds == doctest::Approx(8 * 60));
  CHECK(e.fraction == doctest::Approx(1.0 / 9));
  const std::string line = cli::format_progress(s, "loss 0.1", 9);
  CHECK(line.find("[#--------]") == 0);
  CHECK(line.find("loss 0.1 ETA 8m00s (time budget)") != std::string::npos);
  // When the steps end first, they set the ETA and the bar.
  s.total = 40;
  const auto f = cli::estimate_progress(s);
  CHECK_FALSE(f.budget_bound);
  CHECK(f.eta_seconds == doctest::Approx(20));
  CHECK(f.fraction == doctest::Approx(0.75));
  // Past the budget: nothing left, a full bar.
  s.total = 1000000;
  s.seconds = 600;
  CHECK(cli::estimate_progress(s).eta_seconds == 0);
  CHECK(cli::estimate_progress(s).fraction == 1);
}

TEST_CASE("Durations read as minutes and seconds, or hours and minutes") {
  CHECK(cli::format_duration(83) == "1m23s");
  CHECK(cli::format_duration(0) == "0m00s");
  CHECK(cli::format_duration(2 * 3600 + 5 * 60 + 7) == "2h05m");
  CHECK(cli::format_duration(-1) == "--");
}
