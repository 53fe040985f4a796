// File helpers shared by every writer of results (checkpoints, images, logs):
//
//  * AtomicFile / write_file_atomic: write "<path>.tmp.<pid>", check every
//    write, fsync, then rename over <path>. A crash, a full disk or any other
//    error leaves the earlier <path> untouched and removes the temporary.
//  * read_file / read_text_file: the whole file into memory, with errors that
//    name the file and the system's reason.
//  * Crc32: the IEEE CRC-32 (the one of zlib, PNG and gzip), slicing-by-8.
//
// POSIX only (open/write/fsync/rename): the library targets Linux.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "vqvae2/core/error.hpp"

namespace vqvae2::io {

namespace detail {

// Table k maps a byte to its CRC contribution k bytes further on, so eight
// input bytes are folded with eight independent lookups per iteration.
constexpr std::array<std::array<std::uint32_t, 256>, 8> make_crc32_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int b = 0; b < 8; ++b) c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    t[0][i] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (std::uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFu];
  return t;
}
inline constexpr auto kCrc32Tables = make_crc32_tables();

inline std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace detail

// Incremental CRC-32: update() any number of times, then value().
class Crc32 {
 public:
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    const auto& t = detail::kCrc32Tables;
    std::uint32_t c = state_;
    while (n >= 8) {
      std::uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + 4, 4);
      if constexpr (std::endian::native == std::endian::big) {
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
      }
      lo ^= c;
      c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
          t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
      p += 8;
      n -= 8;
    }
    while (n--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
    state_ = c;
  }
  std::uint32_t value() const { return ~state_; }

 private:
  std::uint32_t state_ = 0xFFFFFFFFu;
};

inline std::uint32_t crc32(const void* data, std::size_t n) {
  Crc32 c;
  c.update(data, n);
  return c.value();
}

// Writes a file atomically. Typical use:
//   AtomicFile f(path);  f.write(...); ...; f.commit();
// Destroying it without commit() (an exception on the way) removes the
// temporary and leaves <path> as it was. Writes are buffered (1 MiB).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    tmp_ = path_ + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      int err = errno;
      fail("Cannot save '", path_, "': creating the temporary file '", tmp_, "' failed (", detail::errno_text(err),
           ").");
    }
    buffer_ = std::make_unique<unsigned char[]>(kBufferBytes);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return tmp_; }
  std::uint64_t bytes_written() const { return written_ + used_; }

  void write(const void* data, std::size_t n) {
    VQVAE2_CHECK(fd_ >= 0, "AtomicFile: write to '", path_, "' after commit or failure.");
    if (n == 0) return;
    const auto* p = static_cast<const unsigned char*>(data);
    if (n > kBufferBytes - used_) {
      flush_buffer();
      if (n >= kBufferBytes) return write_all(p, n);
    }
    std::memcpy(buffer_.get() + used_, p, n);
    used_ += n;
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  // Makes the data durable and puts it in place of <path>.
  void commit() {
    VQVAE2_CHECK(fd_ >= 0, "AtomicFile: commit of '", path_, "' after commit or failure.");
    flush_buffer();
    if (::fsync(fd_) != 0) fail_io("flushing");
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail_io("closing");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail_io("renaming");
    committed_ = true;
    sync_parent_directory();
  }

 private:
  static constexpr std::size_t kBufferBytes = std::size_t(1) << 20;

  void flush_buffer() {
    if (used_) write_all(buffer_.get(), used_);
    used_ = 0;
  }

  void write_all(const unsigned char* p, std::size_t n) {
    while (n > 0) {
      // Linux writes at most ~2 GiB per call; chunk so the loop is portable.
      std::size_t chunk = n < (std::size_t(1) << 30) ? n : (std::size_t(1) << 30);
      ssize_t r = ::write(fd_, p, chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        if (r == 0) errno = ENOSPC;
        fail_io("writing");
      }
      p += r;
      n -= static_cast<std::size_t>(r);
      written_ += static_cast<std::uint64_t>(r);
    }
  }

  [[noreturn]] void fail_io(const char* action) {
    int err = errno;
    std::uint64_t at = written_;
    abandon();
    fail("Cannot save '", path_, "': ", action, " the temporary file '", tmp_, "' failed after ", at, " bytes (",
         detail::errno_text(err), "); the earlier '", path_, "' is unchanged.");
  }

  void abandon() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
    committed_ = true;  // nothing left to clean up
  }

  // Makes the rename itself durable; best effort (some file systems refuse).
  void sync_parent_directory() {
    std::string dir = ".";
    if (auto slash = path_.find_last_of('/'); slash != std::string::npos)
      dir = slash == 0 ? "/" : path_.substr(0, slash);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::uint64_t written_ = 0;
  std::unique_ptr<unsigned char[]> buffer_;
  std::size_t used_ = 0;
};

inline void write_file_atomic(const std::string& path, const void* data, std::size_t n) {
  AtomicFile f(path);
  f.write(data, n);
  f.commit();
}
inline void write_file_atomic(const std::string& path, std::string_view text) {
  write_file_atomic(path, text.data(), text.size());
}

// Reads a whole file; `what` names the caller's kind of file in messages.
inline std::vector<std::uint8_t> read_file(const std::string& path, std::string_view what = "file") {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    fail("Cannot read ", what, " '", path, "' (", detail::errno_text(err), ").");
  }
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) fail("Cannot read ", what, " '", path, "': it is a directory.");
  // One byte more than the size, so the read that finds the end needs no growth;
  // reading until end of file rather than trusting st_size covers pipes.
  std::vector<std::uint8_t> data(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) + 1 : (std::size_t(1) << 16));
  std::size_t used = 0;
  for (;;) {
    if (used == data.size()) data.resize(used * 2);
    ssize_t r = ::read(fd, data.data() + used, data.size() - used);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      fail("Cannot read ", what, " '", path, "': reading failed after ", used, " bytes (", detail::errno_text(err),
           ").");
    }
    if (r == 0) break;
    used += static_cast<std::size_t>(r);
  }
  data.resize(used);
  return data;
}

inline std::string read_text_file(const std::string& path, std::string_view what = "file") {
  std::vector<std::uint8_t> d = read_file(path, what);
  return std::string(d.begin(), d.end());
}

}  // namespace vqvae2::io
