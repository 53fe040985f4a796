// Versioned, checksummed, atomically written checkpoints.
//
// File layout (version 1, little endian):
//   "VQV2CKPT"                 8 bytes magic
//   u32 version                format version (kVersion)
//   u32 reserved               0
//   u64 file_size              total bytes, checksum included (detects truncation)
//   str fingerprint            the configuration the tensors belong to
//   u32 count, then per entry  str key, u8 kind (1 u64, 2 f64, 3 string), value
//   u32 count, then per tensor str name, u8 dtype, u8 rank, rank x i64 dims,
//                              u64 byte count, raw data
//   u32 CRC-32                 of every byte before it
// where str = u32 length + bytes. The version comes before everything it
// governs, so a future format can change the rest (the checksum included).
//
// Typical use:
//   train::Checkpoint ck(models::config_fingerprint<Cfg>());
//   ck.add_module(model);  ck.add_optimizer(adam);  ck.set_u64("epoch", e);
//   ck.save(path);                                       // atomic
//   auto in = train::Checkpoint::load(path);             // validated, all in memory
//   in.apply_to(model, fingerprint);  in.apply_to_optimizer(adam);
// apply_* check everything (fingerprint, names, dtypes, shapes) before copying
// anything, so the target stays untouched on any error.
//
// add_* store aliases, not copies: save() writes the tensors' values at the
// time of the call. Keep a Checkpoint short-lived (build, save, drop): while it
// holds an alias, Tensor::resize() on that tensor cannot reuse its storage.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/io.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/nn/module.hpp"

namespace vqvae2::train {

static_assert(std::endian::native == std::endian::little, "checkpoint.hpp writes raw little-endian data");

enum class DType : std::uint8_t { f32 = 1, f64 = 2, i32 = 3, i64 = 4, u8 = 5 };

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::f32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::f64;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return DType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return DType::i64;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return DType::u8;
  else
    static_assert(sizeof(T) == 0, "checkpoints store float, double, int32, int64 and uint8 tensors");
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u8:
      return "u8";
  }
  return "unknown";
}

inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::u8:
      return 1;
  }
  return 0;
}

// Host <-> device copies for tensors that live off the host. The CUDA backend
// specialises HostCopy<Cuda>; on the CPU both are memcpy.
template <class Device>
struct HostCopy;

template <>
struct HostCopy<Cpu> {
  static void to_host(void* host, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(host, src, bytes);
  }
  static void from_host(void* dst, const void* host, std::size_t bytes) {
    if (bytes) std::memcpy(dst, host, bytes);
  }
};

class Checkpoint {
 public:
  static constexpr char kMagic[8] = {'V', 'Q', 'V', '2', 'C', 'K', 'P', 'T'};
  static constexpr std::uint32_t kVersion = 1;
  static constexpr std::size_t kHeaderBytes = 24;  // magic, version, reserved, file size
  static constexpr std::size_t kMinFileBytes = kHeaderBytes + 4 + 4 + 4 + 4;

  enum class MetaKind : std::uint8_t { u64 = 1, f64 = 2, string = 3 };

  Checkpoint() = default;
  explicit Checkpoint(std::string fingerprint) : fingerprint_(std::move(fingerprint)) {}

  const std::string& fingerprint() const { return fingerprint_; }
  void set_fingerprint(std::string f) { fingerprint_ = std::move(f); }
  // The file this checkpoint was loaded from (or "<in-memory checkpoint>").
  const std::string& source() const { return source_; }

  // ---- metadata: epoch, step, RNG seed/offset, loss-history length, ... ----
  void set_u64(std::string_view key, std::uint64_t v) { meta_slot(key, MetaKind::u64).u = v; }
  void set_f64(std::string_view key, double v) { meta_slot(key, MetaKind::f64).f = v; }
  void set_string(std::string_view key, std::string_view v) { meta_slot(key, MetaKind::string).s = v; }
  bool has_meta(std::string_view key) const { return find_meta(key) != nullptr; }
  std::uint64_t get_u64(std::string_view key) const { return meta_of(key, MetaKind::u64).u; }
  double get_f64(std::string_view key) const { return meta_of(key, MetaKind::f64).f; }
  const std::string& get_string(std::string_view key) const { return meta_of(key, MetaKind::string).s; }

  // ---- tensors ----
  template <class T, class D>
  void add_tensor(std::string_view name, const Tensor<T, D>& t) {
    VQVAE2_CHECK(!has_tensor(name), "Checkpoint::add_tensor: tensor '", name, "' was added twice.");
    Entry e;
    e.name = name;
    e.dtype = dtype_of<T>();
    e.shape = t.shape();
    e.bytes = t.bytes();
    e.data = t.data();
    e.keep = std::make_shared<Tensor<T, D>>(t);  // keeps the storage alive
    e.to_host = &HostCopy<D>::to_host;
    index_.emplace(e.name, entries_.size());
    entries_.push_back(std::move(e));
  }

  // Every parameter value of a module, named "<prefix>.<name>" (or "<name>").
  template <class Module>
  void add_module(Module& net, std::string_view prefix = {}) {
    net.visit([&](std::string_view name, auto& p) { add_tensor(join(prefix, name), p.value); });
  }

  // An optimiser's state: its visit_state tensors as "<prefix>.<name>" and
  // its step count as metadata "<prefix>.step".
  template <class Optimizer>
  void add_optimizer(Optimizer& opt, std::string_view prefix = "adam") {
    opt.visit_state([&](std::string_view name, auto& t) { add_tensor(join(prefix, name), t); });
    set_u64(join(prefix, "step"), static_cast<std::uint64_t>(opt.step_count()));
  }

  bool has_tensor(std::string_view name) const { return index_.count(std::string(name)) != 0; }
  std::size_t tensor_count() const { return entries_.size(); }
  std::vector<std::string> tensor_names() const {
    std::vector<std::string> n;
    for (const auto& e : entries_) n.push_back(e.name);
    return n;
  }
  DType dtype(std::string_view name) const { return entry(name).dtype; }
  Shape shape(std::string_view name) const { return entry(name).shape; }

  // A host copy of a stored tensor; its element type must match.
  template <class T>
  Tensor<T, Cpu> get_tensor(std::string_view name) const {
    const Entry& e = entry(name);
    check_dtype(e, dtype_of<T>(), "get_tensor");
    Tensor<T, Cpu> t(e.shape);
    e.to_host(t.data(), e.data, e.bytes);
    return t;
  }

  // Copies a stored tensor into `dst`, which must already have its shape.
  template <class T, class D>
  void restore_tensor(std::string_view name, Tensor<T, D>& dst) const {
    const Entry& e = checked_entry(name, dtype_of<T>(), dst.shape(), "restore_tensor");
    copy_into(e, dst);
  }

  // Loads a module's parameters. Checks the configuration fingerprint and
  // that every parameter exists with its dtype and shape before copying any.
  template <class Module>
  void apply_to(Module& net, std::string_view expected_fingerprint, std::string_view prefix = {}) const {
    VQVAE2_CHECK(fingerprint_ == expected_fingerprint, "Checkpoint '", source_, "' was written for configuration '",
                 fingerprint_, "' but this model is '", expected_fingerprint, "'.");
    std::vector<const Entry*> found;
    net.visit([&](std::string_view name, auto& p) {
      using T = typename std::decay_t<decltype(p.value)>::value_type;
      found.push_back(&checked_entry(join(prefix, name), dtype_of<T>(), p.value.shape(), "apply_to"));
    });
    std::size_t k = 0;
    net.visit([&](std::string_view, auto& p) { copy_into(*found[k++], p.value); });
  }

  // Restores what add_optimizer stored; all checks before any copy.
  template <class Optimizer>
  void apply_to_optimizer(Optimizer& opt, std::string_view prefix = "adam") const {
    const std::string step_key = join(prefix, "step");
    VQVAE2_CHECK(find_meta(step_key) != nullptr, "Checkpoint '", source_, "' has no optimiser state (metadata '",
                 step_key, "' is missing).");
    std::uint64_t steps = get_u64(step_key);
    std::vector<const Entry*> found;
    opt.visit_state([&](std::string_view name, auto& t) {
      using T = typename std::decay_t<decltype(t)>::value_type;
      found.push_back(&checked_entry(join(prefix, name), dtype_of<T>(), t.shape(), "apply_to_optimizer"));
    });
    std::size_t k = 0;
    opt.visit_state([&](std::string_view, auto& t) { copy_into(*found[k++], t); });
    opt.set_step_count(static_cast<std::int64_t>(steps));
  }

  // ---- files ----
  // Writes atomically: the earlier file survives any failure.
  void save(const std::string& path) const {
    std::uint64_t total = serialized_bytes();
    io::AtomicFile file(path);
    io::Crc32 crc;
    std::vector<unsigned char> staging;
    auto put = [&](const void* p, std::size_t n) {
      crc.update(p, n);
      file.write(p, n);
    };
    auto put_pod = [&](auto v) { put(&v, sizeof(v)); };
    auto put_str = [&](std::string_view s) {
      put_pod(static_cast<std::uint32_t>(s.size()));
      put(s.data(), s.size());
    };
    put(kMagic, sizeof(kMagic));
    put_pod(kVersion);
    put_pod(std::uint32_t{0});
    put_pod(total);
    put_str(fingerprint_);
    put_pod(static_cast<std::uint32_t>(meta_.size()));
    for (const Meta& m : meta_) {
      put_str(m.key);
      put_pod(static_cast<std::uint8_t>(m.kind));
      if (m.kind == MetaKind::u64) put_pod(m.u);
      if (m.kind == MetaKind::f64) put_pod(m.f);
      if (m.kind == MetaKind::string) put_str(m.s);
    }
    put_pod(static_cast<std::uint32_t>(entries_.size()));
    for (const Entry& e : entries_) {
      put_str(e.name);
      put_pod(static_cast<std::uint8_t>(e.dtype));
      put_pod(static_cast<std::uint8_t>(e.shape.rank));
      for (int d = 0; d < e.shape.rank; ++d) put_pod(static_cast<std::int64_t>(e.shape.dims[d]));
      put_pod(static_cast<std::uint64_t>(e.bytes));
      if (e.to_host == &HostCopy<Cpu>::to_host) {
        put(e.data, e.bytes);
      } else {
        staging.resize(e.bytes);
        e.to_host(staging.data(), e.data, e.bytes);
        put(staging.data(), e.bytes);
      }
    }
    std::uint32_t sum = crc.value();
    file.write(&sum, sizeof(sum));
    VQVAE2_CHECK(file.bytes_written() == total, "Checkpoint::save: internal size mismatch writing '", path, "' (",
                 file.bytes_written(), " vs ", total, " bytes).");
    file.commit();
  }

  // Reads and validates a whole checkpoint: magic, version, size, checksum,
  // then the structure. The tensors stay in the file's buffer (no copy).
  static Checkpoint load(const std::string& path) {
    auto buf = std::make_shared<std::vector<std::uint8_t>>(io::read_file(path, "checkpoint"));
    const std::uint8_t* b = buf->data();
    const std::size_t size = buf->size();
    const std::size_t magic_seen = size < sizeof(kMagic) ? size : sizeof(kMagic);
    VQVAE2_CHECK(magic_seen == 0 || std::memcmp(b, kMagic, magic_seen) == 0, "Checkpoint '", path,
                 "' is not a vqvae2 checkpoint (bad magic).");
    VQVAE2_CHECK(size >= kHeaderBytes, "Checkpoint '", path, "' is truncated (expected at least ", kMinFileBytes,
                 " bytes, found ", size, ").");
    std::uint32_t version;
    std::uint64_t expected;
    std::memcpy(&version, b + 8, 4);
    std::memcpy(&expected, b + 16, 8);
    VQVAE2_CHECK(version == kVersion, "Checkpoint '", path, "' has format version ", version,
                 " but this build reads version ", kVersion, ".");
    VQVAE2_CHECK(size >= expected, "Checkpoint '", path, "' is truncated (expected ", expected, " bytes, found ", size,
                 ").");
    VQVAE2_CHECK(size == expected, "Checkpoint '", path, "' has ", size - expected,
                 " unexpected bytes after its end (expected ", expected, " bytes, found ", size, ").");
    VQVAE2_CHECK(expected >= kMinFileBytes, "Checkpoint '", path, "' is malformed: its header claims ", expected,
                 " bytes, less than the minimum of ", kMinFileBytes, ".");
    std::uint32_t stored;
    std::memcpy(&stored, b + size - 4, 4);
    VQVAE2_CHECK(io::crc32(b, size - 4) == stored, "Checkpoint '", path, "' checksum mismatch: the file is corrupt.");

    Checkpoint ck;
    ck.source_ = path;
    ck.buffer_ = buf;
    Reader r{b, kHeaderBytes, size - 4, &path};
    ck.fingerprint_ = r.str("the fingerprint");
    std::uint32_t n_meta = r.pod<std::uint32_t>("the metadata count");
    for (std::uint32_t i = 0; i < n_meta; ++i) {
      std::string key = r.str("a metadata key");
      auto kind = static_cast<MetaKind>(r.pod<std::uint8_t>("a metadata kind"));
      VQVAE2_CHECK(!ck.has_meta(key), "Checkpoint '", path, "' is malformed: metadata '", key, "' appears twice.");
      if (kind == MetaKind::u64) {
        ck.set_u64(key, r.pod<std::uint64_t>("a metadata value"));
      } else if (kind == MetaKind::f64) {
        ck.set_f64(key, r.pod<double>("a metadata value"));
      } else if (kind == MetaKind::string) {
        ck.set_string(key, r.str("a metadata value"));
      } else {
        fail("Checkpoint '", path, "' is malformed: metadata '", key, "' has unknown kind ", static_cast<int>(kind),
             ".");
      }
    }
    std::uint32_t n_tensors = r.pod<std::uint32_t>("the tensor count");
    for (std::uint32_t i = 0; i < n_tensors; ++i) {
      Entry e;
      e.name = r.str("a tensor name");
      auto dt = r.pod<std::uint8_t>("a tensor dtype");
      VQVAE2_CHECK(dt >= 1 && dt <= 5, "Checkpoint '", path, "' is malformed: tensor '", e.name, "' has unknown dtype ",
                   static_cast<int>(dt), ".");
      e.dtype = static_cast<DType>(dt);
      int rank = r.pod<std::uint8_t>("a tensor rank");
      VQVAE2_CHECK(rank <= kMaxRank, "Checkpoint '", path, "' is malformed: tensor '", e.name, "' has rank ", rank,
                   ".");
      e.shape.rank = rank;
      std::uint64_t numel = 1;
      for (int d = 0; d < rank; ++d) {
        std::int64_t v = r.pod<std::int64_t>("a tensor dimension");
        VQVAE2_CHECK(v >= 0 && v < (std::int64_t(1) << 40), "Checkpoint '", path, "' is malformed: tensor '", e.name,
                     "' has dimension ", v, ".");
        e.shape.dims[d] = v;
        numel *= static_cast<std::uint64_t>(v);
      }
      std::uint64_t bytes = r.pod<std::uint64_t>("a tensor byte count");
      VQVAE2_CHECK(bytes == numel * dtype_size(e.dtype), "Checkpoint '", path, "' is malformed: tensor '", e.name,
                   "' of shape ", e.shape.str(), " and dtype ", dtype_name(e.dtype), " claims ", bytes, " bytes.");
      e.bytes = static_cast<std::size_t>(bytes);
      e.data = r.bytes(e.bytes, "tensor data");
      e.to_host = &HostCopy<Cpu>::to_host;
      VQVAE2_CHECK(!ck.has_tensor(e.name), "Checkpoint '", path, "' is malformed: tensor '", e.name,
                   "' appears twice.");
      ck.index_.emplace(e.name, ck.entries_.size());
      ck.entries_.push_back(std::move(e));
    }
    VQVAE2_CHECK(r.pos == r.end, "Checkpoint '", path, "' is malformed: ", r.end - r.pos,
                 " bytes of unknown data before the checksum.");
    return ck;
  }

 private:
  struct Entry {
    std::string name;
    DType dtype = DType::f32;
    Shape shape;
    const void* data = nullptr;
    std::size_t bytes = 0;
    std::shared_ptr<const void> keep;  // the aliased tensor (the file buffer holds loaded ones)
    void (*to_host)(void*, const void*, std::size_t) = nullptr;
  };
  struct Meta {
    std::string key;
    MetaKind kind = MetaKind::u64;
    std::uint64_t u = 0;
    double f = 0;
    std::string s;
  };

  // Bounds-checked parser over [pos, end).
  struct Reader {
    const std::uint8_t* base;
    std::size_t pos, end;
    const std::string* path;
    const std::uint8_t* bytes(std::size_t n, const char* what) {
      VQVAE2_CHECK(n <= end - pos, "Checkpoint '", *path, "' is malformed: ", what, " at byte ", pos,
                   " runs past the end of the data.");
      const std::uint8_t* p = base + pos;
      pos += n;
      return p;
    }
    template <class V>
    V pod(const char* what) {
      V v;
      std::memcpy(&v, bytes(sizeof(V), what), sizeof(V));
      return v;
    }
    std::string str(const char* what) {
      std::uint32_t n = pod<std::uint32_t>(what);
      const std::uint8_t* p = bytes(n, what);
      return std::string(reinterpret_cast<const char*>(p), n);
    }
  };

  static std::string join(std::string_view prefix, std::string_view name) {
    std::string s;
    s.reserve(prefix.size() + 1 + name.size());
    if (!prefix.empty()) s.append(prefix).append(".");
    s.append(name);
    return s;
  }

  std::uint64_t serialized_bytes() const {
    std::uint64_t n = kHeaderBytes + 4 + fingerprint_.size() + 4;
    for (const Meta& m : meta_) {
      n += 4 + m.key.size() + 1;
      n += m.kind == MetaKind::string ? 4 + m.s.size() : 8;
    }
    n += 4;
    for (const Entry& e : entries_) n += 4 + e.name.size() + 1 + 1 + 8 * e.shape.rank + 8 + e.bytes;
    return n + 4;
  }

  Meta& meta_slot(std::string_view key, MetaKind kind) {
    for (Meta& m : meta_)
      if (m.key == key) {
        m.kind = kind;
        return m;
      }
    meta_.push_back(Meta{std::string(key), kind, 0, 0.0, {}});
    return meta_.back();
  }
  const Meta* find_meta(std::string_view key) const {
    for (const Meta& m : meta_)
      if (m.key == key) return &m;
    return nullptr;
  }
  const Meta& meta_of(std::string_view key, MetaKind kind) const {
    static const char* kinds[] = {"", "u64", "f64", "string"};
    const Meta* m = find_meta(key);
    VQVAE2_CHECK(m != nullptr, "Checkpoint '", source_, "' has no metadata '", key, "'.");
    VQVAE2_CHECK(m->kind == kind, "Checkpoint '", source_, "' stores metadata '", key, "' as ",
                 kinds[static_cast<int>(m->kind)], ", not ", kinds[static_cast<int>(kind)], ".");
    return *m;
  }

  const Entry& entry(std::string_view name) const {
    auto it = index_.find(std::string(name));
    VQVAE2_CHECK(it != index_.end(), "Checkpoint '", source_, "' has no tensor '", name, "'.");
    return entries_[it->second];
  }
  void check_dtype(const Entry& e, DType want, const char* where) const {
    VQVAE2_CHECK(e.dtype == want, "Checkpoint '", source_, "': tensor '", e.name, "' is ", dtype_name(e.dtype), " but ",
                 where, " needs ", dtype_name(want), ".");
  }
  const Entry& checked_entry(std::string_view name, DType want, const Shape& shape, const char* where) const {
    const Entry& e = entry(name);
    check_dtype(e, want, where);
    VQVAE2_CHECK(e.shape == shape, "Checkpoint '", source_, "': tensor '", name, "' has shape ", e.shape.str(),
                 " but the target has shape ", shape.str(), ".");
    return e;
  }
  template <class T, class D>
  static void copy_into(const Entry& e, Tensor<T, D>& dst) {
    // Loaded entries are host memory; aliased ones may sit on another device.
    if (e.to_host == &HostCopy<Cpu>::to_host) {
      HostCopy<D>::from_host(dst.data(), e.data, e.bytes);
    } else {
      std::vector<unsigned char> staging(e.bytes);
      e.to_host(staging.data(), e.data, e.bytes);
      HostCopy<D>::from_host(dst.data(), staging.data(), e.bytes);
    }
  }

  std::string fingerprint_;
  std::string source_ = "<in-memory checkpoint>";
  std::vector<Meta> meta_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  std::shared_ptr<const std::vector<std::uint8_t>> buffer_;  // loaded file; entries point into it
};

}  // namespace vqvae2::train
