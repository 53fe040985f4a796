// NIfTI -> OASIS slices: orientation from the sform/qform, intensity scaling,
// slice selection, centring, the written layout, and the errors for bad volumes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/skip.hpp"
#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/nifti_import.hpp"
#include "vqvae2/data/png.hpp"

using namespace vqvae2;
using namespace vqvae2::data;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::path(VQVAE2_TEST_TMP_DIR) / "nifti" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes a float volume (i fastest) with the given voxel->world matrix, stored
// as an sform or (when it is a rotation) as a qform.
void write_nifti(const fs::path& path, const std::vector<float>& v, int nx, int ny, int nz, const mat44& m,
                 bool as_sform) {
  const int dims[8] = {3, nx, ny, nz, 1, 1, 1, 1};
  nifti_image* nim = nifti_make_new_nim(dims, DT_FLOAT32, 1);
  REQUIRE(nim != nullptr);
  std::copy(v.begin(), v.end(), static_cast<float*>(nim->data));
  if (as_sform) {
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sto_xyz = m;
    nim->qform_code = 0;
  } else {
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->sform_code = 0;
    float dx, dy, dz;
    nifti_mat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x, &nim->qoffset_y,
                           &nim->qoffset_z, &dx, &dy, &dz, &nim->qfac);
  }
  REQUIRE(nifti_set_filenames(nim, path.c_str(), 0, 1) == 0);
  nifti_image_write(nim);
  nifti_image_free(nim);
  REQUIRE(fs::exists(path));
}

mat44 matrix(std::initializer_list<float> rows3x4) {
  mat44 m{};
  auto it = rows3x4.begin();
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) m.m[r][c] = *it++;
  m.m[3][3] = 1;
  return m;
}

// An asymmetric RAS test volume: value = 1 + x + 3y + 7z inside a box, 0 outside.
constexpr int NX = 12, NY = 10, NZ = 8;
float ras_value(int x, int y, int z) {
  const bool inside = x >= 2 && x < NX - 1 && y >= 1 && y < NY - 2 && z >= 1 && z < NZ;
  return inside ? static_cast<float>(1 + x + 3 * y + 7 * z) : 0.0f;
}

std::vector<unsigned char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}
void put_bytes(const fs::path& p, const std::vector<unsigned char>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("Volumes stored in other orientations are permuted and flipped to RAS") {
  fs::path dir = fresh_dir("orient");
  // RAS storage, identity sform.
  std::vector<float> ras(NX * NY * NZ);
  for (int z = 0; z < NZ; ++z)
    for (int y = 0; y < NY; ++y)
      for (int x = 0; x < NX; ++x) ras[(z * NY + y) * NX + x] = ras_value(x, y, z);
  write_nifti(dir / "ras.nii", ras, NX, NY, NZ, matrix({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}), true);

  // Storage axes i = P->A (y), j = S->I (z flipped), k = R->L (x flipped), 2 mm along i.
  std::vector<float> odd(NX * NY * NZ);
  for (int k = 0; k < NX; ++k)
    for (int j = 0; j < NZ; ++j)
      for (int i = 0; i < NY; ++i) odd[(k * NZ + j) * NY + i] = ras_value(NX - 1 - k, i, NZ - 1 - j);
  // world = M (i, j, k): x = -k, y = 2 i, z = -j.
  write_nifti(dir / "pil.nii.gz", odd, NY, NZ, NX, matrix({0, 0, -1, 0, 2, 0, 0, 0, 0, -1, 0, 0}), true);

  // LPS storage (x and y flipped) as a qform: a 180-degree rotation about z.
  std::vector<float> lps(NX * NY * NZ);
  for (int z = 0; z < NZ; ++z)
    for (int j = 0; j < NY; ++j)
      for (int i = 0; i < NX; ++i) lps[(z * NY + j) * NX + i] = ras_value(NX - 1 - i, NY - 1 - j, z);
  write_nifti(dir / "lps.nii", lps, NX, NY, NZ, matrix({-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0}), false);

  Volume a = read_nifti_ras(dir / "ras.nii");
  Volume b = read_nifti_ras(dir / "pil.nii.gz");
  Volume c = read_nifti_ras(dir / "lps.nii");
  CHECK(a.source_orientation == "RAS");
  CHECK(b.source_orientation == "AIL");
  CHECK(c.source_orientation == "LPS");
  CHECK(a.transform == "sform");
  CHECK(c.transform == "qform");
  for (const Volume* v : {&a, &b, &c}) {
    REQUIRE(v->nx == NX);
    REQUIRE(v->ny == NY);
    REQUIRE(v->nz == NZ);
    for (int z = 0; z < NZ; ++z)
      for (int y = 0; y < NY; ++y)
        for (int x = 0; x < NX; ++x) REQUIRE(v->at(x, y, z) == ras_value(x, y, z));
  }
  CHECK(b.dy == doctest::Approx(2.0));
  CHECK(b.dx == doctest::Approx(1.0));
}

TEST_CASE("Axial slices: anterior up, radiological, centred, scaled by the percentile, thin slices skipped") {
  // 20 x 30 x 5 volume. z = 0: empty; z = 1: 4 voxels (below 15% of the largest); z = 2..4: a 5 x 8 block
  // (x 3..7, y 10..17) with one bright voxel at the right-anterior corner (x 7, y 17).
  const int nx = 20, ny = 30, nz = 5;
  Volume v;
  v.nx = nx;
  v.ny = ny;
  v.nz = nz;
  v.voxels.assign(nx * ny * nz, 0.0f);
  auto set = [&](int x, int y, int z, float val) { v.voxels[(z * ny + y) * nx + x] = val; };
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 2; ++y) set(x, y, 1, 50);
  for (int z = 2; z < nz; ++z)
    for (int x = 3; x <= 7; ++x)
      for (int y = 10; y <= 17; ++y) set(x, y, z, 50);
  for (int z = 2; z < nz; ++z) set(7, 17, z, 200);

  SliceOptions opt;
  opt.size = 16;
  opt.percentile = 100;  // hi = the largest value (200)
  float hi = 0;
  std::vector<AxialSlice> s = axial_slices(v, opt, &hi);
  CHECK(hi == 200.0f);
  REQUIRE(s.size() == 3);
  CHECK(s[0].z == 2);
  CHECK(s[0].area == 40);
  const GreyImage& img = s[0].image;
  REQUIRE(img.width == 16);
  REQUIRE(img.height == 16);
  // Box: 8 rows (anterior y=17 first) x 5 columns, centred in 16x16 by the half-to-even rule.
  int r0 = 16, r1 = -1, c0 = 16, c1 = -1, nonzero = 0;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      if (img.at(r, c)) {
        ++nonzero;
        r0 = std::min(r0, r);
        r1 = std::max(r1, r);
        c0 = std::min(c0, c);
        c1 = std::max(c1, c);
      }
  CHECK(nonzero == 40);
  CHECK(r1 - r0 + 1 == 8);
  CHECK(c1 - c0 + 1 == 5);
  CHECK(r0 + r1 == 15);                  // exactly centred vertically
  CHECK(std::abs((c0 + c1) - 15) <= 1);  // within half a pixel horizontally
  CHECK(img.at(r0, c0) == 255);          // anterior up, patient right on image left
  CHECK(img.at(r1, c1) == 64);           // round(50 / 200 * 255) = round(63.75)

  opt.radiological = false;
  const std::vector<AxialSlice> neuro_slices = axial_slices(v, opt);
  const GreyImage& neuro = neuro_slices[0].image;
  int rn = -1, cn = -1, cmax = -1;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) {
      if (neuro.at(r, c) == 255) rn = r, cn = c;
      if (neuro.at(r, c)) cmax = std::max(cmax, c);
    }
  CHECK(rn == r0);
  CHECK(cn == cmax);  // neurological: the patient's right on the image's right

  // numpy.percentile (linear) of the non-zero voxels: 4 + 3 * 39 = 121 values of 50, then 3 of 200.
  std::vector<double> sorted(121, 50.0);
  sorted.insert(sorted.end(), 3, 200.0);
  for (double q : {99.5, 98.0, 97.0, 50.0}) {
    const double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const double expect = sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[lo + 1] - sorted[lo]);
    opt.percentile = q;
    axial_slices(v, opt, &hi);
    CHECK(hi == doctest::Approx(expect).epsilon(1e-6));
  }
  opt.percentile = 98.0;  // 50 + 0.54 * 150: between the last 50 and the first 200
  axial_slices(v, opt, &hi);
  CHECK(hi == doctest::Approx(131.0).epsilon(1e-5));
}

TEST_CASE("Split rules") {
  SplitRule a = SplitRule::parse("8:1:1");
  SplitRule b = SplitRule::parse("train,train,train,train,train,train,train,train,validate,test");
  CHECK(a.by_residue == b.by_residue);
  CHECK(a.split_of(0) == "train");
  CHECK(a.split_of(7) == "train");
  CHECK(a.split_of(18) == "validate");
  CHECK(a.split_of(129) == "test");
  CHECK(SplitRule::parse("1:0:1").str() == "train,test");
  CHECK_THROWS_WITH_AS(SplitRule::parse("train,valid"), doctest::Contains("unknown split 'valid'"), Error);
  CHECK_THROWS_WITH_AS(SplitRule::parse("8:1"), doctest::Contains("three counts"), Error);
  CHECK_THROWS_WITH_AS(SplitRule::parse("0:0:0"), doctest::Contains("assigns no slice"), Error);
  CHECK_THROWS_WITH_AS(SplitRule::parse("8:x:1"), doctest::Contains("bad count 'x'"), Error);
}

TEST_CASE("Bad volumes: missing, not NIfTI, corrupt .nii.gz, 2-D") {
  fs::path dir = fresh_dir("bad");
  CHECK_THROWS_WITH_AS(read_nifti_ras(dir / "none.nii.gz"), doctest::Contains("none.nii.gz' does not exist"), Error);

  std::vector<unsigned char> text(600, 'x');
  put_bytes(dir / "text.nii", text);
  CHECK_THROWS_WITH_AS(read_nifti_ras(dir / "text.nii"), doctest::Contains("text.nii' is not a NIfTI-1 volume"), Error);

  // Varied voxels, so the compressed data is most of the file and cutting it loses voxels.
  std::vector<float> vol(40 * 40 * 40);
  for (std::size_t i = 0; i < vol.size(); ++i) vol[i] = static_cast<float>((i * 2654435761u) % 1000);
  write_nifti(dir / "good.nii.gz", vol, 40, 40, 40, matrix({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}), true);
  CHECK_NOTHROW(read_nifti_ras(dir / "good.nii.gz"));
  auto bytes = file_bytes(dir / "good.nii.gz");
  REQUIRE(bytes.size() > 200);
  put_bytes(dir / "cut.nii.gz", std::vector<unsigned char>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  CHECK_THROWS_WITH_AS(read_nifti_ras(dir / "cut.nii.gz"), doctest::Contains("cut.nii.gz' is truncated or corrupt"),
                       Error);
  std::vector<unsigned char> garbled = bytes;
  for (std::size_t i = 20; i < garbled.size(); i += 3) garbled[i] ^= 0x5A;
  put_bytes(dir / "garbled.nii.gz", garbled);
  CHECK_THROWS_AS(read_nifti_ras(dir / "garbled.nii.gz"), Error);

  // Header intact, compressed voxels damaged: inflate or the CRC check fails.
  std::vector<unsigned char> damaged = bytes;
  for (std::size_t i = damaged.size() * 2 / 3; i < damaged.size() - 8; i += 5) damaged[i] ^= 0x33;
  put_bytes(dir / "damaged.nii.gz", damaged);
  CHECK_THROWS_WITH_AS(read_nifti_ras(dir / "damaged.nii.gz"),
                       doctest::Contains("damaged.nii.gz' is truncated or corrupt"), Error);

  std::vector<float> flat(40 * 40, 1.0f);
  write_nifti(dir / "flat.nii", flat, 40, 40, 1, matrix({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}), true);
  CHECK_THROWS_WITH_AS(read_nifti_ras(dir / "flat.nii"),
                       doctest::Contains("flat.nii' is 40x40x1 voxels, not a 3-D volume"), Error);
}

namespace {
const fs::path kCh2bet = "/usr/share/mricron/templates/ch2bet.nii.gz";  // Debian's mricron-data
}  // namespace

TEST_CASE("ch2bet.nii.gz imports into the OASIS layout (needs mricron-data)") {
  if (!fs::exists(kCh2bet)) {
    test::skip_test(kCh2bet.string() + " is not installed (Debian package mricron-data, tools/install-deps.sh)");
    return;
  }
  fs::path out = fresh_dir("ch2bet");
  NiftiImportOptions opt;
  opt.prefix = "case_901";
  NiftiImportReport rep = import_nifti(kCh2bet, out, opt);
  // The reference procedure (shared/data/colin27_ch2bet/PROVENANCE.md) kept z = 17..145: 104 / 13 / 12.
  CHECK(rep.nx == 181);
  CHECK(rep.ny == 217);
  CHECK(rep.nz == 181);
  CHECK(rep.files.size() == 129);
  CHECK(rep.train == 104);
  CHECK(rep.validate == 13);
  CHECK(rep.test == 12);
  CHECK(rep.z.front() == 17);
  CHECK(rep.z.back() == 145);
  CHECK(rep.hi == doctest::Approx(120.0));
  CHECK(fs::exists(out / "manifest_case_901.csv"));
  for (const char* split : {"train", "validate", "test"}) {
    ImageSet set = load_oasis_split(out, split);
    CHECK(set.count == (split[0] == 't' && split[1] == 'r' ? 104 : split[0] == 'v' ? 13 : 12));
    for (std::int64_t i = 0; i < set.count; ++i) {
      const std::uint8_t* p = set.image(i);
      const auto lit = std::count_if(p, p + set.image_bytes(), [](std::uint8_t v) { return v > 0; });
      REQUIRE(lit > 2000);  // at least ~15% of the largest brain slice
      REQUIRE(p[0] == 0);
    }
  }
  CHECK(fs::exists(out / "keras_png_slices_validate" / "case_901_slice_8.png"));
  CHECK(fs::exists(out / "keras_png_slices_test" / "case_901_slice_9.png"));
}

TEST_CASE("ch2bet.nii.gz imports like the Python reference's slices (needs ../shared/data and mricron-data)") {
  // Against the slices the Python procedure produced from the same file.
  fs::path ref = fs::path(VQVAE2_SHARED_DATA_DIR) / "colin27_ch2bet";
  if (!fs::is_directory(ref) || !fs::exists(kCh2bet)) {
    test::skip_test("needs " + ref.string() + " and " + kCh2bet.string());
    return;
  }
  fs::path out = fresh_dir("ch2bet_vs_python");
  NiftiImportOptions opt;
  opt.prefix = "case_901";
  NiftiImportReport rep = import_nifti(kCh2bet, out, opt);
  REQUIRE(rep.files.size() == 129);
  double worst = 0, total = 0;
  int identical = 0;
  for (std::size_t k = 0; k < rep.files.size(); ++k) {
    const std::string split = opt.split.split_of(static_cast<std::int64_t>(k));
    GreyImage mine = read_png_grey(out / rep.files[k]);
    GreyImage theirs =
        read_png_grey(ref / ("keras_png_slices_" + split) / ("case_901_slice_" + std::to_string(k) + ".nii.png"));
    REQUIRE(theirs.pixels.size() == mine.pixels.size());
    double mad = 0;
    for (std::size_t i = 0; i < mine.pixels.size(); ++i) mad += std::abs(int(mine.pixels[i]) - int(theirs.pixels[i]));
    mad /= static_cast<double>(mine.pixels.size());
    worst = std::max(worst, mad);
    total += mad;
    identical += mine.pixels == theirs.pixels;
  }
  MESSAGE("ch2bet vs Python reference: mean abs diff " << total / rep.files.size() << " (worst slice " << worst << "), "
                                                       << identical << "/" << rep.files.size() << " slices identical");
  // A one-pixel shift of a slice already gives a mean abs diff above 1 grey level.
  CHECK(worst < 0.5);
}
