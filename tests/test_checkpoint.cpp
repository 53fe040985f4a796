#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "vqvae2/core/io.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/nn/module.hpp"
#include "vqvae2/train/adam.hpp"
#include "vqvae2/train/checkpoint.hpp"

using namespace vqvae2;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(VQVAE2_TEST_TMP_DIR);
  return std::string(VQVAE2_TEST_TMP_DIR) + "/" + name;
}

// A small module of plain parameters. `head_rows` changes one shape and
// `extra` adds a parameter the checkpoint lacks; both are visited last, so a
// copy-as-you-go loader would already have overwritten the others.
template <class T>
struct TinyNet {
  Parameter<T> conv_w{Shape{4, 2, 3, 3}};
  Parameter<T> conv_b{Shape{4}};
  Parameter<T> head;
  Parameter<T> extra;
  bool with_extra;

  explicit TinyNet(std::int64_t head_rows = 3, bool with_extra_param = false)
      : head(Shape{head_rows, 4}), extra(Shape{2}), with_extra(with_extra_param) {}
  template <class F>
  void visit(F&& f) {
    f("enc.conv.weight", conv_w);
    f("enc.conv.bias", conv_b);
    f("head.weight", head);
    if (with_extra) f("enc_b.conv1.weight", extra);
  }
  void randomize(std::uint64_t seed) {
    Generator g(seed);
    visit([&](std::string_view, Parameter<T>& p) { g.normal(p.value, T(0), T(1)); });
  }
  void fill(T v) {
    visit([&](std::string_view, Parameter<T>& p) { p.value.fill(v); });
  }
};

template <class T>
bool same_values(TinyNet<T>& a, TinyNet<T>& b) {
  std::vector<Tensor<T>> va, vb;
  a.visit([&](std::string_view, Parameter<T>& p) { va.push_back(p.value); });
  b.visit([&](std::string_view, Parameter<T>& p) { vb.push_back(p.value); });
  if (va.size() != vb.size()) return false;
  for (std::size_t k = 0; k < va.size(); ++k) {
    if (va[k].shape() != vb[k].shape()) return false;
    if (std::memcmp(va[k].data(), vb[k].data(), va[k].bytes()) != 0) return false;
  }
  return true;
}

template <class T>
bool all_equal(TinyNet<T>& m, T v) {
  bool ok = true;
  m.visit([&](std::string_view, Parameter<T>& p) {
    for (T x : p.value) ok = ok && x == v;
  });
  return ok;
}

std::vector<std::uint8_t> bytes_of(const std::string& path) { return io::read_file(path); }
void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  io::write_file_atomic(path, b.data(), b.size());
}

// Saves a valid float checkpoint of a TinyNet<float> and returns its path.
std::string save_reference(const std::string& name, const std::string& fingerprint = "tiny/a") {
  TinyNet<float> m;
  m.randomize(11);
  train::Checkpoint ck(fingerprint);
  ck.add_module(m);
  ck.set_u64("epoch", 4);
  std::string path = tmp_path(name);
  ck.save(path);
  return path;
}

}  // namespace

TEST_CASE("CRC-32 matches the standard check value and is incremental") {
  const char* s = "123456789";
  CHECK(io::crc32(s, 9) == 0xCBF43926u);
  CHECK(io::crc32(s, 0) == 0u);
  std::vector<std::uint8_t> big(1000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7 + 3);
  io::Crc32 c;
  c.update(big.data(), 3);
  c.update(big.data() + 3, 500);
  c.update(big.data() + 503, 497);
  CHECK(c.value() == io::crc32(big.data(), big.size()));
  // Against the bit-by-bit definition, for a length that is not a multiple of 8.
  std::uint32_t ref = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < 999; ++i) {
    ref ^= big[i];
    for (int b = 0; b < 8; ++b) ref = (ref & 1u) ? (ref >> 1) ^ 0xEDB88320u : ref >> 1;
  }
  CHECK(~ref == io::crc32(big.data(), 999));
}

TEST_CASE("io: atomic write replaces the file, read_file returns it, errors name the file") {
  std::string p = tmp_path("io_text.txt");
  io::write_file_atomic(p, "first");
  io::write_file_atomic(p, "second version");
  CHECK(io::read_text_file(p) == "second version");
  CHECK_THROWS_WITH_AS(io::read_file(tmp_path("does_not_exist.bin")), doctest::Contains("does_not_exist.bin"), Error);
  CHECK_THROWS_WITH_AS(io::read_file(VQVAE2_TEST_TMP_DIR), doctest::Contains("directory"), Error);
  {
    // Abandoned without commit: the old file stays, the temporary goes.
    io::AtomicFile f(p);
    f.write("partial");
    CHECK(fs::exists(f.temporary_path()));
  }
  CHECK(io::read_text_file(p) == "second version");
  for (const auto& e : fs::directory_iterator(VQVAE2_TEST_TMP_DIR))
    CHECK(e.path().filename().string().find("io_text.txt.tmp.") == std::string::npos);
}

TEST_CASE_TEMPLATE("Checkpoint round trip: parameters, metadata and tensors of every dtype", T, float, double) {
  TinyNet<T> m;
  m.randomize(5);
  train::Checkpoint ck("tiny/a");
  ck.add_module(m);
  ck.set_u64("epoch", 12);
  ck.set_u64("rng.offset", 0xFFFFFFFFFFFFull);
  ck.set_f64("loss", 0.0123);
  ck.set_string("note", "resume me");
  Tensor<std::int32_t> codes(Shape{2, 3});
  Tensor<std::int64_t> big(Shape{2});
  Tensor<std::uint8_t> bytes(Shape{5});
  Tensor<double> history(Shape{4});
  for (int i = 0; i < 6; ++i) codes[i] = -100 + 37 * i;
  big[0] = -(std::int64_t(1) << 40);
  big[1] = std::int64_t(1) << 50;
  for (int i = 0; i < 5; ++i) bytes[i] = static_cast<std::uint8_t>(250 + i);
  for (int i = 0; i < 4; ++i) history[i] = 1.0 / (i + 1);
  ck.add_tensor("codes", codes);
  ck.add_tensor("big", big);
  ck.add_tensor("bytes", bytes);
  ck.add_tensor("loss_history", history);
  CHECK_THROWS_WITH_AS(ck.add_tensor("codes", codes), doctest::Contains("twice"), Error);

  std::string path = tmp_path(std::string("roundtrip_") + (std::is_same_v<T, float> ? "f32" : "f64") + ".ckpt");
  ck.save(path);
  std::vector<std::uint8_t> raw = bytes_of(path);
  REQUIRE(raw.size() > 8);
  CHECK(std::memcmp(raw.data(), "VQV2CKPT", 8) == 0);

  train::Checkpoint in = train::Checkpoint::load(path);
  CHECK(in.source() == path);
  CHECK(in.fingerprint() == "tiny/a");
  CHECK(in.get_u64("epoch") == 12);
  CHECK(in.get_u64("rng.offset") == 0xFFFFFFFFFFFFull);
  CHECK(in.get_f64("loss") == 0.0123);
  CHECK(in.get_string("note") == "resume me");
  CHECK_THROWS_WITH_AS(in.get_u64("loss"), doctest::Contains("as f64, not u64"), Error);
  CHECK_THROWS_WITH_AS(in.get_u64("missing"), doctest::Contains("no metadata 'missing'"), Error);
  CHECK(in.tensor_count() == 7);
  CHECK(in.dtype("enc.conv.weight") == train::dtype_of<T>());
  CHECK(in.shape("enc.conv.weight") == Shape{4, 2, 3, 3});

  TinyNet<T> fresh;
  fresh.fill(T(-3));
  in.apply_to(fresh, "tiny/a");
  CHECK(same_values(m, fresh));

  Tensor<std::int32_t> c2 = in.get_tensor<std::int32_t>("codes");
  Tensor<std::int64_t> b2 = in.get_tensor<std::int64_t>("big");
  Tensor<std::uint8_t> u2 = in.get_tensor<std::uint8_t>("bytes");
  Tensor<double> h2(Shape{4});
  in.restore_tensor("loss_history", h2);
  CHECK(c2.shape() == Shape{2, 3});
  for (int i = 0; i < 6; ++i) CHECK(c2[i] == codes[i]);
  CHECK(b2[0] == big[0]);
  CHECK(b2[1] == big[1]);
  for (int i = 0; i < 5; ++i) CHECK(u2[i] == bytes[i]);
  for (int i = 0; i < 4; ++i) CHECK(h2[i] == history[i]);
  CHECK_THROWS_WITH_AS(in.get_tensor<float>("codes"), doctest::Contains("is i32"), Error);
  Tensor<double> wrong(Shape{5});
  CHECK_THROWS_WITH_AS(in.restore_tensor("loss_history", wrong), doctest::Contains("has shape [4]"), Error);

  // A loaded checkpoint saves back to the same bytes.
  std::string again = path + ".again";
  in.save(again);
  CHECK(bytes_of(again) == raw);
}

TEST_CASE("Checkpoint stores aliases: save() writes the values at the time of the call") {
  TinyNet<float> m;
  m.fill(1.0f);
  train::Checkpoint ck("tiny/a");
  ck.add_module(m);
  m.fill(2.0f);
  std::string path = tmp_path("alias.ckpt");
  ck.save(path);
  TinyNet<float> out;
  train::Checkpoint::load(path).apply_to(out, "tiny/a");
  CHECK(all_equal(out, 2.0f));
}

TEST_CASE("A run resumed from a checkpoint continues bit for bit like the uninterrupted one") {
  auto grads_for = [](TinyNet<float>& m, int step) {
    Generator g(1000 + step);
    m.visit([&](std::string_view, Parameter<float>& p) { g.normal(p.grad, 0.0f, 1.0f); });
  };
  TinyNet<float> a;
  a.randomize(21);
  train::Adam<float> opt_a(a, {.lr = 0.01, .weight_decay = 0.01});
  for (int s = 1; s <= 3; ++s) {
    opt_a.zero_grad();
    grads_for(a, s);
    opt_a.step();
  }
  train::Checkpoint ck("tiny/a");
  ck.add_module(a, "model");
  ck.add_optimizer(opt_a);
  ck.set_u64("step", 3);
  std::string path = tmp_path("resume.ckpt");
  ck.save(path);
  for (int s = 4; s <= 5; ++s) {
    opt_a.zero_grad();
    grads_for(a, s);
    opt_a.step();
  }

  TinyNet<float> b;
  b.randomize(99);
  train::Adam<float> opt_b(b, {.lr = 0.01, .weight_decay = 0.01});
  train::Checkpoint in = train::Checkpoint::load(path);
  in.apply_to(b, "tiny/a", "model");
  in.apply_to_optimizer(opt_b);
  CHECK(opt_b.step_count() == 3);
  CHECK(in.get_u64("step") == 3);
  CHECK(in.has_tensor("adam.enc.conv.weight.exp_avg_sq"));
  for (int s = 4; s <= 5; ++s) {
    opt_b.zero_grad();
    grads_for(b, s);
    opt_b.step();
  }
  CHECK(same_values(a, b));
  std::vector<Tensor<float>> sa, sb;
  opt_a.visit_state([&](std::string_view, Tensor<float>& t) { sa.push_back(t); });
  opt_b.visit_state([&](std::string_view, Tensor<float>& t) { sb.push_back(t); });
  REQUIRE(sa.size() == sb.size());
  for (std::size_t k = 0; k < sa.size(); ++k) CHECK(std::memcmp(sa[k].data(), sb[k].data(), sa[k].bytes()) == 0);

  // A model-only checkpoint has no optimiser state to restore.
  train::Checkpoint model_only("tiny/a");
  model_only.add_module(b);
  std::int64_t before = opt_b.step_count();
  CHECK_THROWS_WITH_AS(model_only.apply_to_optimizer(opt_b), doctest::Contains("has no optimiser state"), Error);
  CHECK(opt_b.step_count() == before);
}

TEST_CASE("Damaged or mismatched checkpoints fail with one clear sentence and leave the model untouched") {
  const std::string good = save_reference("good.ckpt");
  const std::vector<std::uint8_t> raw = bytes_of(good);
  TinyNet<float> victim;
  victim.fill(7.0f);

  auto load_apply = [&](const std::string& path, auto& module, const std::string& fingerprint) {
    train::Checkpoint::load(path).apply_to(module, fingerprint);
  };

  SUBCASE("truncated") {
    std::string p = tmp_path("truncated.ckpt");
    write_bytes(p, std::vector<std::uint8_t>(raw.begin(), raw.end() - 10));
    std::string expected = "is truncated (expected " + std::to_string(raw.size()) + " bytes, found " +
                           std::to_string(raw.size() - 10) + ")";
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains(expected.c_str()), Error);
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains(p.c_str()), Error);
    write_bytes(p, std::vector<std::uint8_t>(raw.begin(), raw.begin() + 12));
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("is truncated (expected at least"), Error);
    write_bytes(p, {});
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("is truncated"), Error);
  }
  SUBCASE("trailing bytes") {
    std::string p = tmp_path("trailing.ckpt");
    std::vector<std::uint8_t> longer = raw;
    longer.push_back(0);
    write_bytes(p, longer);
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("unexpected bytes after its end"), Error);
  }
  SUBCASE("one flipped bit in the tensor data") {
    std::string p = tmp_path("flipped.ckpt");
    std::vector<std::uint8_t> bad = raw;
    bad[bad.size() - 30] ^= 0x10;
    write_bytes(p, bad);
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("checksum mismatch: the file is corrupt"),
                         Error);
  }
  SUBCASE("wrong magic") {
    std::string p = tmp_path("magic.ckpt");
    std::vector<std::uint8_t> bad = raw;
    bad[0] = 'X';
    write_bytes(p, bad);
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("is not a vqvae2 checkpoint (bad magic)"),
                         Error);
    io::write_file_atomic(p, "PNG or whatever else");
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"), doctest::Contains("bad magic"), Error);
  }
  SUBCASE("wrong format version") {
    std::string p = tmp_path("version.ckpt");
    std::vector<std::uint8_t> bad = raw;
    std::uint32_t v = 2;
    std::memcpy(bad.data() + 8, &v, 4);
    write_bytes(p, bad);
    CHECK_THROWS_WITH_AS(load_apply(p, victim, "tiny/a"),
                         doctest::Contains("has format version 2 but this build reads version 1"), Error);
  }
  SUBCASE("structurally broken behind a valid checksum") {
    // Claims one tensor more than it holds; size and CRC rewritten to match.
    std::string p = tmp_path("malformed.ckpt");
    train::Checkpoint ck("tiny/a");
    ck.save(p);
    std::vector<std::uint8_t> bad = bytes_of(p);
    std::size_t count_at = bad.size() - 8;  // u32 tensor count, then u32 CRC
    std::uint32_t one = 1;
    std::memcpy(bad.data() + count_at, &one, 4);
    std::uint32_t crc = io::crc32(bad.data(), bad.size() - 4);
    std::memcpy(bad.data() + bad.size() - 4, &crc, 4);
    write_bytes(p, bad);
    CHECK_THROWS_WITH_AS(train::Checkpoint::load(p), doctest::Contains("is malformed"), Error);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(load_apply(tmp_path("nowhere.ckpt"), victim, "tiny/a"),
                         doctest::Contains("Cannot read checkpoint"), Error);
  }
  SUBCASE("configuration fingerprint mismatch") {
    CHECK_THROWS_WITH_AS(load_apply(good, victim, "tiny/b"),
                         doctest::Contains("was written for configuration 'tiny/a' but this model is 'tiny/b'"), Error);
  }
  SUBCASE("a parameter the checkpoint lacks") {
    TinyNet<float> more(3, true);
    more.fill(7.0f);
    CHECK_THROWS_WITH_AS(load_apply(good, more, "tiny/a"), doctest::Contains("has no tensor 'enc_b.conv1.weight'"),
                         Error);
    CHECK(all_equal(more, 7.0f));
  }
  SUBCASE("a parameter of another shape") {
    TinyNet<float> wide(5);
    wide.fill(7.0f);
    CHECK_THROWS_WITH_AS(load_apply(good, wide, "tiny/a"),
                         doctest::Contains("'head.weight' has shape [3, 4] but the target has shape [5, 4]"), Error);
    CHECK(all_equal(wide, 7.0f));
  }
  SUBCASE("a parameter of another dtype") {
    TinyNet<double> dbl;
    dbl.fill(7.0);
    CHECK_THROWS_WITH_AS(load_apply(good, dbl, "tiny/a"), doctest::Contains("is f32 but apply_to needs f64"), Error);
    CHECK(all_equal(dbl, 7.0));
  }
  CHECK(all_equal(victim, 7.0f));
}

TEST_CASE("A failed save leaves the earlier checkpoint intact and no temporary behind") {
  const std::string path = save_reference("survivor.ckpt");
  const std::vector<std::uint8_t> before = bytes_of(path);

  TinyNet<float> big(20000);  // ~320 KB: larger than the file-size limit below
  big.randomize(3);
  train::Checkpoint ck("tiny/a");
  ck.add_module(big);

  SUBCASE("the disk fills up (simulated with RLIMIT_FSIZE)") {
    // A write past the limit fails with EFBIG like ENOSPC would, once SIGXFSZ
    // is ignored; the limit is this process's only and is lifted again.
    rlimit old{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto old_handler = signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = 64 * 1024;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      ck.save(path);
    } catch (const Error& e) {
      message = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CHECK(message.find("Cannot save '" + path + "'") != std::string::npos);
    CHECK(message.find("is unchanged") != std::string::npos);
    CHECK(message.find("File too large") != std::string::npos);
  }
  SUBCASE("the target directory does not exist") {
    CHECK_THROWS_WITH_AS(ck.save(tmp_path("no/such/dir/x.ckpt")), doctest::Contains("No such file or directory"),
                         Error);
  }
  SUBCASE("the target is a directory") {
    std::string dir = tmp_path("a_directory.ckpt");
    fs::create_directories(dir);
    CHECK_THROWS_WITH_AS(ck.save(dir), doctest::Contains("renaming"), Error);
    CHECK(fs::is_directory(dir));
  }
  CHECK(bytes_of(path) == before);
  TinyNet<float> back;
  train::Checkpoint::load(path).apply_to(back, "tiny/a");
  TinyNet<float> ref;
  ref.randomize(11);
  CHECK(same_values(back, ref));
  for (const auto& e : fs::directory_iterator(VQVAE2_TEST_TMP_DIR))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}
