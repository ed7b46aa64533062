#include "net/http/StopStrings.h"

#include <algorithm>

namespace tpc::http {

std::string StopMatcher::push(const std::string& piece) {
  if (stopped_) return {};
  if (stops_.empty()) return piece;
  held_ += piece;
  // The earliest match wins: text before it is the answer.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string. It starts where a
  // stop string starts, so at a character boundary: the text sent stays whole UTF-8.
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::finish() {
  std::string out;
  out.swap(held_);
  return stopped_ ? std::string() : out;
}

}  // namespace tpc::http
