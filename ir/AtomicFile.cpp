#include "ir/AtomicFile.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <system_error>
#include <utility>

namespace tpc {
namespace {

std::string systemMessage(int error) { return std::system_category().message(error); }

}  // namespace

Expected<AtomicFile> AtomicFile::create(const std::string& path) {
  // Not mkstemp: it creates mode 0600, and a checkpoint should get the usual 0666 & ~umask.
  std::random_device seed;
  std::mt19937_64 random((uint64_t{seed()} << 32) ^ seed());
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, ".tmp-%06llx",
                  static_cast<unsigned long long>(random() & 0xFFFFFF));
    std::string tempPath = path + suffix;
    int fd = ::open(tempPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return AtomicFile(path, tempPath, fd);
    if (errno != EEXIST)
      return makeError(path, ": cannot create ", tempPath, ": ", systemMessage(errno));
  }
  return makeError(path, ": cannot create a temporary file next to it: every name tried exists");
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      tempPath_(std::move(other.tempPath_)),
      fd_(std::exchange(other.fd_, -1)),
      committed_(std::exchange(other.committed_, true)) {}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!committed_) ::unlink(tempPath_.c_str());
  committed_ = true;
}

Error AtomicFile::write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int error = n < 0 ? errno : EIO;
      return makeError(path_, ": cannot write ", tempPath_, ": ", systemMessage(error));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Error::success();
}

Error AtomicFile::commit() {
  if (::fdatasync(fd_) != 0)
    return makeError(path_, ": cannot flush ", tempPath_, ": ", systemMessage(errno));
  int fd = std::exchange(fd_, -1);
  // close() is where some file systems report a failed write-back.
  if (::close(fd) != 0)
    return makeError(path_, ": cannot close ", tempPath_, ": ", systemMessage(errno));
  if (::rename(tempPath_.c_str(), path_.c_str()) != 0)
    return makeError(path_, ": cannot rename ", tempPath_, " over it: ", systemMessage(errno));
  committed_ = true;
  return Error::success();
}

Error writeFileAtomically(const std::string& path, std::string_view contents) {
  Expected<AtomicFile> file = AtomicFile::create(path);
  if (!file) return file.takeError();
  if (Error e = file->write(contents.data(), contents.size())) return e;
  return file->commit();
}

}  // namespace tpc
