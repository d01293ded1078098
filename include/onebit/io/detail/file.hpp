// Files for onebit::io: a read-only memory map of a whole file (or, where there is no mmap, the
// file read into a 64-byte-aligned buffer), and a writer that never leaves a half-written file
// under the final name: it writes a temporary file in the same directory, flushes it to disk,
// and renames it over the destination only once every byte is written.
//
// Errors are reported as `os_failure` (a path, an action, errno); the public header turns them
// into onebit::io::error.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "../../detail/aligned_buffer.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define ONEBIT_IO_POSIX 1
#else
#define ONEBIT_IO_POSIX 0
#endif

namespace onebit::io::detail {

struct os_failure {
  std::string path;
  std::string action;  // "open", "map", "write", ...
  int error_number = 0;
  std::string message() const {
    return "cannot " + action + ": " +
           (error_number != 0 ? std::string(std::strerror(error_number)) : std::string("failed"));
  }
};

// The bytes of a whole file, read-only, valid while this object lives. With POSIX, a private
// read-only mapping (the page cache is shared, nothing is copied); the address is page-aligned,
// so a file's 64-byte-aligned offsets are 64-byte-aligned in memory.
class file_bytes {
 public:
  file_bytes() = default;
  explicit file_bytes(const std::string& path) {
#if ONEBIT_IO_POSIX
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw os_failure{path, "open the file", errno};
    struct fd_closer {
      int fd;
      ~fd_closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw os_failure{path, "stat the file", errno};
    // A FIFO, a device or a directory has no fixed size to validate against.
    if (!S_ISREG(st.st_mode)) throw os_failure{path, "read it: it is not a regular file", 0};
    if (st.st_size < 0 ||
        static_cast<std::uint64_t>(st.st_size) > std::numeric_limits<std::size_t>::max())
      throw os_failure{path, "map it: it is larger than the address space", EFBIG};
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) return;  // mmap of 0 bytes fails; an empty file is rejected by the parser
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw os_failure{path, "map the file", errno};
    mapped_ = static_cast<const std::byte*>(p);
#else
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) throw os_failure{path, "open the file", errno};
    struct file_closer {
      std::FILE* f;
      ~file_closer() { std::fclose(f); }
    } closer{f};
    if (std::fseek(f, 0, SEEK_END) != 0) throw os_failure{path, "seek in the file", errno};
    const long end = std::ftell(f);
    if (end < 0) throw os_failure{path, "tell the file's size", errno};
    std::rewind(f);
    size_ = static_cast<std::size_t>(end);
    buffer_ = onebit::detail::aligned_buffer(size_, onebit::detail::aligned_buffer::uninitialized);
    if (size_ != 0 && std::fread(buffer_.data(), 1, size_, f) != size_)
      throw os_failure{path, "read the file", errno};
#endif
  }

  file_bytes(const file_bytes&) = delete;
  file_bytes& operator=(const file_bytes&) = delete;
  file_bytes(file_bytes&& other) noexcept { swap(other); }
  file_bytes& operator=(file_bytes&& other) noexcept {
    file_bytes(std::move(other)).swap(*this);
    return *this;
  }
  ~file_bytes() {
#if ONEBIT_IO_POSIX
    if (mapped_ != nullptr) ::munmap(const_cast<std::byte*>(mapped_), size_);
#endif
  }

  const std::byte* data() const noexcept { return mapped_ != nullptr ? mapped_ : buffer_.data(); }
  std::size_t size() const noexcept { return size_; }
  // Whether the bytes are mapped from the file (zero-copy) rather than read into memory.
  bool mapped() const noexcept { return mapped_ != nullptr; }

 private:
  void swap(file_bytes& other) noexcept {
    std::swap(mapped_, other.mapped_);
    std::swap(size_, other.size_);
    std::swap(buffer_, other.buffer_);
  }

  const std::byte* mapped_ = nullptr;
  std::size_t size_ = 0;
  onebit::detail::aligned_buffer buffer_;
};

// Writes a file under a temporary name beside `path`, then renames it into place on commit().
// Destroyed without commit() (an exception, a failed write), it removes the temporary file: the
// destination then still holds what it held before, or does not exist.
class atomic_file {
 public:
  explicit atomic_file(std::string path) : path_(std::move(path)) {
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0;; ++attempt) {
#if ONEBIT_IO_POSIX
      temp_ = path_ + ".tmp-onebit-" + std::to_string(::getpid()) + "-" +
              std::to_string(counter.fetch_add(1));
      // 0666 and the process umask, as for any new file; O_EXCL: never reuse a stranger's file.
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) break;
      if (errno != EEXIST || attempt == 100)
        throw os_failure{path_, "create a temporary file " + temp_, errno};
#else
      temp_ = path_ + ".tmp-onebit-" + std::to_string(counter.fetch_add(1));
      file_ = std::fopen(temp_.c_str(), "wbx");
      if (file_ != nullptr) break;
      if (attempt == 100) throw os_failure{path_, "create a temporary file " + temp_, errno};
#endif
    }
  }
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;

  ~atomic_file() {
    if (committed_) return;
    close_quietly();
    std::remove(temp_.c_str());
  }

  // Appends bytes; throws os_failure when the disk is full, a limit is reached, etc.
  void write(const void* data, std::size_t size) {
    const auto* p = static_cast<const char*>(data);
#if ONEBIT_IO_POSIX
    while (size != 0) {
      const std::size_t chunk = size < (std::size_t{1} << 30) ? size : (std::size_t{1} << 30);
      const ::ssize_t n = ::write(fd_, p, chunk);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw os_failure{path_, "write " + temp_, errno};
      }
      if (n == 0) throw os_failure{path_, "write " + temp_, EIO};
      p += n;
      size -= static_cast<std::size_t>(n);
    }
#else
    if (size != 0 && std::fwrite(p, 1, size, file_) != size)
      throw os_failure{path_, "write " + temp_, errno};
#endif
  }

  // Flushes the file to disk and renames it to the destination.
  void commit() {
#if ONEBIT_IO_POSIX
    if (::fsync(fd_) != 0) throw os_failure{path_, "flush " + temp_ + " to disk", errno};
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw os_failure{path_, "close " + temp_, errno};
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
      throw os_failure{path_, "rename " + temp_ + " to it", errno};
    committed_ = true;
    // Make the rename itself durable; a failure here loses nothing already written.
    const std::string::size_type slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
#else
    std::FILE* f = file_;
    file_ = nullptr;
    if (std::fflush(f) != 0 || std::fclose(f) != 0)
      throw os_failure{path_, "close " + temp_, errno};
    std::remove(path_.c_str());  // rename does not replace an existing file everywhere
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
      throw os_failure{path_, "rename " + temp_ + " to it", errno};
    committed_ = true;
#endif
  }

  const std::string& temp_path() const noexcept { return temp_; }

 private:
  void close_quietly() noexcept {
#if ONEBIT_IO_POSIX
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
#else
    if (file_ != nullptr) std::fclose(file_);
    file_ = nullptr;
#endif
  }

  std::string path_, temp_;
#if ONEBIT_IO_POSIX
  int fd_ = -1;
#else
  std::FILE* file_ = nullptr;
#endif
  bool committed_ = false;
};

}  // namespace onebit::io::detail
