#include "executor/Npy.h"

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ir/AtomicFile.h"

namespace tpc {

Error writeNpyF32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ", ";
    count *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3, 4)" but "(3,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * sizeof(float));
  return writeFileAtomically(path, bytes);
}

Expected<NpyArray> readNpyF32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string bytes = ss.str();
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    return makeError(path, ": not a .npy file");
  size_t headerLength =
      static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
  if (bytes[6] != 1 || 10 + headerLength > bytes.size())
    return makeError(path, ": unsupported .npy header");
  std::string header = bytes.substr(10, headerLength);
  if (header.find("'descr': '<f4'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos)
    return makeError(path, ": only little-endian float32 C-order arrays are supported");
  size_t open = header.find("'shape': ("), close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos)
    return makeError(path, ": .npy header has no shape");
  NpyArray out;
  std::stringstream dims(header.substr(open + 10, close - open - 10));
  std::string item;
  int64_t count = 1;
  while (std::getline(dims, item, ',')) {
    size_t first = item.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    int64_t d = -1;
    auto [end, ec] = std::from_chars(item.data() + first, item.data() + item.size(), d);
    if (ec != std::errc() || d < 0) return makeError(path, ": bad dimension in the .npy shape");
    out.shape.push_back(d);
    count *= d;
  }
  size_t dataBytes = bytes.size() - 10 - headerLength;
  if (dataBytes != static_cast<size_t>(count) * sizeof(float))
    return makeError(path, ": data size does not match the shape");
  out.data.resize(static_cast<size_t>(count));
  std::memcpy(out.data.data(), bytes.data() + 10 + headerLength, dataBytes);
  return out;
}

}  // namespace tpc
