// The epoch loop every training program shares (examples/training_loop.hpp): what
// it does at epoch ends, at the end of a --minutes budget and on Ctrl-C, on a job
// that only counts (no model).
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "../examples/training_loop.hpp"

namespace {

struct CountingJob {
  std::int64_t per_epoch = 4;
  int step_ms = 0;                 // how long a step takes
  std::int64_t interrupt_at = -1;  // raise the Ctrl-C flag at this step
  vqvae2::data::LoaderPosition pos;
  std::int64_t steps = 0;
  int epochs_ended = 0, saves = 0;

  std::int64_t batches_per_epoch() { return per_epoch; }
  vqvae2::data::LoaderPosition& position() { return pos; }
  std::int64_t step_count() { return steps; }
  long long step(std::string&) {
    if (step_ms) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    if (++steps == interrupt_at) cli::interrupted() = true;
    return 2;
  }
  void end_epoch(double) { ++epochs_ended; }
  void save() { ++saves; }
};

struct BudgetJob : CountingJob {
  int budget_ends = 0;
  std::int64_t batch_at_budget_end = -1;
  void end_of_budget() {
    ++budget_ends;
    batch_at_budget_end = pos.batch;
  }
};

}  // namespace

TEST_CASE("Without a budget the loop runs every epoch and validates at each end, never at a budget end") {
  cli::interrupted() = false;
  BudgetJob job;
  const auto r = cli::run_epochs(job, {3, 0, "ckpt"});
  CHECK(job.steps == 12);
  CHECK(job.epochs_ended == 3);
  CHECK(job.saves == 3);
  CHECK(job.budget_ends == 0);
  CHECK(r.images == 24);
  CHECK_FALSE(r.out_of_time);
}

TEST_CASE("A budget that ends inside an epoch gets one last validation, after the checkpoint") {
  cli::interrupted() = false;
  BudgetJob job;
  job.per_epoch = 100000;  // at 2 ms a step an epoch lasts minutes: the budget of 0.1 s ends inside it
  job.step_ms = 2;
  const auto r = cli::run_epochs(job, {5, 0.1 / 60, "ckpt"});
  CHECK(r.out_of_time);
  CHECK(job.epochs_ended == 0);
  CHECK(job.saves == 1);
  CHECK(job.budget_ends == 1);
  CHECK(job.batch_at_budget_end == job.steps);  // the position it stopped at, not reset
  CHECK(job.steps < job.per_epoch);
}

TEST_CASE("Ctrl-C stops without the last validation; a job without the hook still runs under a budget") {
  cli::interrupted() = false;
  BudgetJob job;
  job.per_epoch = 100000;
  job.interrupt_at = 7;
  const auto r = cli::run_epochs(job, {5, 60, "ckpt"});
  CHECK(r.interrupted);
  CHECK(job.steps == 7);
  CHECK(job.budget_ends == 0);
  CHECK(job.saves == 1);
  cli::interrupted() = false;

  CountingJob plain;
  plain.per_epoch = 100000;
  plain.step_ms = 2;
  CHECK(cli::run_epochs(plain, {5, 0.05 / 60, "ckpt"}).out_of_time);
  CHECK(plain.saves == 1);
}
