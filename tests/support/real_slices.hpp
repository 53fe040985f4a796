// A few real brain slices for training smoke tests: the colin27 ch2bet split in
// ../shared when present, else Debian's mricron-data template imported once into the
// test temporary directory. Returns nullopt when neither exists (the caller skips).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/nifti_import.hpp"

namespace vqvae2::test {

inline std::optional<std::filesystem::path> real_slice_root() {
  namespace fs = std::filesystem;
  fs::path root = fs::path(VQVAE2_SHARED_DATA_DIR) / "colin27_ch2bet";
  if (fs::exists(root / "keras_png_slices_train")) return root;
  const fs::path volume = "/usr/share/mricron/templates/ch2bet.nii.gz";
  if (!fs::exists(volume)) return std::nullopt;
  fs::create_directories(VQVAE2_TEST_TMP_DIR);
  root = fs::path(VQVAE2_TEST_TMP_DIR) / "ch2bet_import";
  if (!fs::exists(root / "keras_png_slices_train")) data::import_nifti(volume, root);
  return root;
}

// The first `count` slices of the train split under root.
inline std::shared_ptr<data::ImageSet> first_train_slices(const std::filesystem::path& root, int count) {
  auto set = std::make_shared<data::ImageSet>(data::load_oasis_split(root, "train"));
  set->count = count;
  set->pixels.resize(static_cast<std::size_t>(count * set->image_bytes()));
  set->names.resize(static_cast<std::size_t>(count));
  return set;
}

}  // namespace vqvae2::test
