// Data pipeline: PNG reading/writing with its error sentences, image folders and
// OASIS splits, and the batch loader (shuffling, normalisation, prefetch, resume).
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "support/skip.hpp"
#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/loader.hpp"
#include "vqvae2/data/nifti_import.hpp"
#include "vqvae2/data/png.hpp"

using namespace vqvae2;
using namespace vqvae2::data;
namespace fs = std::filesystem;

namespace {

// A fresh, empty folder under the test temporary directory.
fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::path(VQVAE2_TEST_TMP_DIR) / "data" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Deterministic test pixels that differ per image and position.
GreyImage pattern(int w, int h, int seed) {
  GreyImage img;
  img.width = w;
  img.height = h;
  img.pixels.resize(static_cast<std::size_t>(w) * h);
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) img.at(r, c) = static_cast<std::uint8_t>((r * 31 + c * 7 + seed * 53) % 256);
  return img;
}

std::vector<unsigned char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

void put_bytes(const fs::path& p, const unsigned char* data, std::size_t n) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
}

// stb_image_write cannot write 16-bit PNGs, so one is assembled by hand: IHDR,
// one zlib-compressed IDAT (filter byte 0 per row), IEND.
void write_png16_grey(const fs::path& p, int w, int h) {
  auto be32 = [](std::vector<unsigned char>& v, std::uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<unsigned char>(x >> s));
  };
  auto chunk = [&](std::vector<unsigned char>& out, const char* type, const std::vector<unsigned char>& data) {
    be32(out, static_cast<std::uint32_t>(data.size()));
    std::vector<unsigned char> body(type, type + 4);
    body.insert(body.end(), data.begin(), data.end());
    out.insert(out.end(), body.begin(), body.end());
    be32(out, static_cast<std::uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
  };
  std::vector<unsigned char> png(data::detail::kPngSignature, data::detail::kPngSignature + 8);
  std::vector<unsigned char> ihdr;
  be32(ihdr, static_cast<std::uint32_t>(w));
  be32(ihdr, static_cast<std::uint32_t>(h));
  ihdr.insert(ihdr.end(), {16, 0, 0, 0, 0});  // bit depth 16, greyscale, deflate, no filter, no interlace
  chunk(png, "IHDR", ihdr);
  std::vector<unsigned char> raw;
  for (int r = 0; r < h; ++r) {
    raw.push_back(0);
    for (int c = 0; c < w; ++c) {
      raw.push_back(static_cast<unsigned char>(r));
      raw.push_back(static_cast<unsigned char>(c));
    }
  }
  uLongf len = compressBound(static_cast<uLong>(raw.size()));
  std::vector<unsigned char> z(len);
  REQUIRE(compress(z.data(), &len, raw.data(), static_cast<uLong>(raw.size())) == Z_OK);
  z.resize(len);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  put_bytes(p, png.data(), png.size());
}

// A set of n images of w x h with distinct contents.
std::shared_ptr<const ImageSet> make_set(int n, int w, int h) {
  auto set = std::make_shared<ImageSet>();
  set->count = n;
  set->width = w;
  set->height = h;
  set->pixels.resize(static_cast<std::size_t>(n) * w * h);
  for (int i = 0; i < n; ++i) {
    GreyImage img = pattern(w, h, i);
    std::copy(img.pixels.begin(), img.pixels.end(), set->image(i));
    set->names.push_back("img_" + std::to_string(i) + ".png");
  }
  return set;
}

bool same_tensor(const Tensor<float>& a, const Tensor<float>& b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

TEST_CASE("PNG round trip keeps every pixel and leaves no temporary file") {
  fs::path dir = fresh_dir("roundtrip");
  GreyImage img = pattern(37, 23, 5);
  write_png_grey(dir / "a.png", img);
  GreyImage back = read_png_grey(dir / "a.png");
  CHECK(back.width == 37);
  CHECK(back.height == 23);
  CHECK(back.pixels == img.pixels);
  // Overwriting replaces the file whole.
  GreyImage other = pattern(37, 23, 6);
  write_png_grey(dir / "a.png", other);
  CHECK(read_png_grey(dir / "a.png").pixels == other.pixels);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("Bad PNGs are rejected, each with its own sentence naming the file") {
  fs::path dir = fresh_dir("bad_png");
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "missing.png"), doctest::Contains("missing.png' does not exist"), Error);

  std::string text = "this is a text file, not an image\n";
  put_bytes(dir / "text.png", reinterpret_cast<const unsigned char*>(text.data()), text.size());
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "text.png"), doctest::Contains("text.png' is not a PNG file"), Error);

  write_png_grey(dir / "good.png", pattern(64, 64, 1));
  auto bytes = file_bytes(dir / "good.png");
  REQUIRE(bytes.size() > 100);
  put_bytes(dir / "truncated.png", bytes.data(), bytes.size() / 2);
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "truncated.png"),
                       doctest::Contains("truncated.png' is corrupt or truncated"), Error);
  put_bytes(dir / "stub.png", bytes.data(), 12);  // signature, then the IHDR cut short
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "stub.png"), doctest::Contains("stub.png' is a corrupt PNG"), Error);

  std::vector<unsigned char> rgb(16 * 16 * 3, 100), ga(16 * 16 * 2, 100);
  REQUIRE(stbi_write_png((dir / "rgb.png").c_str(), 16, 16, 3, rgb.data(), 16 * 3));
  REQUIRE(stbi_write_png((dir / "ga.png").c_str(), 16, 16, 2, ga.data(), 16 * 2));
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "rgb.png"), doctest::Contains("rgb.png' is an 8-bit RGB"), Error);
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "ga.png"), doctest::Contains("ga.png' is an 8-bit grey+alpha"), Error);

  write_png16_grey(dir / "deep.png", 8, 8);
  CHECK_THROWS_WITH_AS(read_png_grey(dir / "deep.png"), doctest::Contains("deep.png' is a 16-bit greyscale"), Error);
}

TEST_CASE("Natural order sorts numbers by value") {
  CHECK(natural_less("slice_2.png", "slice_10.png"));
  CHECK_FALSE(natural_less("slice_10.png", "slice_2.png"));
  CHECK(natural_less("case_9_slice_31", "case_10_slice_0"));
  CHECK(natural_less("a", "b"));
  CHECK(natural_less("x1", "x01") != natural_less("x01", "x1"));  // equal values: a plain tie-break, still strict
  CHECK_FALSE(natural_less("same", "same"));
}

TEST_CASE("Folders: listing, OASIS splits and the errors for missing, empty and ill-sized folders") {
  fs::path root = fresh_dir("oasis");
  CHECK_THROWS_WITH_AS(list_pngs(root / "nope"), doctest::Contains("nope' does not exist"), Error);
  CHECK_THROWS_WITH_AS(oasis_split_folder(root, "train"), doctest::Contains("has no folder keras_png_slices_train"),
                       Error);
  CHECK_THROWS_WITH_AS(oasis_split_folder(root, "training"), doctest::Contains("unknown split 'training'"), Error);
  CHECK_THROWS_WITH_AS(oasis_split_folder(root / "nope", "train"), doctest::Contains("nope' does not exist"), Error);

  CHECK_FALSE(has_oasis_split(root, "train"));
  fs::path train = root / "keras_png_slices_train";
  fs::create_directories(train);
  CHECK(has_oasis_split(root, "train"));
  put_bytes(train / "notes.txt", reinterpret_cast<const unsigned char*>("x"), 1);
  CHECK_THROWS_WITH_AS(load_oasis_split(root, "train"), doctest::Contains("holds no .png files"), Error);

  // Natural order: slice_2 before slice_10; contents follow the names.
  for (int k : {10, 2, 0, 1})
    write_png_grey(train / ("case_1_slice_" + std::to_string(k) + ".png"), pattern(256, 256, k));
  ImageSet set = load_oasis_split(root, "train", LoadOptions{.threads = 2});
  REQUIRE(set.count == 4);
  CHECK(set.width == 256);
  CHECK(set.height == 256);
  std::vector<std::string> expected{"case_1_slice_0.png", "case_1_slice_1.png", "case_1_slice_2.png",
                                    "case_1_slice_10.png"};
  CHECK(set.names == expected);
  const int ks[4] = {0, 1, 2, 10};
  for (int i = 0; i < 4; ++i) {
    GreyImage p = pattern(256, 256, ks[i]);
    CHECK(std::equal(p.pixels.begin(), p.pixels.end(), set.image(i)));
  }

  // One image of another size: named in the error, by default and with other sizes allowed.
  write_png_grey(train / "case_1_slice_3.png", pattern(128, 128, 3));
  CHECK_THROWS_WITH_AS(load_oasis_split(root, "train"),
                       doctest::Contains("case_1_slice_3.png' is 128x128, expected 256x256"), Error);
  CHECK_THROWS_WITH_AS(load_oasis_split(root, "train", LoadOptions{.allow_other_sizes = true}),
                       doctest::Contains("all images must share one size"), Error);

  fs::path odd = fresh_dir("odd");
  write_png_grey(odd / "a.png", pattern(100, 60, 0));
  CHECK_THROWS_WITH_AS(load_folder(odd, LoadOptions{.allow_other_sizes = true}),
                       doctest::Contains("a.png' is 100x60; sides must be multiples of 8"), Error);
  fs::path small = fresh_dir("small");
  write_png_grey(small / "a.png", pattern(64, 32, 0));
  write_png_grey(small / "b.png", pattern(64, 32, 1));
  ImageSet s = load_folder(small, LoadOptions{.allow_other_sizes = true});
  CHECK(s.count == 2);
  CHECK(s.width == 64);
  CHECK(s.height == 32);
  CHECK(s.image(1)[5] == pattern(64, 32, 1).pixels[5]);

  // A corrupt file among good ones is reported by name.
  std::string junk = "junk";
  put_bytes(small / "c.png", reinterpret_cast<const unsigned char*>(junk.data()), junk.size());
  CHECK_THROWS_WITH_AS(load_folder(small, LoadOptions{.allow_other_sizes = true}),
                       doctest::Contains("c.png' is not a PNG file"), Error);
}

TEST_CASE("Epoch orders are permutations that depend only on (seed, epoch)") {
  std::vector<std::int64_t> a, b, c, d;
  epoch_order(11, 3, 1000, true, a);
  epoch_order(11, 3, 1000, true, b);
  epoch_order(11, 4, 1000, true, c);
  epoch_order(12, 3, 1000, true, d);
  std::vector<std::int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 1000; ++i) REQUIRE(sorted[static_cast<std::size_t>(i)] == i);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != d);
  std::vector<std::int64_t> identity;
  epoch_order(11, 3, 1000, false, identity);
  CHECK(std::is_sorted(identity.begin(), identity.end()));
  CHECK(a != identity);
  // Every position receives many different images across epochs (not a fixed rotation).
  std::set<std::int64_t> first;
  for (int e = 0; e < 50; ++e) {
    epoch_order(11, e, 1000, true, c);
    first.insert(c[0]);
  }
  CHECK(first.size() > 40);
}

TEST_CASE("BatchLoader: batches are [B,1,H,W] in [-1,1] matching the bytes, and an epoch visits every image once") {
  auto set = make_set(10, 16, 8);
  BatchLoader<float> loader(set, LoaderOptions{.batch_size = 4, .shuffle = true, .drop_last = false, .seed = 3});
  CHECK(loader.batches_per_epoch() == 3);
  std::vector<std::int64_t> seen;
  for (int b = 0; b < 3; ++b) {
    const Tensor<float>& x = loader.next();
    const auto& idx = loader.last_indices();
    CHECK(x.shape() == nchw(b < 2 ? 4 : 2, 1, 8, 16));
    REQUIRE(static_cast<std::int64_t>(idx.size()) == x.dim(0));
    for (std::int64_t i = 0; i < x.dim(0); ++i) {
      const std::uint8_t* src = set->image(idx[static_cast<std::size_t>(i)]);
      for (int p = 0; p < 8 * 16; ++p) {
        const double expect = static_cast<double>(src[p]) / 127.5 - 1.0;
        REQUIRE(std::abs(x[i * 128 + p] - expect) <= 1e-6);
      }
    }
    seen.insert(seen.end(), idx.begin(), idx.end());
  }
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i < 10; ++i) CHECK(seen[static_cast<std::size_t>(i)] == i);
  CHECK(loader.position() == LoaderPosition{1, 0});

  // The ends of the byte range land exactly on -1 and 1.
  ImageSet ends;
  ends.count = 1;
  ends.width = 2;
  ends.height = 1;
  ends.pixels = {0, 255};
  SequentialBatches<float> seq(ends, 1);
  REQUIRE(seq.next());
  CHECK(seq.batch()[0] == -1.0f);
  CHECK(seq.batch()[1] == 1.0f);

  BatchLoader<float> dropping(set, LoaderOptions{.batch_size = 4, .drop_last = true});
  CHECK(dropping.batches_per_epoch() == 2);
  CHECK_THROWS_WITH_AS(BatchLoader<float>(set, LoaderOptions{.batch_size = 11, .drop_last = true}),
                       doctest::Contains("10 images are fewer than one batch of 11"), Error);
  CHECK_THROWS_AS(dropping.seek(0, 2), Error);
}

TEST_CASE("BatchLoader: the prefetch thread yields exactly the batches of a synchronous pass") {
  auto set = make_set(37, 8, 8);
  LoaderOptions opt{.batch_size = 5, .shuffle = true, .drop_last = true, .seed = 99, .prefetch = true};
  BatchLoader<float> threaded(set, opt);
  opt.prefetch = false;
  BatchLoader<float> sync(set, opt);
  for (int step = 0; step < 7 * 3 + 2; ++step) {  // across epoch boundaries
    LoaderPosition pt = threaded.position(), ps = sync.position();
    REQUIRE(pt == ps);
    const Tensor<float>& a = threaded.next();
    const Tensor<float>& b = sync.next();
    REQUIRE(same_tensor(a, b));
    REQUIRE(threaded.last_indices() == sync.last_indices());
    REQUIRE(threaded.last_position() == pt);
  }
  CHECK(threaded.position() == LoaderPosition{3, 2});
  // Different epochs give different orders.
  std::vector<std::int64_t> e0, e1;
  epoch_order(99, 0, 37, true, e0);
  epoch_order(99, 1, 37, true, e1);
  CHECK(e0 != e1);
}

TEST_CASE("BatchLoader: resuming at (epoch, batch) gives the batches the uninterrupted run saw") {
  auto set = make_set(23, 8, 4);
  LoaderOptions opt{.batch_size = 4, .shuffle = true, .drop_last = true, .seed = 5, .prefetch = true};
  BatchLoader<float> full(set, opt);  // 5 batches per epoch
  std::vector<Tensor<float>> batches;
  std::vector<LoaderPosition> where;
  for (int i = 0; i < 14; ++i) {
    where.push_back(full.position());
    batches.push_back(full.next().clone());
  }
  for (int start : {0, 3, 5, 8}) {
    BatchLoader<float> resumed(set, opt);
    resumed.seek(where[static_cast<std::size_t>(start)].epoch, where[static_cast<std::size_t>(start)].batch);
    for (int i = start; i < 14; ++i) REQUIRE(same_tensor(resumed.next(), batches[static_cast<std::size_t>(i)]));
  }
  // Seeking back on a running prefetching loader works too.
  full.seek(1, 2);
  CHECK(same_tensor(full.next(), batches[7]));
  CHECK(same_tensor(full.next(), batches[8]));
  // A consumer that keeps an alias of a batch keeps its contents.
  Tensor<float> kept = full.next();
  Tensor<float> copy = kept.clone();
  for (int i = 0; i < 4; ++i) full.next();
  CHECK(same_tensor(kept, copy));
}

TEST_CASE("SequentialBatches visits every image once, in order, with a short last batch") {
  auto set = make_set(10, 8, 8);
  SequentialBatches<float> seq(*set, 4);
  CHECK(seq.num_batches() == 3);
  std::int64_t expected_first = 0;
  int batches = 0;
  while (seq.next()) {
    CHECK(seq.first() == expected_first);
    CHECK(seq.count() == (batches < 2 ? 4 : 2));
    for (std::int64_t i = 0; i < seq.count(); ++i)
      CHECK(seq.batch()[i * 64 + 9] == ByteToUnit<float>{}(set->image(seq.first() + i)[9]));
    expected_first += seq.count();
    ++batches;
  }
  CHECK(batches == 3);
  seq.reset();
  CHECK(seq.next());
  CHECK(seq.first() == 0);
}

TEST_CASE("Real slices imported from ch2bet.nii.gz load as 256x256 greyscale batches (needs mricron-data)") {
  // The same checks as the shared-data case below, on slices this machine can make: the
  // project's importer turns Debian's ch2bet T1 brain into the OASIS layout.
  const fs::path input = "/usr/share/mricron/templates/ch2bet.nii.gz";
  if (!fs::exists(input)) {
    test::skip_test(input.string() + " is not installed (Debian package mricron-data, tools/install-deps.sh)");
    return;
  }
  fs::path root = fresh_dir("ch2bet");
  NiftiImportOptions opt;
  opt.prefix = "case_901";
  const NiftiImportReport rep = import_nifti(input, root, opt);
  REQUIRE(rep.train == 104);
  ImageSet val = load_oasis_split(root, "validate");
  CHECK(val.count == static_cast<std::int64_t>(list_pngs(oasis_split_folder(root, "validate")).size()));
  CHECK(val.count == 13);
  CHECK(val.width == 256);
  CHECK(val.height == 256);
  for (std::int64_t i = 0; i < val.count; ++i) {
    CHECK(val.image(i)[0] == 0);
    CHECK(*std::max_element(val.image(i), val.image(i) + val.image_bytes()) > 100);
  }
  auto train = std::make_shared<const ImageSet>(load_oasis_split(root, "train"));
  CHECK(train->count == 104);
  CHECK(train->names.front() == "case_901_slice_0.png");
  BatchLoader<float> loader(train, LoaderOptions{.batch_size = 16, .seed = 1});
  const Tensor<float>& x = loader.next();
  CHECK(x.shape() == nchw(16, 1, 256, 256));
  CHECK(*std::min_element(x.begin(), x.end()) == -1.0f);
  CHECK(*std::max_element(x.begin(), x.end()) <= 1.0f);
  CHECK(*std::max_element(x.begin(), x.end()) > 0.0f);
}

TEST_CASE("Real OASIS-layout slices from the shared data load as 256x256 greyscale (needs ../shared/data)") {
  fs::path kaggle = fs::path(VQVAE2_SHARED_DATA_DIR) / "kaggle_alz_mri_nondemented_oasislike";
  fs::path colin = fs::path(VQVAE2_SHARED_DATA_DIR) / "colin27_ch2bet";
  if (!fs::is_directory(kaggle) || !fs::is_directory(colin)) {
    test::skip_test("shared data not found under " VQVAE2_SHARED_DATA_DIR);
    return;
  }
  ImageSet val = load_oasis_split(kaggle, "validate");
  CHECK(val.count == static_cast<std::int64_t>(list_pngs(oasis_split_folder(kaggle, "validate")).size()));
  CHECK(val.count > 0);
  CHECK(val.width == 256);
  CHECK(val.height == 256);
  // Brain slices: a black border and a bright interior.
  for (std::int64_t i = 0; i < val.count; i += 37) {
    CHECK(val.image(i)[0] == 0);
    CHECK(*std::max_element(val.image(i), val.image(i) + val.image_bytes()) > 100);
  }
  auto train = std::make_shared<const ImageSet>(load_oasis_split(colin, "train"));
  CHECK(train->count == 104);
  CHECK(train->names.front() == "case_901_slice_0.nii.png");
  BatchLoader<float> loader(train, LoaderOptions{.batch_size = 16, .seed = 1});
  const Tensor<float>& x = loader.next();
  CHECK(x.shape() == nchw(16, 1, 256, 256));
  CHECK(*std::min_element(x.begin(), x.end()) == -1.0f);
  CHECK(*std::max_element(x.begin(), x.end()) <= 1.0f);
}
