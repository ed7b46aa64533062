// Echoing untrusted text (a config value, a parser's excerpt) into an error message: the message
// must stay one short printable line whatever bytes the file held.
#pragma once

#include <string>
#include <string_view>

namespace tpc {

// `text` with every byte outside printable ASCII replaced by '?', cut to `maxLength` bytes
// plus "..." when longer.
inline std::string printable(std::string_view text, size_t maxLength = 40) {
  std::string out;
  for (char c : text.substr(0, maxLength)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > maxLength) out += "...";
  return out;
}

}  // namespace tpc
