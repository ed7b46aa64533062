// Flags the kernel benchmarks share: --calls and --replays (GraphTimer's timing), and lists of
// counts such as --tokens 1,8,64.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace tpc::bench {

struct TimingFlags {
  int calls = 40, replays = 10;

  // Takes --calls N or --replays N at argv[i], moving i onto N; false for anything else.
  bool take(int argc, char** argv, int& i) {
    const std::string arg = argv[i];
    if ((arg != "--calls" && arg != "--replays") || i + 1 >= argc) return false;
    (arg == "--calls" ? calls : replays) = std::atoi(argv[++i]);
    return true;
  }
  bool valid() const { return calls > 0 && replays > 0; }
  // valid(), saying on stderr what is wrong when it is not.
  bool validOrSay() const {
    if (!valid()) std::fprintf(stderr, "error: --calls and --replays need positive numbers\n");
    return valid();
  }
};

// "1,8,64" as counts from `least` to `most`; empty when any item is not such a number.
inline std::vector<int64_t> parseCounts(const std::string& text, int64_t least, int64_t most) {
  std::vector<int64_t> counts;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    char* end = nullptr;
    const long long value = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value < least || value > most) return {};
    counts.push_back(value);
  }
  return counts;
}

}  // namespace tpc::bench
