#include "tools/common/Args.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace tpc::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void ArgParser::flag(const std::string& name, bool* out, const std::string& help) {
  specs_.push_back({Kind::Flag, name, "", help, out, {}});
}
void ArgParser::option(const std::string& name, std::string* out, const std::string& metavar,
                       const std::string& help) {
  specs_.push_back({Kind::String, name, metavar, help, out, {}});
}
void ArgParser::option(const std::string& name, int64_t* out, const std::string& metavar,
                       const std::string& help) {
  specs_.push_back({Kind::Int, name, metavar, help, out, {}});
}
void ArgParser::option(const std::string& name, double* out, const std::string& metavar,
                       const std::string& help) {
  specs_.push_back({Kind::Double, name, metavar, help, out, {}});
}
void ArgParser::choice(const std::string& name, std::string* out, std::vector<std::string> choices,
                       const std::string& help) {
  std::string metavar;
  for (const std::string& c : choices) metavar += (metavar.empty() ? "" : "|") + c;
  specs_.push_back({Kind::Choice, name, metavar, help, out, std::move(choices)});
}
void ArgParser::positional(const std::string& name, std::string* out, const std::string& help,
                           bool required) {
  specs_.push_back({Kind::Positional, name, name, help, out, {}, required});
}

ArgParser::Spec* ArgParser::find(const std::string& name) {
  for (Spec& s : specs_)
    if (s.kind != Kind::Positional && s.name == name) return &s;
  return nullptr;
}

bool ArgParser::seen(const std::string& name) const {
  for (const Spec& s : specs_)
    if (s.name == name) return s.seen;
  return false;
}

Error ArgParser::assign(Spec& spec, const std::string& value) {
  spec.seen = true;
  switch (spec.kind) {
    case Kind::String:
    case Kind::Positional:
      *static_cast<std::string*>(spec.out) = value;
      return Error::success();
    case Kind::Int: {
      int64_t v;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size())
        return makeError(spec.name, " expects a whole number, got '", value, "'");
      *static_cast<int64_t*>(spec.out) = v;
      return Error::success();
    }
    case Kind::Double: {
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0')
        return makeError(spec.name, " expects a number, got '", value, "'");
      *static_cast<double*>(spec.out) = v;
      return Error::success();
    }
    case Kind::Choice:
      for (const std::string& c : spec.choices)
        if (c == value) {
          *static_cast<std::string*>(spec.out) = value;
          return Error::success();
        }
      return makeError(spec.name, " must be one of ", spec.metavar, ", not '", value, "'");
    case Kind::Flag:
      break;
  }
  return Error::success();
}

Error ArgParser::parse(int argc, char** argv, int first) {
  size_t nextPositional = 0;
  auto positionals = [&] {
    std::vector<Spec*> out;
    for (Spec& s : specs_)
      if (s.kind == Kind::Positional) out.push_back(&s);
    return out;
  }();
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      return Error::success();
    }
    if (arg.size() > 1 && arg[0] == '-' &&
        !(arg.size() > 1 && std::isdigit(static_cast<unsigned char>(arg[1])))) {
      std::string name = arg, value;
      bool hasValue = false;
      if (size_t eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        hasValue = true;
      }
      Spec* spec = find(name);
      if (!spec)
        return makeError("unknown flag ", name, " for ", command_, " (see ", command_, " --help)");
      if (spec->kind == Kind::Flag) {
        if (hasValue) return makeError(name, " takes no value");
        *static_cast<bool*>(spec->out) = true;
        spec->seen = true;
        continue;
      }
      if (!hasValue) {
        if (i + 1 >= argc) return makeError(name, " needs a value (", spec->metavar, ")");
        value = argv[++i];
      }
      if (Error e = assign(*spec, value)) return e;
      continue;
    }
    if (nextPositional >= positionals.size())
      return makeError("unexpected argument '", arg, "' for ", command_, " (see ", command_,
                       " --help)");
    if (Error e = assign(*positionals[nextPositional++], arg)) return e;
  }
  for (Spec* p : positionals)
    if (p->required && !p->seen)
      return makeError(command_, " needs ", p->name, " (see ", command_, " --help)");
  return Error::success();
}

std::string ArgParser::help() const {
  std::ostringstream os;
  os << "usage: " << command_;
  for (const Spec& s : specs_)
    if (s.kind == Kind::Positional)
      os << (s.required ? " " : " [") << s.name << (s.required ? "" : "]");
  os << " [options]\n\n" << summary_ << "\n";
  bool anyPositional = false;
  for (const Spec& s : specs_) anyPositional |= s.kind == Kind::Positional;
  if (anyPositional) {
    os << "\narguments:\n";
    for (const Spec& s : specs_)
      if (s.kind == Kind::Positional)
        os << "  " << s.name << std::string(s.name.size() < 24 ? 24 - s.name.size() : 1, ' ')
           << s.help << "\n";
  }
  os << "\noptions:\n";
  for (const Spec& s : specs_) {
    if (s.kind == Kind::Positional) continue;
    std::string left = s.name + (s.metavar.empty() ? "" : " " + s.metavar);
    os << "  " << left << std::string(left.size() < 24 ? 24 - left.size() : 1, ' ') << s.help
       << "\n";
  }
  os << "  -h, --help              show this help\n";
  if (!epilog_.empty()) os << "\n" << epilog_ << "\n";
  return os.str();
}

Expected<std::vector<int64_t>> parseIntList(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int64_t v;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size())
      return makeError(flag, " expects comma-separated whole numbers, got '", item, "'");
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Expected<uint64_t> parseByteSize(const std::string& text, const std::string& flag) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !(value >= 0) || !std::isfinite(value))
    return makeError(flag, ": '", text, "' is not a size in bytes (e.g. 256MiB)");
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kib" || unit == "k")
    scale = 1024.0;
  else if (unit == "mib" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "kb")
    scale = 1e3;
  else if (unit == "mb")
    scale = 1e6;
  else if (unit == "gb")
    scale = 1e9;
  else
    return makeError(flag, ": unknown unit '", std::string(end),
                     "' (B, KiB, MiB, GiB, KB, MB, GB)");
  const double bytes = value * scale;
  if (bytes < 1 || bytes > 1e18) return makeError(flag, ": '", text, "' is out of range");
  return static_cast<uint64_t>(bytes);
}

}  // namespace tpc::cli
