#include "frontends/Safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <system_error>
#include <utility>

#include "frontends/SafetensorsHeader.h"

namespace tpc {
namespace {

std::string systemMessage(int error) { return std::system_category().message(error); }

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

uint64_t fnv1a(const uint8_t* data, size_t size) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= data[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

uint64_t TensorInfo::numElements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

Expected<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  // O_NONBLOCK so a FIFO given by mistake is refused below instead of blocking the open.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return makeError(path, ": cannot open: ", systemMessage(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return makeError(path, ": cannot stat: ", systemMessage(errno));
  if (!S_ISREG(st.st_mode)) return makeError(path, ": not a regular file");
  auto size = static_cast<uint64_t>(st.st_size);
  // Also covers the empty file, which mmap would refuse.
  if (size < 8)
    return makeError(path, ": file is shorter than 8 bytes (", size,
                     " bytes), so it has no safetensors header length");

  void* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (mapped == MAP_FAILED) return makeError(path, ": cannot map: ", systemMessage(errno));
  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = static_cast<const uint8_t*>(mapped);
  file.fileSize_ = size;

  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i) headerLength = (headerLength << 8) | file.mapping_[i];
  if (headerLength > kMaxSafetensorsHeaderBytes)
    return makeError(path, ": header length ", headerLength, " is over the ",
                     kMaxSafetensorsHeaderBytes, "-byte limit");
  if (headerLength > size - 8)
    return makeError(path, ": header length ", headerLength, " runs past the end of the file (",
                     size, " bytes)");
  file.dataOffset_ = 8 + headerLength;
  std::string_view text(reinterpret_cast<const char*>(file.mapping_ + 8), headerLength);
  Expected<SafetensorsHeader> header = parseSafetensorsHeader(text, size - file.dataOffset_, path);
  if (!header) return header.takeError();

  file.tensors_ = std::move(header->tensors);
  file.metadata_ = std::move(header->metadata);
  file.headerHash_ = fnv1a(file.mapping_, file.dataOffset_);
  file.byName_.resize(file.tensors_.size());
  for (uint32_t i = 0; i < file.byName_.size(); ++i) file.byName_[i] = i;
  std::sort(file.byName_.begin(), file.byName_.end(),
            [&](uint32_t a, uint32_t b) { return file.tensors_[a].name < file.tensors_[b].name; });
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this == &other) return *this;
  release();
  path_ = std::move(other.path_);
  mapping_ = std::exchange(other.mapping_, nullptr);
  fileSize_ = std::exchange(other.fileSize_, 0);
  dataOffset_ = std::exchange(other.dataOffset_, 0);
  headerHash_ = std::exchange(other.headerHash_, 0);
  // Moving the vectors keeps their buffers, so TensorInfo pointers handed out stay valid.
  tensors_ = std::move(other.tensors_);
  byName_ = std::move(other.byName_);
  metadata_ = std::move(other.metadata_);
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() {
  if (mapping_) ::munmap(const_cast<uint8_t*>(mapping_), fileSize_);
  mapping_ = nullptr;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(byName_.begin(), byName_.end(), name,
                             [&](uint32_t i, std::string_view n) { return tensors_[i].name < n; });
  if (it == byName_.end() || tensors_[*it].name != name) return nullptr;
  return &tensors_[*it];
}

std::span<const uint8_t> SafetensorsFile::bytes(const TensorInfo& t) const {
  assert(t.dataEnd <= fileSize_ - dataOffset_ && "TensorInfo from another file");
  return {mapping_ + dataOffset_ + t.dataBegin, t.byteLength()};
}

}  // namespace tpc
