// A file that appears under its final name complete or not at all: bytes go to a temporary
// sibling that is renamed over the target on commit and removed on any failure, so bad input
// or a crash never leaves a partial checkpoint or index behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ir/Error.h"

namespace tpc {

class AtomicFile {
 public:
  // Creates `path` + ".tmp-XXXXXX" next to `path`, with the permissions a plain create gets.
  static Expected<AtomicFile> create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFile();

  Error write(const void* data, size_t size);
  // Flushes to disk, then renames over the target.
  Error commit();
  const std::string& tempPath() const { return tempPath_; }

 private:
  AtomicFile(std::string path, std::string tempPath, int fd)
      : path_(std::move(path)), tempPath_(std::move(tempPath)), fd_(fd) {}
  void discard();

  std::string path_;
  std::string tempPath_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `contents` to `path` through an AtomicFile.
Error writeFileAtomically(const std::string& path, std::string_view contents);

}  // namespace tpc
