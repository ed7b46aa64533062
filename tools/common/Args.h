// A small command-line parser shared by tpc and tpexec: typed flags with help text, one-line
// errors that name the flag, and --help generated from the declarations.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  void flag(const std::string& name, bool* out, const std::string& help);
  void option(const std::string& name, std::string* out, const std::string& metavar,
              const std::string& help);
  void option(const std::string& name, int64_t* out, const std::string& metavar,
              const std::string& help);
  void option(const std::string& name, double* out, const std::string& metavar,
              const std::string& help);
  // An option whose value must be one of `choices`.
  void choice(const std::string& name, std::string* out, std::vector<std::string> choices,
              const std::string& help);
  void positional(const std::string& name, std::string* out, const std::string& help,
                  bool required = true);
  // Extra text after the flag list (examples).
  void epilog(std::string text) { epilog_ = std::move(text); }

  // Parses argv[first..argc). `--help` sets helpRequested() and returns success.
  Error parse(int argc, char** argv, int first = 1);
  bool helpRequested() const { return help_; }
  // Whether a flag or option appeared on the command line.
  bool seen(const std::string& name) const;
  std::string help() const;

 private:
  enum class Kind { Flag, String, Int, Double, Choice, Positional };
  struct Spec {
    Kind kind;
    std::string name, metavar, help;
    void* out;
    std::vector<std::string> choices;
    bool required = false;
    bool seen = false;
  };
  Error assign(Spec& spec, const std::string& value);
  Spec* find(const std::string& name);

  std::string command_, summary_, epilog_;
  std::vector<Spec> specs_;
  bool help_ = false;
};

// "268435456", "256MiB", "1.5GiB", "64MB": bytes (binary and decimal suffixes, any case).
Expected<uint64_t> parseByteSize(const std::string& text, const std::string& flag);

// Parses "1,2,3" into integers; errors name `flag`.
Expected<std::vector<int64_t>> parseIntList(const std::string& text, const std::string& flag);

}  // namespace tpc::cli
