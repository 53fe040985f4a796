// T1 volume (.nii / .nii.gz, NIfTI-1 through nifticlib) -> OASIS-layout axial
// PNG slices, the same procedure as the Python preparation of colin27_ch2bet:
//
// 1. Orientation: the voxel axes are permuted and flipped to RAS (x: left ->
//    right, y: posterior -> anterior, z: inferior -> superior) using the sform
//    when sform_code > 0, else the qform when qform_code > 0, else the voxel
//    axes are taken as RAS already (nifticlib's "method 1"). Only axis
//    permutations and flips are applied: an oblique volume is snapped to the
//    closest axes (like nibabel's as_closest_canonical), and voxels are NOT
//    resampled, so a volume whose in-plane spacing is not 1 mm gives slices at
//    its own spacing (the report shows the spacing).
// 2. Intensity: lo = 0, hi = the 99.5th percentile (linear interpolation, as
//    numpy) of the non-zero voxels of the whole volume; v -> round(255 v / hi),
//    clipped to 0..255; v <= 0 -> 0. scl_slope / scl_inter are applied first.
// 3. Slices: axial slices whose brain area (voxels > 0) is below 15% of the
//    largest slice's area are skipped; k numbers the kept ones from inferior up.
// 4. Image: anterior up; radiological by default (the patient's right on the
//    image's left, as OASIS); padded / cropped to 256x256 with the slice's brain
//    bounding box centred.
// 5. Files: <prefix>_slice_<k>.png in keras_png_slices_{train,validate,test},
//    the split chosen by k mod (rule length), plus manifest_<prefix>.csv.
#pragma once

#include <nifti1_io.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/data/png.hpp"

namespace vqvae2::data {

// A scalar volume in RAS order: x fastest, then y, then z.
struct Volume {
  int nx = 0, ny = 0, nz = 0;
  float dx = 1, dy = 1, dz = 1;  // voxel size in mm along x, y, z after reorientation
  std::vector<float> voxels;
  std::string source_orientation;  // e.g. "RAS", "LPI": where the file's i, j, k axes point
  std::string transform;           // "sform", "qform" or "none (axes taken as RAS)"

  float at(int x, int y, int z) const {
    return voxels[(static_cast<std::size_t>(z) * ny + static_cast<std::size_t>(y)) * nx + static_cast<std::size_t>(x)];
  }
};

namespace detail {

struct NiftiDeleter {
  void operator()(nifti_image* p) const { nifti_image_free(p); }
};

template <class S>
void convert_voxels(const void* data, std::size_t n, float slope, float inter, std::vector<float>& out) {
  const S* p = static_cast<const S*>(data);
  out.resize(n);
  const bool scaled = slope != 0.0f && std::isfinite(slope) && std::isfinite(inter);
  for (std::size_t i = 0; i < n; ++i) {
    float v = static_cast<float>(p[i]);
    if (scaled) v = v * slope + inter;
    out[i] = std::isfinite(v) ? v : 0.0f;
  }
}

// Direction letter of the positive end of a nifti orientation code.
inline char orientation_letter(int code) {
  switch (code) {
    case NIFTI_L2R:
      return 'R';
    case NIFTI_R2L:
      return 'L';
    case NIFTI_P2A:
      return 'A';
    case NIFTI_A2P:
      return 'P';
    case NIFTI_I2S:
      return 'S';
    case NIFTI_S2I:
      return 'I';
    default:
      return '?';
  }
}

// numpy.percentile(values, q) with linear interpolation; reorders `values`.
inline float percentile_linear(std::vector<float>& values, double q) {
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const double frac = pos - static_cast<double>(lo);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  if (lo + 1 >= values.size() || frac == 0.0) return static_cast<float>(a);
  const double b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo) + 1, values.end());
  return static_cast<float>(a + frac * (b - a));
}

inline int floor_div2(int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

}  // namespace detail

// Reads a 3-D NIfTI-1 volume and reorients it to RAS (see the file comment).
inline Volume read_nifti_ras(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  VQVAE2_CHECK(std::filesystem::exists(path, ec), "read_nifti: file '", name, "' does not exist.");
  VQVAE2_CHECK(std::filesystem::is_regular_file(path, ec), "read_nifti: '", name, "' is not a regular file.");
  // nifticlib prints its own diagnostics to stderr; this function reports one sentence instead.
  nifti_set_debug_level(0);
  std::unique_ptr<nifti_image, detail::NiftiDeleter> nim(nifti_image_read(name.c_str(), 0));
  VQVAE2_CHECK(nim != nullptr, "read_nifti: '", name,
               "' is not a NIfTI-1 volume nifticlib can read (expected a .nii or .nii.gz file with a valid header).");
  VQVAE2_CHECK(nim->nx > 1 && nim->ny > 1 && nim->nz > 1, "read_nifti: '", name, "' is ", nim->nx, "x", nim->ny, "x",
               nim->nz, " voxels, not a 3-D volume (the importer needs more than one voxel along each axis).");
  const long long extra =
      static_cast<long long>(std::max(nim->nt, 1)) * std::max(nim->nu, 1) * std::max(nim->nv, 1) * std::max(nim->nw, 1);
  VQVAE2_CHECK(extra == 1, "read_nifti: '", name, "' holds ", extra, " volumes (", nim->ndim,
               "-D); pass a single 3-D volume.");
  switch (nim->datatype) {
    case DT_UINT8:
    case DT_INT8:
    case DT_INT16:
    case DT_UINT16:
    case DT_INT32:
    case DT_UINT32:
    case DT_INT64:
    case DT_UINT64:
    case DT_FLOAT32:
    case DT_FLOAT64:
      break;
    default:
      fail("read_nifti: '", name, "' stores voxels as ", nifti_datatype_string(nim->datatype),
           ", which is not a scalar integer or real type.");
  }
  // The voxels are read here rather than by nifti_image_load, which pads a
  // short read with zeros and only warns; zlib's gzread also reads plain files.
  const std::size_t n = static_cast<std::size_t>(nim->nx) * nim->ny * nim->nz;
  const std::size_t data_bytes = n * static_cast<std::size_t>(nim->nbyper);
  std::vector<unsigned char> data(data_bytes);
  {
    gzFile gz = gzopen(nim->iname, "rb");
    VQVAE2_CHECK(gz != nullptr, "read_nifti: cannot open the voxel data of '", name, "'.");
    bool ok = gzseek(gz, nim->iname_offset, SEEK_SET) == nim->iname_offset;
    std::size_t got = 0;
    while (ok && got < data_bytes) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(data_bytes - got, 1u << 30));
      const int r = gzread(gz, data.data() + got, chunk);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    // One read past the voxels makes zlib reach the gzip trailer and check its CRC.
    unsigned char extra = 0;
    if (ok && got == data_bytes) gzread(gz, &extra, 1);
    int zerr = Z_OK;
    gzerror(gz, &zerr);
    gzclose(gz);
    VQVAE2_CHECK(ok && got == data_bytes && (zerr == Z_OK || zerr == Z_STREAM_END), "read_nifti: '", name,
                 "' is truncated or corrupt (", got, " of ", data_bytes, " bytes of voxel data could be read).");
  }
  if (nim->byteorder != nifti_short_order() && nim->swapsize > 1) nifti_swap_Nbytes(n, nim->swapsize, data.data());

  std::vector<float> raw;
  const float slope = nim->scl_slope, inter = nim->scl_inter;
  const void* src_data = data.data();
  switch (nim->datatype) {
    case DT_UINT8:
      detail::convert_voxels<std::uint8_t>(src_data, n, slope, inter, raw);
      break;
    case DT_INT8:
      detail::convert_voxels<std::int8_t>(src_data, n, slope, inter, raw);
      break;
    case DT_INT16:
      detail::convert_voxels<std::int16_t>(src_data, n, slope, inter, raw);
      break;
    case DT_UINT16:
      detail::convert_voxels<std::uint16_t>(src_data, n, slope, inter, raw);
      break;
    case DT_INT32:
      detail::convert_voxels<std::int32_t>(src_data, n, slope, inter, raw);
      break;
    case DT_UINT32:
      detail::convert_voxels<std::uint32_t>(src_data, n, slope, inter, raw);
      break;
    case DT_INT64:
      detail::convert_voxels<std::int64_t>(src_data, n, slope, inter, raw);
      break;
    case DT_UINT64:
      detail::convert_voxels<std::uint64_t>(src_data, n, slope, inter, raw);
      break;
    case DT_FLOAT32:
      detail::convert_voxels<float>(src_data, n, slope, inter, raw);
      break;
    default:
      detail::convert_voxels<double>(src_data, n, slope, inter, raw);
      break;
  }
  std::vector<unsigned char>().swap(data);

  Volume vol;
  mat44 m = nim->qto_xyz;  // with qform_code 0 nifticlib sets this to diag(dx, dy, dz): axes as RAS
  vol.transform = "none (axes taken as RAS)";
  if (nim->sform_code > 0) {
    m = nim->sto_xyz;
    vol.transform = "sform";
  } else if (nim->qform_code > 0) {
    vol.transform = "qform";
  }
  int code[3] = {0, 0, 0};
  nifti_mat44_to_orientation(m, &code[0], &code[1], &code[2]);
  // world[a]: which RAS axis voxel axis a runs along; flip[a]: it runs towards L, P or I.
  int world[3];
  bool flip[3];
  bool seen[3] = {false, false, false};
  for (int a = 0; a < 3; ++a) {
    VQVAE2_CHECK(code[a] >= NIFTI_L2R && code[a] <= NIFTI_S2I, "read_nifti: '", name, "' has a degenerate ",
                 vol.transform, " matrix, so its orientation is unknown.");
    world[a] = (code[a] - 1) / 2;
    flip[a] = code[a] % 2 == 0;
    VQVAE2_CHECK(!seen[world[a]], "read_nifti: '", name, "' has a degenerate ", vol.transform,
                 " matrix (two voxel axes point the same way).");
    seen[world[a]] = true;
    vol.source_orientation += detail::orientation_letter(code[a]);
  }
  const int in_dim[3] = {nim->nx, nim->ny, nim->nz};
  // Voxel sizes from the chosen matrix's columns (an sform may disagree with pixdim); pixdim if degenerate.
  const float pixdim[3] = {std::fabs(nim->dx), std::fabs(nim->dy), std::fabs(nim->dz)};
  float in_size[3];
  for (int a = 0; a < 3; ++a) {
    const float norm = std::sqrt(m.m[0][a] * m.m[0][a] + m.m[1][a] * m.m[1][a] + m.m[2][a] * m.m[2][a]);
    in_size[a] = norm > 0 && std::isfinite(norm) ? norm : pixdim[a];
  }
  int out_dim[3];
  float out_size[3];
  for (int a = 0; a < 3; ++a) {
    out_dim[world[a]] = in_dim[a];
    out_size[world[a]] = in_size[a] > 0 ? in_size[a] : 1.0f;
  }
  vol.nx = out_dim[0];
  vol.ny = out_dim[1];
  vol.nz = out_dim[2];
  vol.dx = out_size[0];
  vol.dy = out_size[1];
  vol.dz = out_size[2];
  std::size_t stride[3] = {1, static_cast<std::size_t>(vol.nx), static_cast<std::size_t>(vol.nx) * vol.ny};
  vol.voxels.resize(n);
  std::size_t src = 0;
  for (int k = 0; k < in_dim[2]; ++k)
    for (int j = 0; j < in_dim[1]; ++j)
      for (int i = 0; i < in_dim[0]; ++i, ++src) {
        const int idx[3] = {i, j, k};
        std::size_t dst = 0;
        for (int a = 0; a < 3; ++a)
          dst += stride[world[a]] * static_cast<std::size_t>(flip[a] ? in_dim[a] - 1 - idx[a] : idx[a]);
        vol.voxels[dst] = raw[src];
      }
  return vol;
}

// Which split slice k goes to: by_residue[k mod by_residue.size()].
struct SplitRule {
  std::vector<std::string> by_residue;

  // "train,train,...,validate,test" (one name per residue) or "8:1:1"
  // (that many residues for train, validate, test, in that order).
  static SplitRule parse(std::string_view text) {
    SplitRule r;
    const bool counts = text.find(':') != std::string_view::npos;
    std::vector<std::string> parts;
    std::string cur;
    for (char ch : text) {
      if (ch == (counts ? ':' : ',')) {
        parts.push_back(cur);
        cur.clear();
      } else if (ch != ' ') {
        cur += ch;
      }
    }
    parts.push_back(cur);
    if (counts) {
      static const char* kNames[3] = {"train", "validate", "test"};
      VQVAE2_CHECK(parts.size() == 3, "SplitRule: '", text,
                   "' must give three counts train:validate:test, e.g. 8:1:1.");
      for (int s = 0; s < 3; ++s) {
        char* end = nullptr;
        long c = std::strtol(parts[s].c_str(), &end, 10);
        VQVAE2_CHECK(!parts[s].empty() && *end == '\0' && c >= 0 && c <= 1000, "SplitRule: '", text,
                     "' has a bad count '", parts[s], "' (expected a number from 0 to 1000).");
        r.by_residue.insert(r.by_residue.end(), static_cast<std::size_t>(c), kNames[s]);
      }
    } else {
      for (auto& p : parts) {
        VQVAE2_CHECK(p == "train" || p == "validate" || p == "test", "SplitRule: '", text, "' names an unknown split '",
                     p, "' (expected train, validate or test).");
        r.by_residue.push_back(p);
      }
    }
    VQVAE2_CHECK(!r.by_residue.empty(), "SplitRule: '", text, "' assigns no slice to any split.");
    return r;
  }
  const std::string& split_of(std::int64_t k) const {
    return by_residue[static_cast<std::size_t>(k % static_cast<std::int64_t>(by_residue.size()))];
  }
  std::string str() const {
    std::string s;
    for (const auto& p : by_residue) s += (s.empty() ? "" : ",") + p;
    return s;
  }
};

struct SliceOptions {
  int size = 256;                   // output side in pixels
  double percentile = 99.5;         // of non-zero voxels, mapped to 255
  double min_area_fraction = 0.15;  // of the largest slice's brain area
  bool radiological = true;         // patient's right on the image's left (OASIS)
};

struct AxialSlice {
  int z = 0;              // index along the RAS z axis (inferior -> superior)
  std::int64_t area = 0;  // brain voxels (> 0) in the slice
  GreyImage image;
};

// The kept axial slices of a RAS volume, inferior first; `hi_out` receives the
// intensity mapped to 255.
inline std::vector<AxialSlice> axial_slices(const Volume& vol, const SliceOptions& opt, float* hi_out = nullptr) {
  VQVAE2_CHECK(opt.size > 0 && opt.percentile > 0 && opt.percentile <= 100 && opt.min_area_fraction >= 0 &&
                   opt.min_area_fraction <= 1,
               "axial_slices: bad options (size ", opt.size, ", percentile ", opt.percentile, ", min area fraction ",
               opt.min_area_fraction, ").");
  std::vector<float> nonzero;
  for (float v : vol.voxels)
    if (v != 0.0f) nonzero.push_back(v);
  VQVAE2_CHECK(!nonzero.empty(), "axial_slices: the volume is all zeros.");
  const float hi = detail::percentile_linear(nonzero, opt.percentile);
  VQVAE2_CHECK(hi > 0, "axial_slices: the ", opt.percentile, "th percentile of the non-zero voxels is ", hi,
               ", not positive, so intensities cannot be scaled.");
  if (hi_out) *hi_out = hi;

  std::vector<std::int64_t> area(static_cast<std::size_t>(vol.nz), 0);
  const std::size_t plane = static_cast<std::size_t>(vol.nx) * vol.ny;
  for (int z = 0; z < vol.nz; ++z)
    for (std::size_t i = 0; i < plane; ++i) area[static_cast<std::size_t>(z)] += vol.voxels[z * plane + i] > 0;
  const std::int64_t max_area = *std::max_element(area.begin(), area.end());

  // The rotated slice: rows run anterior -> posterior (y = ny-1-r), columns
  // right -> left when radiological (x = nx-1-c), left -> right otherwise.
  const int rows = vol.ny, cols = vol.nx, size = opt.size;
  std::vector<AxialSlice> out;
  for (int z = 0; z < vol.nz; ++z) {
    const std::int64_t a = area[static_cast<std::size_t>(z)];
    if (a == 0 || static_cast<double>(a) < opt.min_area_fraction * static_cast<double>(max_area)) continue;
    auto value = [&](int r, int c) { return vol.at(opt.radiological ? cols - 1 - c : c, rows - 1 - r, z); };
    int r0 = rows, r1 = -1, c0 = cols, c1 = -1;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        if (value(r, c) > 0) {
          r0 = std::min(r0, r);
          r1 = std::max(r1, r);
          c0 = std::min(c0, c);
          c1 = std::max(c1, c);
        }
    // Centre the bounding box: the slice is first placed with floor((size - n) / 2)
    // before it, then moved so the box centre lands on (size - 1) / 2, rounded
    // half to even -- the Python reference's exact convention, so its slices are
    // reproduced pixel for pixel. A box larger than the frame is cropped evenly.
    auto offset = [size](int n, int lo, int hi_) {
      const int pad = detail::floor_div2(size - n);
      const double shift = std::nearbyint(0.5 * static_cast<double>(size - 1 - (lo + hi_) - 2 * pad));
      return pad + static_cast<int>(shift);
    };
    const int dr = offset(rows, r0, r1);
    const int dc = offset(cols, c0, c1);
    AxialSlice s;
    s.z = z;
    s.area = a;
    s.image.width = s.image.height = size;
    s.image.pixels.assign(static_cast<std::size_t>(size) * size, 0);
    for (int r = std::max(0, -dr); r < std::min(rows, size - dr); ++r)
      for (int c = std::max(0, -dc); c < std::min(cols, size - dc); ++c) {
        const float v = value(r, c);
        if (v <= 0) continue;
        const float q = std::min(255.0f, std::round(v / hi * 255.0f));
        s.image.at(r + dr, c + dc) = static_cast<std::uint8_t>(q);
      }
    out.push_back(std::move(s));
  }
  return out;
}

struct NiftiImportOptions {
  SliceOptions slices;
  std::string prefix = "case";
  SplitRule split = SplitRule::parse("8:1:1");
};

struct NiftiImportReport {
  int nx = 0, ny = 0, nz = 0;  // RAS volume size
  float dx = 0, dy = 0, dz = 0;
  std::string source_orientation, transform;
  float hi = 0;                    // intensity mapped to 255
  std::vector<int> z;              // RAS z of each kept slice k
  std::vector<std::string> files;  // relative to the output root
  std::int64_t train = 0, validate = 0, test = 0;
};

// Imports one volume into the OASIS layout under output_root (created if needed).
inline NiftiImportReport import_nifti(const std::filesystem::path& input, const std::filesystem::path& output_root,
                                      const NiftiImportOptions& opt = {}) {
  VQVAE2_CHECK(!opt.prefix.empty() && opt.prefix.find('/') == std::string::npos, "import_nifti: prefix '", opt.prefix,
               "' must be non-empty and contain no '/'.");
  Volume vol = read_nifti_ras(input);
  NiftiImportReport rep;
  rep.nx = vol.nx;
  rep.ny = vol.ny;
  rep.nz = vol.nz;
  rep.dx = vol.dx;
  rep.dy = vol.dy;
  rep.dz = vol.dz;
  rep.source_orientation = vol.source_orientation;
  rep.transform = vol.transform;
  std::vector<AxialSlice> slices = axial_slices(vol, opt.slices, &rep.hi);
  VQVAE2_CHECK(!slices.empty(), "import_nifti: '", input.string(), "' has no slice with brain voxels.");

  std::error_code ec;
  for (const char* split : {"train", "validate", "test"}) {
    std::filesystem::create_directories(output_root / (std::string("keras_png_slices_") + split), ec);
    VQVAE2_CHECK(!ec, "import_nifti: cannot create '",
                 (output_root / (std::string("keras_png_slices_") + split)).string(), "' (", ec.message(), ").");
  }
  std::ostringstream manifest;
  manifest << "split,file,source_volume,axial_index_RAS\n";
  for (std::size_t k = 0; k < slices.size(); ++k) {
    const std::string& split = opt.split.split_of(static_cast<std::int64_t>(k));
    const std::string file = opt.prefix + "_slice_" + std::to_string(k) + ".png";
    const std::filesystem::path rel = std::filesystem::path("keras_png_slices_" + split) / file;
    write_png_grey(output_root / rel, slices[k].image);
    rep.files.push_back(rel.string());
    rep.z.push_back(slices[k].z);
    (split == "train" ? rep.train : split == "validate" ? rep.validate : rep.test) += 1;
    manifest << split << ',' << file << ',' << input.string() << ',' << slices[k].z << '\n';
  }
  const std::string text = manifest.str();
  io::write_file_atomic((output_root / ("manifest_" + opt.prefix + ".csv")).string(), text);
  return rep;
}

}  // namespace vqvae2::data
