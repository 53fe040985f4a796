// Batches over an in-memory ImageSet, as Tensor<T>[B, 1, H, W] in [-1, 1].
//
// BatchLoader (training): the order of epoch e is a Fisher-Yates shuffle drawn
// from Philox counters that depend only on (seed, e), so a run resumed at
// (epoch, batch) sees exactly the batches the uninterrupted run would have.
// With prefetch on, a background thread fills the next batch while the trainer
// works on the current one (double buffering), so the trainer never waits on
// normalisation. SequentialBatches (evaluation): in file order, the last batch
// may be short, no thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "vqvae2/core/device.hpp"
#include "vqvae2/core/error.hpp"
#include "vqvae2/core/rng.hpp"
#include "vqvae2/core/tensor.hpp"
#include "vqvae2/data/image_folder.hpp"

namespace vqvae2::data {

// Byte -> [-1, 1], the normalisation the reference model was trained with.
template <class T>
struct ByteToUnit {
  VQVAE2_HD T operator()(std::uint8_t v) const { return static_cast<T>(v) / static_cast<T>(127.5) - static_cast<T>(1); }
};

// The inverse (how a reconstruction becomes a saved byte) is metrics::unit_to_byte.

// Writes images indices[0..count) of `set` into `out` as [count, 1, H, W] in [-1, 1].
// `out` is resized, which reuses its storage once it has held a full batch.
template <class T>
void fill_batch(const ImageSet& set, const std::int64_t* indices, std::int64_t count, Tensor<T, Cpu>& out) {
  out.resize(nchw(count, 1, set.height, set.width));
  const std::int64_t hw = set.image_bytes();
  // A table of the functor's 256 values: the same numbers, a load instead of a division per pixel.
  T table[256];
  const ByteToUnit<T> f;
  for (int v = 0; v < 256; ++v) table[v] = f(static_cast<std::uint8_t>(v));
  for (std::int64_t b = 0; b < count; ++b) {
    VQVAE2_CHECK(indices[b] >= 0 && indices[b] < set.count, "fill_batch: image index ", indices[b],
                 " is outside the set of ", set.count, " images.");
    const std::uint8_t* src = set.image(indices[b]);
    T* dst = out.data() + b * hw;
    for (std::int64_t i = 0; i < hw; ++i) dst[i] = table[src[i]];
  }
}

// The image order of one epoch into `order` (capacity reused). Epoch e draws
// from Philox counters [e * 2^32, e * 2^32 + n), keyed by the seed, so every
// epoch's order is a pure function of (seed, epoch).
inline void epoch_order(std::uint64_t seed, std::int64_t epoch, std::int64_t n, bool shuffle,
                        std::vector<std::int64_t>& order) {
  VQVAE2_CHECK(epoch >= 0, "epoch_order: negative epoch ", epoch, ".");
  VQVAE2_CHECK(n < (std::int64_t{1} << 32), "epoch_order: ", n, " images exceed the 2^32 one epoch can shuffle.");
  order.resize(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (!shuffle) return;
  Generator g;
  g.set_state(seed, static_cast<std::uint64_t>(epoch) << 32);
  for (std::int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<std::int64_t>(g.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
}

struct LoaderOptions {
  std::int64_t batch_size = 16;
  bool shuffle = true;
  bool drop_last = true;  // false: the last batch of an epoch may be short
  std::uint64_t seed = 0;
  bool prefetch = true;  // fill the next batch on a background thread
};

// Where a loader is: the epoch and the batch within it.
struct LoaderPosition {
  std::int64_t epoch = 0;
  std::int64_t batch = 0;
  friend bool operator==(const LoaderPosition&, const LoaderPosition&) = default;
};

template <class T = float>
class BatchLoader {
 public:
  BatchLoader(std::shared_ptr<const ImageSet> images, const LoaderOptions& opt) : set_(std::move(images)), opt_(opt) {
    VQVAE2_CHECK(set_ != nullptr && set_->count > 0, "BatchLoader: the image set is empty.");
    VQVAE2_CHECK(opt_.batch_size > 0, "BatchLoader: batch size must be positive, got ", opt_.batch_size, ".");
    VQVAE2_CHECK(batches_per_epoch() > 0, "BatchLoader: ", set_->count, " images are fewer than one batch of ",
                 opt_.batch_size, " and drop_last is set.");
    // Both buffers at full size now, so no step allocates later.
    for (auto& s : slots_) {
      s.x.resize(nchw(opt_.batch_size, 1, set_->height, set_->width));
      s.indices.reserve(static_cast<std::size_t>(opt_.batch_size));
    }
    order_.reserve(static_cast<std::size_t>(set_->count));
  }
  BatchLoader(ImageSet images, const LoaderOptions& opt)
      : BatchLoader(std::make_shared<const ImageSet>(std::move(images)), opt) {}
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;
  ~BatchLoader() { stop_worker(); }

  std::int64_t size() const { return set_->count; }
  const ImageSet& images() const { return *set_; }
  const LoaderOptions& options() const { return opt_; }
  std::int64_t batches_per_epoch() const {
    return opt_.drop_last ? set_->count / opt_.batch_size : (set_->count + opt_.batch_size - 1) / opt_.batch_size;
  }

  // The position of the batch the next call to next() returns (save it in a checkpoint).
  LoaderPosition position() const { return consume_; }

  // Continues at (epoch, batch). Invalidates the tensor last returned by next().
  void seek(std::int64_t epoch, std::int64_t batch = 0) {
    VQVAE2_CHECK(epoch >= 0 && batch >= 0 && batch < batches_per_epoch(), "BatchLoader::seek: position (epoch ", epoch,
                 ", batch ", batch, ") is invalid; an epoch has ", batches_per_epoch(), " batches.");
    stop_worker();
    consume_ = produce_ = LoaderPosition{epoch, batch};
  }

  // The next batch [B, 1, H, W] in [-1, 1]; after an epoch's last batch comes
  // the next epoch's first. Valid until the next call to next() or seek().
  const Tensor<T, Cpu>& next() {
    if (!opt_.prefetch) {
      fill(slots_[0], consume_);
      consume_ = advance(consume_);
      current_ = 0;
      return slots_[0].x;
    }
    if (!worker_.joinable()) start_worker();
    std::unique_lock<std::mutex> lock(mutex_);
    if (current_ >= 0) {
      slots_[current_].state = State::Free;  // the caller is done with it
      current_ = -1;
      cv_.notify_all();
    }
    int ready = -1;
    cv_.wait(lock, [&] {
      if (error_) return true;
      for (int s = 0; s < 2; ++s)
        if (slots_[s].state == State::Ready && slots_[s].pos == consume_) ready = s;
      return ready >= 0;
    });
    if (error_) std::rethrow_exception(error_);
    slots_[ready].state = State::InUse;
    current_ = ready;
    consume_ = advance(consume_);
    return slots_[ready].x;
  }

  // The image indices (into the ImageSet) of the batch last returned by next().
  const std::vector<std::int64_t>& last_indices() const {
    VQVAE2_CHECK(current_ >= 0, "BatchLoader::last_indices: no batch has been returned since the last seek.");
    return slots_[current_].indices;
  }
  // The position of the batch last returned by next().
  LoaderPosition last_position() const {
    VQVAE2_CHECK(current_ >= 0, "BatchLoader::last_position: no batch has been returned since the last seek.");
    return slots_[current_].pos;
  }

 private:
  enum class State { Free, Filling, Ready, InUse };
  struct Slot {
    Tensor<T, Cpu> x;
    std::vector<std::int64_t> indices;
    LoaderPosition pos;
    State state = State::Free;
  };

  LoaderPosition advance(LoaderPosition p) const {
    if (++p.batch == batches_per_epoch()) return LoaderPosition{p.epoch + 1, 0};
    return p;
  }

  // Runs on the worker thread (or the caller's when prefetch is off); only
  // one of them ever exists at a time, so order_ needs no lock.
  void fill(Slot& s, LoaderPosition p) {
    if (p.epoch != order_epoch_) {
      epoch_order(opt_.seed, p.epoch, set_->count, opt_.shuffle, order_);
      order_epoch_ = p.epoch;
    }
    const std::int64_t start = p.batch * opt_.batch_size;
    const std::int64_t count = std::min(opt_.batch_size, set_->count - start);
    s.indices.assign(order_.begin() + start, order_.begin() + start + count);
    fill_batch(*set_, s.indices.data(), count, s.x);
    s.pos = p;
  }

  void start_worker() {
    for (auto& s : slots_) s.state = State::Free;
    current_ = -1;
    stop_ = false;
    error_ = nullptr;
    worker_ = std::thread([this] { produce(); });
  }

  void stop_worker() {
    if (worker_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      cv_.notify_all();
      worker_.join();
    }
    for (auto& s : slots_) s.state = State::Free;
    current_ = -1;
  }

  void produce() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      int free_slot = -1;
      cv_.wait(lock, [&] {
        if (stop_) return true;
        for (int s = 0; s < 2; ++s)
          if (slots_[s].state == State::Free) free_slot = s;
        return free_slot >= 0;
      });
      if (stop_) return;
      Slot& s = slots_[free_slot];
      s.state = State::Filling;
      LoaderPosition p = produce_;
      produce_ = advance(produce_);
      lock.unlock();
      std::exception_ptr err;
      try {
        fill(s, p);
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      if (err) {
        error_ = err;
        cv_.notify_all();
        return;
      }
      s.state = State::Ready;
      cv_.notify_all();
    }
  }

  std::shared_ptr<const ImageSet> set_;
  LoaderOptions opt_;
  Slot slots_[2];
  int current_ = -1;  // slot handed to the caller, or -1
  LoaderPosition consume_, produce_;
  std::vector<std::int64_t> order_;
  std::int64_t order_epoch_ = -1;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::exception_ptr error_;
};

// Evaluation batches in file order; the last one may be short. The caller
// keeps `set` alive.
template <class T = float>
class SequentialBatches {
 public:
  SequentialBatches(const ImageSet& set, std::int64_t batch_size) : set_(&set), batch_size_(batch_size) {
    VQVAE2_CHECK(batch_size > 0, "SequentialBatches: batch size must be positive, got ", batch_size, ".");
    VQVAE2_CHECK(set.count > 0, "SequentialBatches: the image set is empty.");
    x_.resize(nchw(batch_size, 1, set.height, set.width));
    indices_.reserve(static_cast<std::size_t>(batch_size));
  }

  // Moves to the next batch; false once all images have been visited.
  bool next() {
    if (next_start_ >= set_->count) return false;
    first_ = next_start_;
    const std::int64_t count = std::min(batch_size_, set_->count - first_);
    indices_.resize(static_cast<std::size_t>(count));
    std::iota(indices_.begin(), indices_.end(), first_);
    fill_batch(*set_, indices_.data(), count, x_);
    next_start_ = first_ + count;
    return true;
  }
  void reset() { next_start_ = 0; }

  const Tensor<T, Cpu>& batch() const { return x_; }
  std::int64_t first() const { return first_; }  // index of the batch's first image
  std::int64_t count() const { return x_.dim(0); }
  std::int64_t num_batches() const { return (set_->count + batch_size_ - 1) / batch_size_; }

 private:
  const ImageSet* set_;
  std::int64_t batch_size_;
  std::int64_t next_start_ = 0;
  std::int64_t first_ = 0;
  std::vector<std::int64_t> indices_;
  Tensor<T, Cpu> x_;
};

}  // namespace vqvae2::data
