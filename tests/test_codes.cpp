#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "vqvae2/data/code_file.hpp"
#include "vqvae2/data/png.hpp"
#include "vqvae2/train/vqvae_trainer.hpp"

using namespace vqvae2;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(VQVAE2_TEST_TMP_DIR);
  return (fs::path(VQVAE2_TEST_TMP_DIR) / name).string();
}

data::CodeSet sample_codes(int count) {
  data::CodeSet s;
  s.vqvae_fingerprint = models::config_fingerprint<models::Tiny>();
  s.vqvae_weight_hash = 0x0123456789ABCDEFULL;
  s.num_codes = 16;
  s.image_height = s.image_width = 32;
  s.top_height = s.top_width = 4;
  s.bottom_height = s.bottom_width = 8;
  for (int i = 0; i < count; ++i) s.names.push_back("case_" + std::to_string(i) + "_slice_0.nii.png");
  for (std::int64_t i = 0; i < count * s.top_size(); ++i) s.top.push_back(static_cast<std::uint16_t>(i * 7 % 16));
  for (std::int64_t i = 0; i < count * s.bottom_size(); ++i) s.bottom.push_back(static_cast<std::uint16_t>(i * 5 % 16));
  return s;
}

std::vector<std::uint8_t> file_bytes(const std::string& path) { return io::read_file(path); }
void put_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A split folder of real PNGs: smooth discs, different per image.
fs::path write_split(const std::string& root_name, int count, int size) {
  const fs::path root = tmp_path(root_name);
  const fs::path folder = root / "keras_png_slices_train";
  fs::create_directories(folder);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(size * size));
  for (int i = 0; i < count; ++i) {
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        double dx = x - size / 2.0 - i % 3, dy = y - size / 2.0 + i % 4, r = std::sqrt(dx * dx + dy * dy) / size;
        double v = r < 0.3 ? 200 - 300 * r + 10 * (i % 5) : (r < 0.38 ? 60 : 0);
        px[static_cast<std::size_t>(y * size + x)] = static_cast<std::uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    data::write_png_grey(folder / ("case_" + std::to_string(i) + "_slice_0.nii.png"), px.data(), size, size);
  }
  return root;
}

}  // namespace

TEST_CASE("A code file round-trips every field and code") {
  const data::CodeSet s = sample_codes(5);
  const std::string path = tmp_path("roundtrip.codes");
  data::write_code_file(path, s);
  const data::CodeSet r = data::read_code_file(path);
  CHECK(r.vqvae_fingerprint == s.vqvae_fingerprint);
  CHECK(r.vqvae_weight_hash == s.vqvae_weight_hash);
  CHECK(r.num_codes == 16);
  CHECK(r.image_height == 32);
  CHECK(r.image_width == 32);
  CHECK(r.top_height == 4);
  CHECK(r.top_width == 4);
  CHECK(r.bottom_height == 8);
  CHECK(r.bottom_width == 8);
  CHECK(r.names == s.names);
  CHECK(r.top == s.top);
  CHECK(r.bottom == s.bottom);
  // Compact: two bytes a code plus the names and a small header.
  CHECK(fs::file_size(path) < 2 * (s.top.size() + s.bottom.size()) + 400);
}

TEST_CASE("Truncated, corrupt, foreign and future code files are refused with one sentence naming the file") {
  const std::string good = tmp_path("good.codes");
  data::write_code_file(good, sample_codes(3));
  const auto bytes = file_bytes(good);
  const std::string bad = tmp_path("bad.codes");

  auto refused = [&](const std::vector<std::uint8_t>& b, const char* why) {
    put_bytes(bad, b);
    CHECK_THROWS_WITH_AS(data::read_code_file(bad), doctest::Contains(why), Error);
    try {
      data::read_code_file(bad);
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
    }
  };
  SUBCASE("truncated") {
    refused(std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 10), "is truncated");
    refused(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 12), "is truncated");
  }
  SUBCASE("a flipped bit") {
    auto b = bytes;
    b[b.size() / 2] ^= 0x10;
    refused(b, "checksum mismatch");
  }
  SUBCASE("not a code file") {
    auto b = bytes;
    b[0] = 'X';
    refused(b, "bad magic");
    train::Checkpoint ck("x");
    ck.save(bad);
    CHECK_THROWS_WITH_AS(data::read_code_file(bad), doctest::Contains("bad magic"), Error);
  }
  SUBCASE("another version") {
    auto b = bytes;
    b[8] = 2;
    refused(b, "format version 2");
  }
  SUBCASE("trailing bytes") {
    auto b = bytes;
    b.push_back(0);
    refused(b, "unexpected bytes");
  }
  SUBCASE("a code outside the code book, with a valid checksum") {
    data::CodeSet s = sample_codes(3);
    s.num_codes = 8;  // codes up to 15 were written
    data::write_code_file(bad, s);
    CHECK_THROWS_WITH_AS(data::read_code_file(bad), doctest::Contains("is not below the 8 codes"), Error);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_WITH_AS(data::read_code_file(tmp_path("no_such.codes")), doctest::Contains("no_such.codes"), Error);
  }
  // The good file is untouched by all of this, and a failed write keeps the earlier file.
  CHECK(file_bytes(good) == bytes);
  data::CodeSet broken = sample_codes(3);
  broken.top.pop_back();
  CHECK_THROWS_AS(data::write_code_file(good, broken), Error);
  CHECK(file_bytes(good) == bytes);
}

TEST_CASE("Extracted codes are the model's own encode, batch by batch from disk") {
  const fs::path root = write_split("codes_split", 10, 32);
  Context<Cpu> ctx(2);
  train::VQVAETrainOptions opt;
  opt.seed = 3;
  opt.lr = 1e-3;
  opt.dead_code_restart = 2;  // re-seeded codes: the maps use several codes
  train::VQVAETrainer<models::Tiny> trainer(ctx, opt);
  auto& model = trainer.model();

  data::LoadOptions lo;
  lo.allow_other_sizes = true;
  const auto files = data::list_pngs(data::oasis_split_folder(root, "train"));
  const data::ImageSet all = data::load_images(files, lo);
  Tensor<float, Cpu> x;
  std::vector<std::int64_t> idx(10);
  for (int i = 0; i < 10; ++i) idx[static_cast<std::size_t>(i)] = i;
  data::fill_batch(all, idx.data(), 10, x);
  for (int i = 0; i < 10; ++i) trainer.step(x);  // a little training, so the code maps vary
  std::vector<std::int64_t> seen;
  // Batches of 4: two full ones and a short one.
  const data::CodeSet s = data::encode_image_files(ctx, model, files, 4, lo,
                                                   [&](std::int64_t done, std::int64_t) { seen.push_back(done); });
  CHECK(seen == std::vector<std::int64_t>{4, 8, 10});
  CHECK(ctx.training);  // restored
  REQUIRE(s.count() == 10);
  CHECK(s.top_height == 4);
  CHECK(s.top_width == 4);
  CHECK(s.bottom_height == 8);
  CHECK(s.bottom_width == 8);
  CHECK(s.image_height == 32);
  CHECK(s.num_codes == models::Tiny::num_codes);
  CHECK(s.vqvae_fingerprint == models::config_fingerprint<models::Tiny>());
  CHECK(s.vqvae_weight_hash == data::weight_hash(model));

  // The whole split at once, in memory, encoded in one call.
  CHECK(s.names == all.names);
  Tensor<std::int32_t, Cpu> top, bottom;
  ctx.training = false;
  model.encode(ctx, x, top, bottom);
  REQUIRE(top.numel() == static_cast<std::int64_t>(s.top.size()));
  REQUIRE(bottom.numel() == static_cast<std::int64_t>(s.bottom.size()));
  std::int64_t top_diff = 0, bottom_diff = 0, distinct = 0;
  for (std::int64_t i = 0; i < top.numel(); ++i) top_diff += top[i] != s.top[static_cast<std::size_t>(i)];
  for (std::int64_t i = 0; i < bottom.numel(); ++i) bottom_diff += bottom[i] != s.bottom[static_cast<std::size_t>(i)];
  for (std::int64_t i = 1; i < bottom.numel(); ++i) distinct += bottom[i] != bottom[0];
  for (std::int64_t i = 1; i < top.numel(); ++i) distinct += top[i] != top[0];
  CHECK(top_diff == 0);
  CHECK(bottom_diff == 0);
  CHECK(distinct > 0);  // not a degenerate map

  // Through the file and back.
  const std::string path = tmp_path("extracted.codes");
  data::write_code_file(path, s);
  const data::CodeSet r = data::read_code_file(path);
  CHECK(r.top == s.top);
  CHECK(r.bottom == s.bottom);
}

TEST_CASE("Codes of another VQ-VAE-2 are refused when checked against a checkpoint") {
  const fs::path root = write_split("codes_split_b", 3, 32);
  data::LoadOptions lo;
  lo.allow_other_sizes = true;
  const auto files = data::list_pngs(data::oasis_split_folder(root, "train"));
  Context<Cpu> ctx(1);
  train::VQVAETrainOptions oa, ob;
  oa.seed = 1;
  ob.seed = 2;
  train::VQVAETrainer<models::Tiny> a(ctx, oa), b(ctx, ob);
  const std::string ckpt_a = tmp_path("codes_a.ckpt"), ckpt_b = tmp_path("codes_b.ckpt");
  a.save(ckpt_a);
  b.save(ckpt_b);
  const std::string path = tmp_path("codes_a.codes");
  data::write_code_file(path, data::encode_image_files(ctx, a.model(), files, 2, lo));
  const data::CodeSet codes = data::read_code_file(path);

  // The consumer loads the checkpoint and hashes the weights as loaded.
  auto hash_of = [&](const std::string& ckpt) {
    train::VQVAETrainer<models::Tiny> t(ctx, {});
    t.load(ckpt);
    return data::weight_hash(t.model());
  };
  CHECK(hash_of(ckpt_a) == data::weight_hash(a.model()));
  CHECK_NOTHROW(codes.check_source(models::config_fingerprint<models::Tiny>(), hash_of(ckpt_a), path, "checkpoint A"));
  CHECK_THROWS_WITH_AS(
      codes.check_source(models::config_fingerprint<models::Tiny>(), hash_of(ckpt_b), path, "the checkpoint B"),
      doctest::Contains("was made by another VQ-VAE-2 than the checkpoint B"), Error);
  CHECK_THROWS_WITH_AS(
      codes.check_source(models::config_fingerprint<models::Small>(), hash_of(ckpt_a), path, "the checkpoint C"),
      doctest::Contains("belongs to configuration 'small"), Error);

  // One training step changes the weights, so the hash changes too.
  const std::uint64_t before = data::weight_hash(a.model());
  data::ImageSet set = data::load_images(files, lo);
  Tensor<float, Cpu> x;
  std::vector<std::int64_t> idx{0, 1, 2};
  data::fill_batch(set, idx.data(), 3, x);
  a.step(x);
  CHECK(data::weight_hash(a.model()) != before);
}
