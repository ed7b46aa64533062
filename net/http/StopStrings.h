// Stop strings over streamed text. A stop string may span several tokens, so text that could
// still be the start of one is held back until the next piece decides it; the text returned
// never includes the stop string, as OpenAI's API has it.
#pragma once

#include <string>
#include <vector>

namespace tpc::http {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds a piece of (whole-character) text and returns what can be sent now. Once a stop
  // string is matched, stopped() is true and the text after it is dropped.
  std::string push(const std::string& piece);
  // At the end of generation: whatever was held back.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace tpc::http
