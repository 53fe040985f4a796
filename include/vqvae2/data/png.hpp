// 8-bit greyscale PNG input and output. Reading validates everything a user can
// get wrong (missing file, not a PNG, corrupt or truncated, colour, alpha,
// 16-bit) and reports it in one sentence naming the file; writing goes through
// io::write_file_atomic (temporary file, fsync, rename), so an interrupted run
// never leaves a half-written image behind.
//
// stb_image / stb_image_write come from Debian's libstb, which already holds the
// implementations: this header only declares them (no STB_*_IMPLEMENTATION).
#pragma once

#include <stb_image.h>
#include <stb_image_write.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"

namespace vqvae2::data {

// A row-major 8-bit greyscale image.
struct GreyImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;

  std::uint8_t& at(int row, int col) { return pixels[static_cast<std::size_t>(row) * width + col]; }
  std::uint8_t at(int row, int col) const { return pixels[static_cast<std::size_t>(row) * width + col]; }
};

namespace detail {

inline constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

// Reads a whole file into `bytes` (reusing its capacity).
inline void read_file_bytes(const std::filesystem::path& path, std::vector<unsigned char>& bytes, const char* who) {
  std::error_code ec;
  VQVAE2_CHECK(std::filesystem::exists(path, ec), who, ": file '", path.string(), "' does not exist.");
  VQVAE2_CHECK(std::filesystem::is_regular_file(path, ec), who, ": '", path.string(), "' is not a regular file.");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  VQVAE2_CHECK(in.good(), who, ": cannot open '", path.string(), "' for reading.");
  std::streamoff size = in.tellg();
  VQVAE2_CHECK(size >= 0, who, ": cannot determine the size of '", path.string(), "'.");
  bytes.resize(static_cast<std::size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  VQVAE2_CHECK(in.good() || in.eof(), who, ": reading '", path.string(), "' failed.");
}

inline const char* channel_description(int channels) {
  switch (channels) {
    case 1:
      return "greyscale";
    case 2:
      return "grey+alpha";
    case 3:
      return "RGB (or a colour palette)";
    case 4:
      return "RGBA";
    default:
      return "an unknown channel layout";
  }
}

// Decodes an in-memory PNG into `out`, validating it; `name` is the file name for messages.
inline void decode_png_grey(const unsigned char* bytes, std::size_t size, const std::string& name, GreyImage& out) {
  constexpr const char* who = "read_png_grey";
  VQVAE2_CHECK(size >= sizeof kPngSignature && std::memcmp(bytes, kPngSignature, sizeof kPngSignature) == 0, who, ": '",
               name, "' is not a PNG file (it does not start with the PNG signature).");
  VQVAE2_CHECK(size <= 0x7fffffffu, who, ": '", name, "' is too large (", size, " bytes) to decode.");
  const int len = static_cast<int>(size);
  int w = 0, h = 0, channels = 0;
  VQVAE2_CHECK(stbi_info_from_memory(bytes, len, &w, &h, &channels) == 1, who, ": '", name,
               "' is a corrupt PNG (its header cannot be parsed: ", stbi_failure_reason(), ").");
  const bool is16 = stbi_is_16_bit_from_memory(bytes, len) == 1;
  VQVAE2_CHECK(channels == 1 && !is16, who, ": '", name, "' is ", is16 ? "a 16-bit " : "an 8-bit ",
               channel_description(channels), " PNG; expected an 8-bit greyscale PNG with one channel.");
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(bytes, len, &w, &h, &channels, 1),
                                                   stbi_image_free);
  VQVAE2_CHECK(pixels != nullptr, who, ": '", name,
               "' is corrupt or truncated (decoding failed: ", stbi_failure_reason(), ").");
  out.width = w;
  out.height = h;
  out.pixels.assign(pixels.get(), pixels.get() + static_cast<std::size_t>(w) * h);
}

}  // namespace detail

// Reads an 8-bit, one-channel PNG. Anything else is rejected with a sentence
// naming the file and what was found.
inline GreyImage read_png_grey(const std::filesystem::path& path) {
  std::vector<unsigned char> bytes;
  detail::read_file_bytes(path, bytes, "read_png_grey");
  GreyImage img;
  detail::decode_png_grey(bytes.data(), bytes.size(), path.string(), img);
  return img;
}

// Writes row-major 8-bit grey pixels as a PNG, atomically (temporary file + rename).
inline void write_png_grey(const std::filesystem::path& path, const std::uint8_t* pixels, int width, int height) {
  VQVAE2_CHECK(width > 0 && height > 0, "write_png_grey: '", path.string(), "' would have an empty size ", width, "x",
               height, ".");
  std::vector<unsigned char> encoded;
  auto append = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<unsigned char>*>(ctx);
    auto* p = static_cast<const unsigned char*>(data);
    v->insert(v->end(), p, p + size);
  };
  int ok = stbi_write_png_to_func(append, &encoded, width, height, 1, pixels, width);
  VQVAE2_CHECK(ok != 0 && !encoded.empty(), "write_png_grey: encoding '", path.string(), "' (", width, "x", height,
               ") failed.");
  io::write_file_atomic(path.string(), encoded.data(), encoded.size());
}

inline void write_png_grey(const std::filesystem::path& path, const GreyImage& img) {
  VQVAE2_CHECK(img.pixels.size() == static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height),
               "write_png_grey: '", path.string(), "' has ", img.pixels.size(), " pixels for a ", img.width, "x",
               img.height, " image.");
  write_png_grey(path, img.pixels.data(), img.width, img.height);
}

}  // namespace vqvae2::data
