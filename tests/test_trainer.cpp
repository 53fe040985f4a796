#include <doctest/doctest.h>

#include <filesystem>

#include "support/real_slices.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"

using namespace vqvae2;
namespace fs = std::filesystem;

namespace {

// Smooth synthetic "slices": a bright disc with a darker ring, different per image.
std::shared_ptr<data::ImageSet> synthetic_set(int count, int size) {
  auto set = std::make_shared<data::ImageSet>();
  set->count = count;
  set->height = set->width = size;
  set->pixels.resize(static_cast<std::size_t>(count) * size * size);
  for (int i = 0; i < count; ++i) {
    set->names.push_back("img_" + std::to_string(i) + ".png");
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        double dx = x - size / 2.0 - i % 3, dy = y - size / 2.0 + i % 4, r = std::sqrt(dx * dx + dy * dy) / size;
        double v = r < 0.3 ? 200 - 300 * r + 10 * (i % 5) : (r < 0.38 ? 60 : 0);
        set->image(i)[y * size + x] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
      }
  }
  return set;
}

// Runs `steps` training steps the way the training program does, starting at the trainer's position.
template <class Trainer>
std::vector<double> run_steps(Trainer& trainer, data::BatchLoader<float>& loader, int steps,
                              std::size_t* restarts = nullptr) {
  std::vector<double> losses;
  loader.seek(trainer.position.epoch, trainer.position.batch);
  for (int s = 0; s < steps; ++s) {
    losses.push_back(trainer.step(loader.next()).loss);
    if (restarts)
      *restarts += trainer.model().quantizer_top().restarted_codes().size() +
                   trainer.model().quantizer_bottom().restarted_codes().size();
    if (++trainer.position.batch == loader.batches_per_epoch()) {
      ++trainer.position.epoch;
      trainer.position.batch = 0;
    }
  }
  return losses;
}

std::string tmp_path(const std::string& name) {
  fs::create_directories(VQVAE2_TEST_TMP_DIR);
  return (fs::path(VQVAE2_TEST_TMP_DIR) / name).string();
}

}  // namespace

TEST_CASE("A resumed run continues exactly where it stopped (same losses as an uninterrupted run)") {
  auto set = synthetic_set(12, 32);
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.seed = 9;
  train::VQVAETrainOptions opt;
  opt.lr = 1e-3;
  opt.dead_code_restart = 2;  // restarts happen (16 codes, tiny batches): their state must resume too

  Context<Cpu> ctx(2);
  train::VQVAETrainer<models::Tiny> straight(ctx, opt);
  data::BatchLoader<float> loader_a(set, lo);
  std::size_t restarts = 0;
  std::vector<double> expected = run_steps(straight, loader_a, 8, &restarts);  // crosses two epoch boundaries
  CHECK(restarts > 0);

  train::VQVAETrainer<models::Tiny> first(ctx, opt);
  data::BatchLoader<float> loader_b(set, lo);
  std::vector<double> got = run_steps(first, loader_b, 5);
  const std::string path = tmp_path("resume.ckpt");
  first.save(path);

  train::VQVAETrainOptions other = opt;
  other.seed = 12345;  // a different initialisation: everything must come from the checkpoint
  train::VQVAETrainer<models::Tiny> resumed(ctx, other);
  resumed.load(path);
  CHECK(resumed.step_count() == 5);
  CHECK(resumed.position.epoch == 1);
  CHECK(resumed.position.batch == 2);
  CHECK(resumed.step_history().size() == 5);
  data::BatchLoader<float> loader_c(set, lo);
  for (double l : run_steps(resumed, loader_c, 3)) got.push_back(l);

  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == expected[i]);  // bit-identical: same data order, parameters, code books, moments
  }
}

TEST_CASE("Loading a checkpoint of another configuration fails with one sentence and changes nothing") {
  Context<Cpu> ctx(1);
  train::VQVAETrainer<models::Tiny> tiny(ctx, {});
  const std::string path = tmp_path("tiny.ckpt");
  tiny.save(path);
  train::VQVAETrainer<models::Small> small(ctx, {});
  std::vector<float> before;
  small.model().visit([&](std::string_view, auto& p) { before.insert(before.end(), p.value.begin(), p.value.end()); });
  CHECK_THROWS_WITH_AS(small.load(path), doctest::Contains("was written for configuration 'tiny"), Error);
  std::vector<float> after;
  small.model().visit([&](std::string_view, auto& p) { after.insert(after.end(), p.value.begin(), p.value.end()); });
  CHECK(before == after);
}

// A short real run: real T1 brain slices (the shared OASIS-like set when present,
// otherwise Debian's mricron-data template imported by our own importer).
TEST_CASE("Smoke run on real brain slices: the loss falls by at least 3x in 60 steps") {
  const auto root = test::real_slice_root();
  if (!root) {
    MESSAGE("no real brain data on this machine (neither ../shared nor mricron-data): skipped");
    return;
  }
  auto train_set = test::first_train_slices(*root, 16);  // a few real slices
  data::LoaderOptions lo;
  lo.batch_size = 4;
  train::VQVAETrainOptions opt;
  opt.lr = 1e-3;
  Context<Cpu> ctx(2);
  train::VQVAETrainer<models::Tiny> trainer(ctx, opt);
  data::BatchLoader<float> loader(train_set, lo);
  std::vector<double> losses = run_steps(trainer, loader, 60);
  auto mean = [&](std::size_t from, std::size_t to) {
    double s = 0;
    for (std::size_t i = from; i < to; ++i) s += losses[i];
    return s / static_cast<double>(to - from);
  };
  const double start = mean(0, 4), end = mean(56, 60);
  MESSAGE("loss over the first 4 steps ", start, ", over the last 4 ", end, " (factor ", start / end, ")");
  CHECK(end * 3 < start);
}
