// Code files: the VQ-VAE-2's top and bottom code maps of one image split, the
// data the PixelSNAIL priors train on.
//
// File layout (version 1, little endian):
//   "VQV2CODE"               8 bytes magic
//   u32 version              format version (kVersion)
//   u32 reserved             0
//   u64 file_size            total bytes, checksum included (detects truncation)
//   str vqvae_fingerprint    configuration of the VQ-VAE-2 that encoded the images
//   u64 vqvae_weight_hash    weight_hash() of its parameters and code books
//   u32 num_codes            code-book size (every code is below it)
//   u32 image_height, image_width
//   u32 top_height, top_width, bottom_height, bottom_width
//   u64 count                number of images N
//   N x str                  image file names, in split order
//   N x top_height x top_width u16        top codes, image-major, row-major
//   N x bottom_height x bottom_width u16  bottom codes
//   u32 CRC-32               of every byte before it
// where str = u32 length + bytes.
//
// A consumer that knows which VQ-VAE-2 it works with calls
// CodeSet::check_source(fingerprint, hash, ...) so that a prior never trains
// or samples on codes of another model.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vqvae2/core/context.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/data/image_folder.hpp"
#include "vqvae2/data/loader.hpp"

namespace vqvae2::data {

static_assert(std::endian::native == std::endian::little, "code_file.hpp writes raw little-endian data");

// 64-bit FNV-1a, incremental.
class Fnv1a64 {
 public:
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = state_;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ULL;
    state_ = h;
  }
  std::uint64_t value() const { return state_; }

 private:
  std::uint64_t state_ = 0xCBF29CE484222325ULL;
};

namespace detail {
template <class M>
concept HasBuffers = requires(M& m) {
  m.visit_buffers([](std::string_view, auto&) {});
};
}  // namespace detail

// Hash of a model's weights as a checkpoint stores them: every parameter
// (visit) and, where the model has them, every buffer (visit_buffers, e.g.
// the code books), each as name, shape and raw bytes, in visiting order.
template <class Model>
std::uint64_t weight_hash(Model& model) {
  Fnv1a64 h;
  auto add = [&](std::string_view name, const auto& t) {
    h.update(name.data(), name.size());
    const Shape s = t.shape();
    for (int d = 0; d < s.rank; ++d) {
      const std::int64_t v = s.dims[d];
      h.update(&v, sizeof v);
    }
    h.update(t.data(), t.bytes());
  };
  model.visit([&](std::string_view name, auto& p) { add(name, p.value); });
  if constexpr (detail::HasBuffers<Model>) model.visit_buffers([&](std::string_view name, auto& t) { add(name, t); });
  return h.value();
}

// The code maps of a split, all in memory (a 256x256 image costs 10 KB of codes).
struct CodeSet {
  std::string vqvae_fingerprint;
  std::uint64_t vqvae_weight_hash = 0;
  int num_codes = 0;
  int image_height = 0, image_width = 0;
  int top_height = 0, top_width = 0, bottom_height = 0, bottom_width = 0;
  std::vector<std::string> names;
  std::vector<std::uint16_t> top, bottom;  // [N, top_h, top_w] and [N, bottom_h, bottom_w]

  std::int64_t count() const { return static_cast<std::int64_t>(names.size()); }
  std::int64_t top_size() const { return static_cast<std::int64_t>(top_height) * top_width; }
  std::int64_t bottom_size() const { return static_cast<std::int64_t>(bottom_height) * bottom_width; }
  const std::uint16_t* top_map(std::int64_t i) const { return top.data() + i * top_size(); }
  const std::uint16_t* bottom_map(std::int64_t i) const { return bottom.data() + i * bottom_size(); }

  // Refuses codes of another VQ-VAE-2 than the one identified by (fingerprint,
  // hash); `source` names the file, `reference` what they are checked against
  // (e.g. "the checkpoint 'runs/vqvae/checkpoint.bin'").
  void check_source(std::string_view fingerprint, std::uint64_t hash, std::string_view source,
                    std::string_view reference) const {
    VQVAE2_CHECK(vqvae_fingerprint == fingerprint, "Code file '", source, "' was made by a VQ-VAE-2 of configuration '",
                 vqvae_fingerprint, "' but ", reference, " belongs to configuration '", fingerprint, "'.");
    VQVAE2_CHECK(vqvae_weight_hash == hash, "Code file '", source, "' was made by another VQ-VAE-2 than ", reference,
                 " (weight hash ", hex(vqvae_weight_hash), " vs ", hex(hash), ").");
  }

  static std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }
};

inline constexpr char kCodeFileMagic[8] = {'V', 'Q', 'V', '2', 'C', 'O', 'D', 'E'};
inline constexpr std::uint32_t kCodeFileVersion = 1;
inline constexpr std::size_t kCodeFileHeaderBytes = 24;  // magic, version, reserved, file size

namespace detail {
inline void check_code_set(const CodeSet& s, std::string_view where) {
  VQVAE2_CHECK(s.num_codes > 0 && s.num_codes <= 65536, where, ": the number of codes ", s.num_codes,
               " does not fit uint16 codes.");
  VQVAE2_CHECK(s.top_height > 0 && s.top_width > 0 && s.bottom_height > 0 && s.bottom_width > 0, where,
               ": empty code-map size (top ", s.top_height, "x", s.top_width, ", bottom ", s.bottom_height, "x",
               s.bottom_width, ").");
  VQVAE2_CHECK(s.top.size() == static_cast<std::size_t>(s.count() * s.top_size()) &&
                   s.bottom.size() == static_cast<std::size_t>(s.count() * s.bottom_size()),
               where, ": ", s.count(), " names but ", s.top.size(), " top and ", s.bottom.size(), " bottom codes.");
}
}  // namespace detail

// Writes atomically (temporary file + rename): an earlier file survives any failure.
inline void write_code_file(const std::string& path, const CodeSet& s) {
  detail::check_code_set(s, "write_code_file '" + path + "'");
  std::uint64_t total = kCodeFileHeaderBytes + 4 + s.vqvae_fingerprint.size() + 8 + 4 * 7 + 8;
  for (const auto& n : s.names) total += 4 + n.size();
  total += 2 * (s.top.size() + s.bottom.size()) + 4;

  io::AtomicFile file(path);
  io::Crc32 crc;
  auto put = [&](const void* p, std::size_t n) {
    crc.update(p, n);
    file.write(p, n);
  };
  auto put_pod = [&](auto v) { put(&v, sizeof(v)); };
  auto put_str = [&](std::string_view v) {
    put_pod(static_cast<std::uint32_t>(v.size()));
    put(v.data(), v.size());
  };
  put(kCodeFileMagic, sizeof kCodeFileMagic);
  put_pod(kCodeFileVersion);
  put_pod(std::uint32_t{0});
  put_pod(total);
  put_str(s.vqvae_fingerprint);
  put_pod(s.vqvae_weight_hash);
  for (int v : {s.num_codes, s.image_height, s.image_width, s.top_height, s.top_width, s.bottom_height, s.bottom_width})
    put_pod(static_cast<std::uint32_t>(v));
  put_pod(static_cast<std::uint64_t>(s.count()));
  for (const auto& n : s.names) put_str(n);
  put(s.top.data(), 2 * s.top.size());
  put(s.bottom.data(), 2 * s.bottom.size());
  const std::uint32_t sum = crc.value();
  file.write(&sum, sizeof sum);
  VQVAE2_CHECK(file.bytes_written() == total, "write_code_file: internal size mismatch writing '", path, "' (",
               file.bytes_written(), " vs ", total, " bytes).");
  file.commit();
}

// Reads and validates a code file: magic, version, size, checksum, structure and
// every code below num_codes. Each problem is one sentence naming the file.
inline CodeSet read_code_file(const std::string& path) {
  const std::vector<std::uint8_t> buf = io::read_file(path, "code file");
  const std::uint8_t* b = buf.data();
  const std::size_t size = buf.size();
  const std::size_t magic_seen = size < sizeof kCodeFileMagic ? size : sizeof kCodeFileMagic;
  VQVAE2_CHECK(size > 0, "Code file '", path, "' is empty.");
  VQVAE2_CHECK(std::memcmp(b, kCodeFileMagic, magic_seen) == 0, "Code file '", path,
               "' is not a vqvae2 code file (bad magic).");
  VQVAE2_CHECK(size >= kCodeFileHeaderBytes, "Code file '", path, "' is truncated (", size,
               " bytes, shorter than its header).");
  std::uint32_t version;
  std::uint64_t expected;
  std::memcpy(&version, b + 8, 4);
  std::memcpy(&expected, b + 16, 8);
  VQVAE2_CHECK(version == kCodeFileVersion, "Code file '", path, "' has format version ", version,
               " but this build reads version ", kCodeFileVersion, ".");
  VQVAE2_CHECK(size >= expected, "Code file '", path, "' is truncated (expected ", expected, " bytes, found ", size,
               ").");
  VQVAE2_CHECK(size == expected, "Code file '", path, "' has ", size - expected,
               " unexpected bytes after its end (expected ", expected, " bytes, found ", size, ").");
  VQVAE2_CHECK(expected >= kCodeFileHeaderBytes + 4, "Code file '", path, "' is malformed: its header claims ",
               expected, " bytes.");
  std::uint32_t stored;
  std::memcpy(&stored, b + size - 4, 4);
  VQVAE2_CHECK(io::crc32(b, size - 4) == stored, "Code file '", path, "' checksum mismatch: the file is corrupt.");

  std::size_t pos = kCodeFileHeaderBytes;
  const std::size_t end = size - 4;
  auto take = [&](std::size_t n, const char* what) {
    VQVAE2_CHECK(n <= end - pos, "Code file '", path, "' is malformed: ", what, " at byte ", pos,
                 " runs past the end of the data.");
    const std::uint8_t* p = b + pos;
    pos += n;
    return p;
  };
  auto pod = [&]<class V>(V, const char* what) {
    V v;
    std::memcpy(&v, take(sizeof(V), what), sizeof(V));
    return v;
  };
  auto str = [&](const char* what) {
    const auto n = pod(std::uint32_t{}, what);
    const std::uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  };
  CodeSet s;
  s.vqvae_fingerprint = str("the VQ-VAE-2 fingerprint");
  s.vqvae_weight_hash = pod(std::uint64_t{}, "the weight hash");
  int* dims[] = {&s.num_codes, &s.image_height,  &s.image_width, &s.top_height,
                 &s.top_width, &s.bottom_height, &s.bottom_width};
  for (int* d : dims) {
    const auto v = pod(std::uint32_t{}, "the map sizes");
    VQVAE2_CHECK(v <= (1u << 20), "Code file '", path, "' is malformed: a size field holds ", v, ".");
    *d = static_cast<int>(v);
  }
  const auto count = pod(std::uint64_t{}, "the image count");
  VQVAE2_CHECK(count <= (end - pos) / 4, "Code file '", path, "' is malformed: it claims ", count,
               " images, more than its size allows.");
  s.names.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) s.names.push_back(str("an image name"));
  VQVAE2_CHECK(s.num_codes > 0 && s.num_codes <= 65536 && s.top_height > 0 && s.top_width > 0 && s.bottom_height > 0 &&
                   s.bottom_width > 0,
               "Code file '", path, "' is malformed: ", s.num_codes, " codes, top maps ", s.top_height, "x",
               s.top_width, ", bottom maps ", s.bottom_height, "x", s.bottom_width, ".");
  const std::size_t n_top = count * static_cast<std::size_t>(s.top_size());
  const std::size_t n_bottom = count * static_cast<std::size_t>(s.bottom_size());
  s.top.resize(n_top);
  s.bottom.resize(n_bottom);
  std::memcpy(s.top.data(), take(2 * n_top, "the top codes"), 2 * n_top);
  std::memcpy(s.bottom.data(), take(2 * n_bottom, "the bottom codes"), 2 * n_bottom);
  VQVAE2_CHECK(pos == end, "Code file '", path, "' is malformed: ", end - pos,
               " bytes of unknown data before the checksum.");
  for (const auto* v : {&s.top, &s.bottom})
    for (std::uint16_t c : *v)
      VQVAE2_CHECK(c < s.num_codes, "Code file '", path, "' is malformed: code ", c, " is not below the ", s.num_codes,
                   " codes of its code book.");
  return s;
}

// Encodes image files with a VQ-VAE-2, `batch` images at a time: only one batch
// of images is in memory at once, the codes of all of them are kept. The model's
// fingerprint and weight hash go into the result. `progress(done, total)` is
// called after each batch. Evaluation mode: the code books are not changed.
template <class Model, class T = float>
CodeSet encode_image_files(Context<Cpu>& ctx, Model& model, const std::vector<std::filesystem::path>& files,
                           std::int64_t batch, const LoadOptions& load = {},
                           const std::function<void(std::int64_t, std::int64_t)>& progress = {}) {
  VQVAE2_CHECK(!files.empty(), "encode_image_files: no images to encode.");
  VQVAE2_CHECK(batch > 0, "encode_image_files: batch size must be positive, got ", batch, ".");
  CodeSet s;
  s.vqvae_fingerprint = Model::fingerprint();
  s.vqvae_weight_hash = weight_hash(model);
  s.num_codes = Model::config::num_codes;
  const bool was_training = ctx.training;
  ctx.training = false;
  Tensor<T, Cpu> x;
  Tensor<std::int32_t, Cpu> top, bottom;
  std::vector<std::int64_t> indices;
  const auto n = static_cast<std::int64_t>(files.size());
  try {
    for (std::int64_t first = 0; first < n; first += batch) {
      const std::int64_t count = std::min(batch, n - first);
      std::vector<std::filesystem::path> part(files.begin() + first, files.begin() + first + count);
      LoadOptions lo = load;
      if (first > 0) {  // every batch must have the first one's size
        lo.height = s.image_height;
        lo.width = s.image_width;
        lo.allow_other_sizes = false;
      }
      ImageSet images = load_images(part, lo);
      if (first == 0) {
        s.image_height = images.height;
        s.image_width = images.width;
      }
      indices.resize(static_cast<std::size_t>(count));
      for (std::int64_t i = 0; i < count; ++i) indices[static_cast<std::size_t>(i)] = i;
      fill_batch(images, indices.data(), count, x);
      model.encode(ctx, x, top, bottom);
      if (first == 0) {
        s.top_height = static_cast<int>(top.dim(1));
        s.top_width = static_cast<int>(top.dim(2));
        s.bottom_height = static_cast<int>(bottom.dim(1));
        s.bottom_width = static_cast<int>(bottom.dim(2));
        s.top.reserve(static_cast<std::size_t>(n * s.top_size()));
        s.bottom.reserve(static_cast<std::size_t>(n * s.bottom_size()));
      }
      for (std::int64_t i = 0; i < top.numel(); ++i) s.top.push_back(static_cast<std::uint16_t>(top[i]));
      for (std::int64_t i = 0; i < bottom.numel(); ++i) s.bottom.push_back(static_cast<std::uint16_t>(bottom[i]));
      for (auto& name : images.names) s.names.push_back(std::move(name));
      if (progress) progress(first + count, n);
    }
  } catch (...) {
    ctx.training = was_training;
    throw;
  }
  ctx.training = was_training;
  return s;
}

// Which code maps a prior models: the top ones, or the bottom ones (conditioned on the top).
enum class CodeLevel { top, bottom };
inline const char* code_level_name(CodeLevel l) { return l == CodeLevel::top ? "top" : "bottom"; }

// Writes the maps indices[0..count) of `level` into `codes` [count, H, W] and,
// when `condition` is given, the same images' top maps into it [count, h, w].
inline void fill_code_batch(const CodeSet& set, CodeLevel level, const std::int64_t* indices, std::int64_t count,
                            Tensor<std::int32_t, Cpu>& codes, Tensor<std::int32_t, Cpu>* condition = nullptr) {
  const bool top = level == CodeLevel::top;
  const std::int64_t h = top ? set.top_height : set.bottom_height, w = top ? set.top_width : set.bottom_width;
  codes.resize(Shape{count, h, w});
  if (condition) condition->resize(Shape{count, set.top_height, set.top_width});
  for (std::int64_t b = 0; b < count; ++b) {
    VQVAE2_CHECK(indices[b] >= 0 && indices[b] < set.count(), "fill_code_batch: index ", indices[b],
                 " is outside the set of ", set.count(), " code maps.");
    const std::uint16_t* src = top ? set.top_map(indices[b]) : set.bottom_map(indices[b]);
    std::int32_t* dst = codes.data() + b * h * w;
    for (std::int64_t i = 0; i < h * w; ++i) dst[i] = src[i];
    if (condition) {
      const std::uint16_t* c = set.top_map(indices[b]);
      std::int32_t* cd = condition->data() + b * set.top_size();
      for (std::int64_t i = 0; i < set.top_size(); ++i) cd[i] = c[i];
    }
  }
}

// Training batches of code maps: epoch e's order is epoch_order(seed, e, ...),
// the shuffle BatchLoader uses, so a run resumed at a LoaderPosition sees the
// batches the uninterrupted run would have. Codes are small: no prefetch thread.
class CodeBatchLoader {
 public:
  // conditioned: also deliver the top maps as the condition (the bottom prior).
  CodeBatchLoader(std::shared_ptr<const CodeSet> set, CodeLevel level, bool conditioned, const LoaderOptions& opt)
      : set_(std::move(set)), level_(level), conditioned_(conditioned), opt_(opt) {
    VQVAE2_CHECK(set_ != nullptr && set_->count() > 0, "CodeBatchLoader: the code set is empty.");
    VQVAE2_CHECK(opt_.batch_size > 0, "CodeBatchLoader: batch size must be positive, got ", opt_.batch_size, ".");
    VQVAE2_CHECK(batches_per_epoch() > 0, "CodeBatchLoader: ", set_->count(), " code maps are fewer than one batch of ",
                 opt_.batch_size, " and drop_last is set.");
    order_.reserve(static_cast<std::size_t>(set_->count()));
  }

  std::int64_t size() const { return set_->count(); }
  const CodeSet& codes() const { return *set_; }
  std::int64_t batches_per_epoch() const {
    const std::int64_t n = set_->count(), b = opt_.batch_size;
    return opt_.drop_last ? n / b : (n + b - 1) / b;
  }
  LoaderPosition position() const { return pos_; }
  void seek(std::int64_t epoch, std::int64_t batch = 0) {
    VQVAE2_CHECK(epoch >= 0 && batch >= 0 && batch < batches_per_epoch(), "CodeBatchLoader::seek: position (epoch ",
                 epoch, ", batch ", batch, ") is invalid; an epoch has ", batches_per_epoch(), " batches.");
    pos_ = LoaderPosition{epoch, batch};
  }

  // Moves to the next batch: batch() holds its maps [B, H, W], condition() the top maps [B, h, w]
  // (conditioned loaders only). Valid until the next call.
  void next() {
    if (pos_.epoch != order_epoch_) {
      epoch_order(opt_.seed, pos_.epoch, set_->count(), opt_.shuffle, order_);
      order_epoch_ = pos_.epoch;
    }
    const std::int64_t start = pos_.batch * opt_.batch_size;
    const std::int64_t count = std::min(opt_.batch_size, set_->count() - start);
    fill_code_batch(*set_, level_, order_.data() + start, count, codes_, conditioned_ ? &condition_ : nullptr);
    if (++pos_.batch == batches_per_epoch()) pos_ = LoaderPosition{pos_.epoch + 1, 0};
  }
  const Tensor<std::int32_t, Cpu>& batch() const { return codes_; }
  const Tensor<std::int32_t, Cpu>* condition() const { return conditioned_ ? &condition_ : nullptr; }

 private:
  std::shared_ptr<const CodeSet> set_;
  CodeLevel level_;
  bool conditioned_;
  LoaderOptions opt_;
  LoaderPosition pos_;
  std::vector<std::int64_t> order_;
  std::int64_t order_epoch_ = -1;
  Tensor<std::int32_t, Cpu> codes_, condition_;
};

}  // namespace vqvae2::data
