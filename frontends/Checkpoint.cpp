#include "frontends/Checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <system_error>

#include "frontends/SafetensorsWriter.h"
#include "frontends/StrictJson.h"

namespace tpc {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSingleFileName = "model.safetensors";
// Real indexes are a few hundred KB; this only stops a stray huge file from being read whole.
constexpr uint64_t kMaxIndexBytes = 100'000'000;

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::string fileName(const std::string& path) { return fs::path(path).filename().string(); }

bool isRegularFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);  // follows symlinks, as Hugging Face caches use them
}

Expected<std::string> readIndexFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return makeError(path, ": cannot open: ", std::system_category().message(errno));
  std::string text;
  Error error = Error::success();
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = makeError(path, ": not a regular file");
  } else if (static_cast<uint64_t>(st.st_size) > kMaxIndexBytes) {
    error = makeError(path, ": index of ", st.st_size, " bytes is over the ", kMaxIndexBytes,
                      "-byte limit");
  } else {
    text.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::read(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) error = makeError(path, ": cannot read: ", std::system_category().message(errno));
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    text.resize(done);
  }
  ::close(fd);
  if (error) return error;
  return text;
}

std::string describeIndexDuplicate(const std::vector<std::string>& parents,
                                   const std::string& key) {
  if (parents.size() == 1 && parents[0] == "weight_map")
    return "tensor " + quoteName(key) + " is listed twice in \"weight_map\"";
  if (parents.empty()) return "duplicate key " + quoteName(key);
  return "duplicate key " + quoteName(key) + " in " + quoteName(parents[0]);
}

// weight_map as tensor -> shard name, with every shard name checked before any file is opened.
Expected<std::map<std::string, std::string>> readWeightMap(const std::string& indexPath) {
  Expected<std::string> text = readIndexFile(indexPath);
  if (!text) return text.takeError();
  Expected<json> root = parseStrictJson(*text, "index", describeIndexDuplicate);
  if (!root) return root.takeError().withContext(indexPath + ": ");
  if (!root->is_object())
    return makeError(indexPath, ": index must be a JSON object, not ", describeJsonKind(*root));
  auto weightMap = root->find("weight_map");
  if (weightMap == root->end()) return makeError(indexPath, ": missing \"weight_map\"");
  if (!weightMap->is_object())
    return makeError(indexPath, ": \"weight_map\" must be an object mapping tensor names to ",
                     "shard file names, not ", describeJsonKind(*weightMap));
  if (weightMap->empty()) return makeError(indexPath, ": \"weight_map\" lists no tensors");
  std::map<std::string, std::string> result;
  for (const auto& [tensor, shard] : weightMap->items()) {
    if (!shard.is_string())
      return makeError(indexPath, ": \"weight_map\" maps tensor ", quoteName(tensor), " to ",
                       describeJsonKind(shard), ", not a shard file name");
    const auto& name = shard.get_ref<const std::string&>();
    if (!isPlainShardFileName(name))
      return makeError(indexPath, ": tensor ", quoteName(tensor), " maps to shard ",
                       quoteName(name),
                       ", which is not a plain file name inside the checkpoint directory");
    result.emplace(tensor, name);
  }
  return result;
}

// Where the weights of `pathOrDir` are: exactly one of `single` and `index` is set.
struct Location {
  std::string directory;
  std::string single;
  std::string index;
};

Expected<Location> locate(const std::string& pathOrDir) {
  std::error_code ec;
  fs::file_status status = fs::status(pathOrDir, ec);
  if (status.type() == fs::file_type::not_found)
    return makeError(pathOrDir, ": no such checkpoint file or directory");
  if (ec) return makeError(pathOrDir, ": cannot access: ", ec.message());

  Location at;
  if (fs::is_regular_file(status)) {
    std::string parent = fs::path(pathOrDir).parent_path().string();
    at.directory = parent.empty() ? "." : parent;
    if (pathOrDir.ends_with(".json"))
      at.index = pathOrDir;
    else
      at.single = pathOrDir;
    return at;
  }
  if (!fs::is_directory(status)) return makeError(pathOrDir, ": not a file or directory");
  at.directory = pathOrDir;
  if (isRegularFile(join(pathOrDir, kSingleFileName))) {
    at.single = join(pathOrDir, kSingleFileName);
    return at;
  }
  if (isRegularFile(join(pathOrDir, kSafetensorsIndexName))) {
    at.index = join(pathOrDir, kSafetensorsIndexName);
    return at;
  }
  std::set<std::string> found;
  for (const fs::directory_entry& e : fs::directory_iterator(pathOrDir, ec))
    if (e.path().extension() == ".safetensors" && isRegularFile(e.path().string()))
      found.insert(e.path().filename().string());
  if (ec) return makeError(pathOrDir, ": cannot list the directory: ", ec.message());
  if (found.empty())
    return makeError(pathOrDir, ": no ", kSingleFileName, " or ", kSafetensorsIndexName,
                     " in the directory");
  if (found.size() > 1)
    return makeError(pathOrDir, ": ", found.size(), " .safetensors files (", *found.begin(),
                     ", ...) but no ", kSafetensorsIndexName, " to say which tensor is where");
  at.single = join(pathOrDir, *found.begin());
  return at;
}

}  // namespace

bool isPlainShardFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == name.npos &&
         name.find('\0') == name.npos;
}

Error Checkpoint::indexTensors(const std::string& source) {
  for (size_t i = 0; i < files_.size(); ++i) {
    for (const TensorInfo& t : files_[i].tensors()) {
      auto [it, inserted] = entries_.try_emplace(t.name, Entry{i, &t});
      if (!inserted)
        return makeError(source, ": tensor ", quoteName(t.name), " is in both shard ",
                         quoteName(fileName(files_[it->second.file].path())), " and shard ",
                         quoteName(fileName(files_[i].path())));
    }
  }
  return Error::success();
}

Expected<Checkpoint> Checkpoint::open(const std::string& pathOrDir) {
  Expected<Location> at = locate(pathOrDir);
  if (!at) return at.takeError();
  const std::string& single = at->single;
  const std::string& index = at->index;
  Checkpoint checkpoint;
  checkpoint.directory_ = at->directory;

  if (!single.empty()) {
    Expected<SafetensorsFile> file = SafetensorsFile::open(single);
    if (!file) return file.takeError();
    checkpoint.files_.push_back(std::move(*file));
    if (Error e = checkpoint.indexTensors(single)) return e;
    return checkpoint;
  }

  Expected<std::map<std::string, std::string>> weightMap = readWeightMap(index);
  if (!weightMap) return weightMap.takeError();
  std::map<std::string, std::string> firstTensorOf;  // shard -> a tensor naming it, for messages
  for (const auto& [tensor, shard] : *weightMap) firstTensorOf.try_emplace(shard, tensor);
  for (const auto& [shard, tensor] : firstTensorOf) {
    std::string path = join(checkpoint.directory_, shard);
    std::error_code ec;
    if (!fs::exists(path, ec))
      return makeError(index, ": shard ", quoteName(shard), " (holding tensor ", quoteName(tensor),
                       ") does not exist in ", checkpoint.directory_);
    Expected<SafetensorsFile> file = SafetensorsFile::open(path);
    if (!file) return file.takeError().withContext(index + ": shard " + quoteName(shard) + ": ");
    checkpoint.files_.push_back(std::move(*file));
  }
  if (Error e = checkpoint.indexTensors(index)) return e;

  for (const auto& [tensor, shard] : *weightMap) {
    const Entry* entry = checkpoint.find(tensor);
    if (!entry)
      return makeError(index, ": tensor ", quoteName(tensor), " is mapped to shard ",
                       quoteName(shard), ", which does not hold it");
    std::string actual = fileName(checkpoint.files_[entry->file].path());
    if (actual != shard)
      return makeError(index, ": tensor ", quoteName(tensor), " is mapped to shard ",
                       quoteName(shard), " but is in shard ", quoteName(actual));
  }
  // Each listed tensor resolved above; anything else in a shard is one the index forgot.
  for (const auto& [tensor, entry] : checkpoint.entries_)
    if (!weightMap->count(tensor))
      return makeError(index, ": shard ", quoteName(fileName(checkpoint.files_[entry.file].path())),
                       " holds tensor ", quoteName(tensor), ", which \"weight_map\" does not list");
  return checkpoint;
}

const Checkpoint::Entry* Checkpoint::find(std::string_view tensorName) const {
  auto it = entries_.find(tensorName);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::tensorNames() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

}  // namespace tpc
