// An owning, zero-initialised, 64-byte-aligned byte buffer: the storage of sign matrices and of
// packed layers, whose rows start on cache-line boundaries so kernels may use aligned loads.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

namespace onebit::detail {

inline constexpr std::size_t cache_line = 64;

constexpr std::size_t round_up(std::size_t n, std::size_t multiple) noexcept {
  return (n + multiple - 1) / multiple * multiple;
}

class aligned_buffer {
 public:
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t bytes) : aligned_buffer(bytes, uninitialized) {
    if (bytes != 0) std::memset(data_.get(), 0, bytes);
  }
  // Contents undefined: for scratch that is written before it is read.
  struct uninitialized_t {};
  static constexpr uninitialized_t uninitialized{};
  aligned_buffer(std::size_t bytes, uninitialized_t) : size_(bytes) {
    if (bytes != 0)
      data_.reset(static_cast<std::byte*>(
          ::operator new(round_up(bytes, cache_line), std::align_val_t{cache_line})));
  }
  aligned_buffer(const aligned_buffer& other) : aligned_buffer(other.size_) {
    if (size_ != 0) std::memcpy(data_.get(), other.data_.get(), size_);
  }
  aligned_buffer& operator=(const aligned_buffer& other) {
    if (this != &other) *this = aligned_buffer(other);
    return *this;
  }
  aligned_buffer(aligned_buffer&& other) noexcept
      : data_(std::move(other.data_)), size_(other.size_) {
    other.size_ = 0;
  }
  aligned_buffer& operator=(aligned_buffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = other.size_;
    other.size_ = 0;
    return *this;
  }

  // Grows to at least `bytes` (contents then undefined), never shrinks: a buffer reused call
  // after call allocates only while the calls grow.
  void reserve(std::size_t bytes) {
    if (bytes > size_) *this = aligned_buffer(bytes, uninitialized);
  }

  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }

 private:
  struct deleter {
    void operator()(std::byte* p) const noexcept {
      ::operator delete(p, std::align_val_t{cache_line});
    }
  };
  std::unique_ptr<std::byte, deleter> data_;
  std::size_t size_ = 0;
};

}  // namespace onebit::detail
