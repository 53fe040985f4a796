#include <doctest/doctest.h>

#include <filesystem>

#include "vqvae2/train/prior_trainer.hpp"

using namespace vqvae2;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(VQVAE2_TEST_TMP_DIR);
  return (fs::path(VQVAE2_TEST_TMP_DIR) / name).string();
}

// Learnable maps for the tiny priors (8x8 bottom, 4x4 top, 16 codes): diagonal
// stripes, code = (x + y + phase) % 16 with a per-image phase, so every code
// after the first follows from its left neighbour. The top map is the bottom map
// subsampled, so the condition carries information too.
data::CodeSet stripe_codes(int count, std::uint64_t hash = 0xABCDULL) {
  data::CodeSet s;
  s.vqvae_fingerprint = "tiny/test";
  s.vqvae_weight_hash = hash;
  s.num_codes = 16;
  s.image_height = s.image_width = 32;
  s.top_height = s.top_width = 8;  // TopTiny models 8x8 top maps
  s.bottom_height = s.bottom_width = 8;
  for (int i = 0; i < count; ++i) {
    s.names.push_back("img_" + std::to_string(i) + ".png");
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) s.bottom.push_back(static_cast<std::uint16_t>((x + y + i) % 16));
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) s.top.push_back(static_cast<std::uint16_t>((2 * x + y + 3 * i) % 16));
  }
  return s;
}

// The bottom tiny prior wants top maps of half its size.
data::CodeSet stripe_codes_bottom(int count, std::uint64_t hash = 0xABCDULL) {
  data::CodeSet s = stripe_codes(count, hash);
  s.top_height = s.top_width = 4;
  s.top.clear();
  for (int i = 0; i < count; ++i)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) s.top.push_back(static_cast<std::uint16_t>((2 * x + 2 * y + i) % 16));
  return s;
}

// Runs `steps` steps the way the training program does, from the trainer's position.
template <class Trainer>
std::vector<double> run_steps(Trainer& trainer, data::CodeBatchLoader& loader, int steps) {
  std::vector<double> losses;
  loader.seek(trainer.position.epoch, trainer.position.batch);
  for (int s = 0; s < steps; ++s) {
    loader.next();
    losses.push_back(trainer.step(loader.batch(), loader.condition()).loss);
    if (++trainer.position.batch == loader.batches_per_epoch()) {
      ++trainer.position.epoch;
      trainer.position.batch = 0;
    }
  }
  return losses;
}

template <class Config>
void check_exact_resume(const data::CodeSet& codes_value) {
  using Trainer = train::PriorTrainer<Config>;
  auto codes = std::make_shared<const data::CodeSet>(codes_value);
  data::LoaderOptions lo;
  lo.batch_size = 4;
  lo.seed = 5;
  train::PriorTrainOptions opt;
  opt.lr = 1e-3;
  Context<Cpu> ctx(2);

  Trainer straight(ctx, opt);
  straight.set_code_source(*codes);
  data::CodeBatchLoader loader_a(codes, Trainer::kLevel, Config::conditioned, lo);
  const std::vector<double> expected = run_steps(straight, loader_a, 7);  // crosses two epoch ends (3 batches each)

  Trainer first(ctx, opt);
  first.set_code_source(*codes);
  data::CodeBatchLoader loader_b(codes, Trainer::kLevel, Config::conditioned, lo);
  std::vector<double> got = run_steps(first, loader_b, 4);
  const std::string path = tmp_path(std::string("prior_resume_") + Config::name + ".ckpt");
  first.save(path);

  train::PriorTrainOptions other = opt;
  other.seed = 999;  // another initialisation and dropout stream: all must come from the checkpoint
  Trainer resumed(ctx, other);
  resumed.load(path);
  CHECK(resumed.step_count() == 4);
  CHECK(resumed.position.epoch == 1);
  CHECK(resumed.position.batch == 1);
  CHECK(resumed.step_history().size() == 4);
  CHECK(resumed.code_fingerprint() == "tiny/test");
  CHECK(resumed.code_weight_hash() == 0xABCDULL);
  data::CodeBatchLoader loader_c(codes, Trainer::kLevel, Config::conditioned, lo);
  for (double l : run_steps(resumed, loader_c, 3)) got.push_back(l);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == expected[i]);  // bit-identical
  }
  // And the evaluation afterwards agrees to the bit as well.
  const auto ea = straight.evaluate(*codes, 5), eb = resumed.evaluate(*codes, 5);
  CHECK(ea.nll == eb.nll);
  CHECK(ea.accuracy == eb.accuracy);
}

template <class Trainer>
std::vector<float> parameters(Trainer& t) {
  std::vector<float> v;
  t.model().visit([&](std::string_view, auto& p) { v.insert(v.end(), p.value.begin(), p.value.end()); });
  return v;
}

}  // namespace

TEST_CASE("The code loader's order is the image loader's shuffle, and resumes at any position") {
  auto codes = std::make_shared<const data::CodeSet>(stripe_codes(10));
  data::LoaderOptions lo;
  lo.batch_size = 3;
  lo.seed = 11;
  data::CodeBatchLoader a(codes, data::CodeLevel::bottom, true, lo);
  CHECK(a.batches_per_epoch() == 3);
  std::vector<std::int64_t> order;
  data::epoch_order(11, 1, 10, true, order);
  a.seek(1, 2);
  a.next();
  REQUIRE(a.batch().shape() == Shape{3, 8, 8});
  REQUIRE(a.condition() != nullptr);
  CHECK(a.condition()->shape() == Shape{3, 8, 8});
  for (int b = 0; b < 3; ++b) {
    const std::uint16_t* want = codes->bottom_map(order[static_cast<std::size_t>(6 + b)]);
    for (int i = 0; i < 64; ++i) CHECK(a.batch()[b * 64 + i] == want[i]);
  }
  CHECK(a.position() == data::LoaderPosition{2, 0});
  data::CodeBatchLoader top(codes, data::CodeLevel::top, false, lo);
  top.next();
  CHECK(top.condition() == nullptr);
}

TEST_CASE("The tiny top prior learns stripes: the loss falls and the validation NLL is reported in nats and bits") {
  auto codes = std::make_shared<const data::CodeSet>(stripe_codes(16));
  data::LoaderOptions lo;
  lo.batch_size = 8;
  train::PriorTrainOptions opt;
  opt.lr = 1e-2;
  Context<Cpu> ctx(2);
  train::PriorTrainer<models::TopTiny> trainer(ctx, opt);
  CHECK_NOTHROW(trainer.check_codes(*codes, "stripes", "none"));
  trainer.set_code_source(*codes);
  data::CodeBatchLoader loader(codes, data::CodeLevel::top, false, lo);
  const auto before = trainer.evaluate(*codes, 8);
  CHECK(before.nll == doctest::Approx(before.bits * std::log(2.0)));
  const std::vector<double> losses = run_steps(trainer, loader, 60);
  const auto after = trainer.evaluate(*codes, 8);
  MESSAGE("loss ", losses.front(), " -> ", losses.back(), "; validation NLL ", before.nll, " -> ", after.nll,
          " nats/code (", after.bits, " bits), accuracy ", before.accuracy, " -> ", after.accuracy);
  CHECK(losses.back() < 0.5 * losses.front());
  CHECK(after.nll < 0.5 * before.nll);
  CHECK(after.accuracy > before.accuracy);
  CHECK(ctx.training);  // evaluate restores the mode
}

TEST_CASE("A resumed prior run continues exactly (parameters, Adam, dropout stream, loader, history)") {
  SUBCASE("top prior (attention, dropout)") { check_exact_resume<models::TopTiny>(stripe_codes(12)); }
  SUBCASE("bottom prior (conditioned on the top codes)") {
    check_exact_resume<models::BottomTiny>(stripe_codes_bottom(12));
  }
}

TEST_CASE("Prior checkpoints of the wrong level or configuration, and codes of another VQ-VAE-2, are refused") {
  Context<Cpu> ctx(1);
  const auto codes = stripe_codes(4);
  train::PriorTrainer<models::TopTiny> top(ctx, {});
  top.set_code_source(codes);
  const std::string path = tmp_path("prior_top_tiny.ckpt");
  top.save(path);

  train::PriorTrainer<models::BottomTiny> bottom(ctx, {});
  const auto before = parameters(bottom);
  CHECK_THROWS_WITH_AS(bottom.load(path), doctest::Contains("holds a top prior, but this run trains the bottom prior"),
                       Error);
  CHECK(parameters(bottom) == before);

  train::PriorTrainer<models::TopSmall> small(ctx, {});
  const auto before_small = parameters(small);
  CHECK_THROWS_WITH_AS(small.load(path), doctest::Contains("was written for configuration 'pixelsnail/top_tiny"),
                       Error);
  CHECK(parameters(small) == before_small);
  CHECK(small.step_count() == 0);

  // A VQ-VAE-2 checkpoint is not a prior checkpoint.
  train::Checkpoint other("x");
  other.set_string("kind", "vqvae2");
  const std::string vq = tmp_path("not_a_prior.ckpt");
  other.save(vq);
  CHECK_THROWS_WITH_AS(top.load(vq), doctest::Contains("is not a PixelSNAIL prior training checkpoint"), Error);

  // Resumed, the run knows its VQ-VAE-2 and refuses another one's codes.
  train::PriorTrainer<models::TopTiny> resumed(ctx, {});
  resumed.load(path);
  CHECK_NOTHROW(resumed.check_codes(codes, "same.codes", "the VQ-VAE-2 of the run"));
  CHECK_THROWS_WITH_AS(resumed.check_codes(stripe_codes(4, 0x1234), "other.codes", "the VQ-VAE-2 of the run"),
                       doctest::Contains("was made by another VQ-VAE-2 than the VQ-VAE-2 of the run"), Error);
  // And maps of the wrong size or code book.
  CHECK_THROWS_WITH_AS(bottom.check_codes(codes, "c.codes", "-"), doctest::Contains("not half the bottom maps"), Error);
  auto wide = codes;
  wide.num_codes = 512;
  CHECK_THROWS_WITH_AS(top.check_codes(wide, "w.codes", "-"), doctest::Contains("has 512 codes per map"), Error);
}
