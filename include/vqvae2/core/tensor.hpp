// Tensor<T, Device>: a contiguous N-dimensional array (NCHW for images) with
// shared, reference-counted storage. Copies alias; views (reshape, batch
// slices, wrapped external memory) alias too; clone() copies the data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <sstream>
#include <string>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"

namespace vqvae2 {

inline constexpr int kMaxRank = 5;

struct Shape {
  std::array<std::int64_t, kMaxRank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> d) {
    VQVAE2_CHECK(d.size() <= kMaxRank, "Shape: rank ", d.size(), " exceeds the maximum of ", kMaxRank, ".");
    for (auto v : d) {
      VQVAE2_CHECK(v >= 0, "Shape: negative dimension ", v, ".");
      dims[rank++] = v;
    }
  }
  std::int64_t operator[](int i) const { return dims[i < 0 ? rank + i : i]; }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  // NCHW accessors for rank-4 shapes.
  std::int64_t n() const { return dims[0]; }
  std::int64_t c() const { return dims[1]; }
  std::int64_t h() const { return dims[2]; }
  std::int64_t w() const { return dims[3]; }
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; ++i)
      if (a.dims[i] != b.dims[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }
  std::string str() const {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << dims[i];
    os << ']';
    return os.str();
  }
};

inline Shape nchw(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) { return Shape{n, c, h, w}; }

// Raw memory per device. The CPU allocator aligns to 64 bytes for AVX-512;
// the CUDA one is provided by ops/cuda/allocator.hpp.
template <class Device>
struct Allocator;

template <>
struct Allocator<Cpu> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) bytes = 64;
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) fail("Allocator<Cpu>: out of memory allocating ", bytes, " bytes.");
    return p;
  }
  static void deallocate(void* p) { std::free(p); }
};

template <class T, class Device = Cpu>
class Tensor {
 public:
  using value_type = T;
  using device_type = Device;

  Tensor() = default;
  explicit Tensor(const Shape& shape) { allocate(shape); }

  // Non-owning view of external memory; the caller keeps it alive.
  static Tensor wrap(T* data, const Shape& shape) {
    Tensor t;
    t.storage_ = std::shared_ptr<T>(data, [](T*) {});
    t.capacity_ = shape.numel();
    t.shape_ = shape;
    return t;
  }

  static Tensor zeros(const Shape& shape) {
    Tensor t(shape);
    t.zero();
    return t;
  }

  const Shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank; }
  bool empty() const { return numel() == 0; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }

  T* data() { return storage_.get() + offset_; }
  const T* data() const { return storage_.get() + offset_; }
  T* begin() { return data(); }
  T* end() { return data() + numel(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + numel(); }
  T& operator[](std::int64_t i) { return data()[i]; }
  const T& operator[](std::int64_t i) const { return data()[i]; }
  // Element (n, c, h, w) of a rank-4 tensor (host memory only).
  T& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
    return data()[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }
  const T& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const {
    return data()[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }

  // Gives this tensor the shape, reusing the storage when it is large enough
  // and not shared: layers call it every step, and it allocates only once.
  void resize(const Shape& shape) {
    if (storage_ && offset_ == 0 && storage_.use_count() == 1 && capacity_ >= shape.numel()) {
      shape_ = shape;
      return;
    }
    allocate(shape);
  }

  // A view with another shape over the same elements.
  Tensor reshape(const Shape& shape) const {
    VQVAE2_CHECK(shape.numel() == numel(), "Tensor::reshape: cannot view ", shape_.str(), " as ", shape.str(),
                 " (", numel(), " vs ", shape.numel(), " elements).");
    Tensor t = *this;
    t.shape_ = shape;
    return t;
  }

  // A view of `count` entries of the first dimension starting at `start`.
  Tensor slice0(std::int64_t start, std::int64_t count) const {
    VQVAE2_CHECK(shape_.rank >= 1 && start >= 0 && count >= 0 && start + count <= shape_[0],
                 "Tensor::slice0: range [", start, ", ", start + count, ") is outside ", shape_.str(), ".");
    Tensor t = *this;
    std::int64_t inner = shape_[0] ? numel() / shape_[0] : 0;
    t.offset_ = offset_ + start * inner;
    t.shape_.dims[0] = count;
    return t;
  }

  Tensor clone() const;
  void zero();
  void fill(T value);
  void copy_from(const Tensor& other);

 private:
  void allocate(const Shape& shape) {
    T* p = static_cast<T*>(Allocator<Device>::allocate(static_cast<std::size_t>(shape.numel()) * sizeof(T)));
    storage_ = std::shared_ptr<T>(p, [](T* q) { Allocator<Device>::deallocate(q); });
    offset_ = 0;
    capacity_ = shape.numel();
    shape_ = shape;
  }

  std::shared_ptr<T> storage_;
  std::int64_t offset_ = 0;
  std::int64_t capacity_ = 0;
  Shape shape_;
};

template <class T, class Device>
Tensor<T, Device> Tensor<T, Device>::clone() const {
  Tensor t(shape_);
  t.copy_from(*this);
  return t;
}

// Host implementations; the CUDA ones live with the CUDA backend.
template <class T, class Device>
void Tensor<T, Device>::zero() {
  static_assert(is_cpu_v<Device>, "Tensor::zero on this device needs its backend header");
  if (numel()) std::memset(static_cast<void*>(data()), 0, bytes());
}
template <class T, class Device>
void Tensor<T, Device>::fill(T value) {
  static_assert(is_cpu_v<Device>, "Tensor::fill on this device needs its backend header");
  T* p = data();
  for (std::int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}
template <class T, class Device>
void Tensor<T, Device>::copy_from(const Tensor& other) {
  static_assert(is_cpu_v<Device>, "Tensor::copy_from on this device needs its backend header");
  VQVAE2_CHECK(other.numel() == numel(), "Tensor::copy_from: ", other.shape().str(), " into ", shape_.str(), ".");
  if (numel()) std::memcpy(static_cast<void*>(data()), other.data(), bytes());
}

// Checks a tensor's shape at a layer boundary with a message naming both.
template <class T, class D>
void expect_shape(const char* where, const Tensor<T, D>& t, const Shape& expected) {
  VQVAE2_CHECK(t.shape() == expected, where, ": expected shape ", expected.str(), ", got ", t.shape().str(), ".");
}

}  // namespace vqvae2
