// Folders of 8-bit greyscale PNGs and the OASIS layout: a root folder holding
// keras_png_slices_train/, keras_png_slices_validate/ and keras_png_slices_test/.
// A split is loaded into memory once (9664 OASIS slices x 64 KB = 630 MB), in
// parallel, and batches are then cut from memory without touching the disk.
#pragma once

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/data/png.hpp"

namespace vqvae2::data {

// "Natural" order: runs of digits compare as numbers, so slice_2 < slice_10
// (OASIS names are case_<n>_slice_<k>.nii.png). Ties fall back to plain order.
inline bool natural_less(std::string_view a, std::string_view b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = std::isdigit(static_cast<unsigned char>(a[i])) != 0;
    const bool db = std::isdigit(static_cast<unsigned char>(b[j])) != 0;
    if (da && db) {
      std::size_t i0 = i, j0 = j;
      while (i0 < a.size() && a[i0] == '0') ++i0;
      while (j0 < b.size() && b[j0] == '0') ++j0;
      std::size_t i1 = i0, j1 = j0;
      while (i1 < a.size() && std::isdigit(static_cast<unsigned char>(a[i1]))) ++i1;
      while (j1 < b.size() && std::isdigit(static_cast<unsigned char>(b[j1]))) ++j1;
      if (i1 - i0 != j1 - j0) return i1 - i0 < j1 - j0;  // more significant digits = larger
      if (int c = a.substr(i0, i1 - i0).compare(b.substr(j0, j1 - j0)); c != 0) return c < 0;
      i = i1;
      j = j1;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

// The *.png files (extension case-insensitive) directly inside `folder`, in natural order.
// A missing folder or one without PNGs is an error.
inline std::vector<std::filesystem::path> list_pngs(const std::filesystem::path& folder) {
  std::error_code ec;
  VQVAE2_CHECK(std::filesystem::exists(folder, ec), "list_pngs: folder '", folder.string(), "' does not exist.");
  VQVAE2_CHECK(std::filesystem::is_directory(folder, ec), "list_pngs: '", folder.string(), "' is not a folder.");
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".png") files.push_back(entry.path());
  }
  VQVAE2_CHECK(!files.empty(), "list_pngs: folder '", folder.string(), "' holds no .png files.");
  std::sort(files.begin(), files.end(),
            [](const auto& x, const auto& y) { return natural_less(x.filename().string(), y.filename().string()); });
  return files;
}

// The folder of an OASIS split: split is "train", "validate" or "test"; throws when it is missing.
inline std::filesystem::path oasis_split_folder(const std::filesystem::path& root, std::string_view split) {
  VQVAE2_CHECK(split == "train" || split == "validate" || split == "test", "oasis_split_folder: unknown split '", split,
               "' (expected train, validate or test).");
  std::error_code ec;
  VQVAE2_CHECK(std::filesystem::is_directory(root, ec), "oasis_split_folder: OASIS root folder '", root.string(),
               "' does not exist.");
  std::filesystem::path folder = root / ("keras_png_slices_" + std::string(split));
  VQVAE2_CHECK(std::filesystem::is_directory(folder, ec), "oasis_split_folder: OASIS root '", root.string(),
               "' has no folder keras_png_slices_", split, ".");
  return folder;
}

// Whether root holds the folder of this split (no throw: for optional splits such as validate).
inline bool has_oasis_split(const std::filesystem::path& root, std::string_view split) {
  std::error_code ec;
  return std::filesystem::is_directory(root / ("keras_png_slices_" + std::string(split)), ec);
}

// Images of one size held contiguously: image i is pixels[i*H*W, (i+1)*H*W), row-major.
struct ImageSet {
  std::int64_t count = 0;
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> pixels;
  std::vector<std::string> names;  // file names (no folder), in load order

  std::int64_t image_bytes() const { return static_cast<std::int64_t>(height) * width; }
  const std::uint8_t* image(std::int64_t i) const { return pixels.data() + i * image_bytes(); }
  std::uint8_t* image(std::int64_t i) { return pixels.data() + i * image_bytes(); }
};

struct LoadOptions {
  // The required size. The models are built for 256x256 OASIS slices.
  int height = 256;
  int width = 256;
  // When true, any common size whose sides are multiples of 8 is accepted
  // instead (the two-level VQ-VAE downsamples by 8, so other sides cannot be
  // encoded and decoded back to the same size). All images must still share one size.
  bool allow_other_sizes = false;
  // Decoding threads; 0 = one per hardware thread.
  int threads = 0;
};

namespace detail {
inline void check_image_size(const std::string& name, int h, int w, const LoadOptions& opt) {
  if (opt.allow_other_sizes) {
    VQVAE2_CHECK(h % 8 == 0 && w % 8 == 0 && h > 0 && w > 0, "load_images: '", name, "' is ", w, "x", h,
                 "; sides must be multiples of 8 because the VQ-VAE downsamples by 8.");
  } else {
    VQVAE2_CHECK(h == opt.height && w == opt.width, "load_images: '", name, "' is ", w, "x", h, ", expected ",
                 opt.width, "x", opt.height, " (set LoadOptions::allow_other_sizes to accept any common size ",
                 "whose sides are multiples of 8).");
  }
}
}  // namespace detail

// Loads the given PNGs into one ImageSet, decoding in parallel. The first bad
// file (in list order) is reported, so the error does not depend on thread timing.
inline ImageSet load_images(const std::vector<std::filesystem::path>& files, const LoadOptions& opt = {}) {
  VQVAE2_CHECK(!files.empty(), "load_images: no files to load.");
  ImageSet set;
  // The first image fixes the size; the others must match it.
  GreyImage first = read_png_grey(files[0]);
  detail::check_image_size(files[0].string(), first.height, first.width, opt);
  set.count = static_cast<std::int64_t>(files.size());
  set.height = first.height;
  set.width = first.width;
  set.pixels.resize(static_cast<std::size_t>(set.count * set.image_bytes()));
  std::memcpy(set.image(0), first.pixels.data(), first.pixels.size());
  set.names.reserve(files.size());
  for (const auto& f : files) set.names.push_back(f.filename().string());

  std::atomic<std::size_t> next{1};
  std::mutex error_mutex;
  std::size_t error_index = files.size();
  std::exception_ptr error;
  auto worker = [&] {
    std::vector<unsigned char> bytes;
    GreyImage img;
    for (std::size_t i = next++; i < files.size(); i = next++) {
      try {
        detail::read_file_bytes(files[i], bytes, "read_png_grey");
        detail::decode_png_grey(bytes.data(), bytes.size(), files[i].string(), img);
        if (img.height != set.height || img.width != set.width) {
          detail::check_image_size(files[i].string(), img.height, img.width, opt);
          fail("load_images: '", files[i].string(), "' is ", img.width, "x", img.height, " but '", files[0].string(),
               "' is ", set.width, "x", set.height, "; all images must share one size.");
        }
        std::memcpy(set.image(static_cast<std::int64_t>(i)), img.pixels.data(), img.pixels.size());
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (i < error_index) {
          error_index = i;
          error = std::current_exception();
        }
      }
    }
  };
  unsigned n_threads = opt.threads > 0 ? static_cast<unsigned>(opt.threads) : std::thread::hardware_concurrency();
  n_threads = std::max(1u, std::min<unsigned>(n_threads, static_cast<unsigned>(files.size())));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n_threads; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // fewer threads than asked for is still correct
    }
  }
  worker();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return set;
}

// All PNGs of a folder, in natural order.
inline ImageSet load_folder(const std::filesystem::path& folder, const LoadOptions& opt = {}) {
  return load_images(list_pngs(folder), opt);
}

// One OASIS split ("train", "validate" or "test") under `root`.
inline ImageSet load_oasis_split(const std::filesystem::path& root, std::string_view split,
                                 const LoadOptions& opt = {}) {
  return load_folder(oasis_split_folder(root, split), opt);
}

}  // namespace vqvae2::data
