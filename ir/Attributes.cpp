#include "ir/Attributes.h"

#include <charconv>
#include <cmath>

namespace tpc {

const AttrValue* Attributes::find(const std::string& key) const {
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : &it->second;
}

int64_t Attributes::getInt(const std::string& key, int64_t fallback) const {
  const AttrValue* v = find(key);
  if (v && std::holds_alternative<int64_t>(*v)) return std::get<int64_t>(*v);
  return fallback;
}

double Attributes::getDouble(const std::string& key, double fallback) const {
  const AttrValue* v = find(key);
  if (v && std::holds_alternative<double>(*v)) return std::get<double>(*v);
  if (v && std::holds_alternative<int64_t>(*v)) return static_cast<double>(std::get<int64_t>(*v));
  return fallback;
}

std::string Attributes::getString(const std::string& key, const std::string& fallback) const {
  const AttrValue* v = find(key);
  if (v && std::holds_alternative<std::string>(*v)) return std::get<std::string>(*v);
  return fallback;
}

std::vector<int64_t> Attributes::getInts(const std::string& key) const {
  const AttrValue* v = find(key);
  if (v && std::holds_alternative<std::vector<int64_t>>(*v))
    return std::get<std::vector<int64_t>>(*v);
  return {};
}

std::string formatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Whole numbers (rope_theta = 500000.0) read better without an exponent.
  if (v == std::trunc(v) && std::fabs(v) < 1e15)
    return std::to_string(static_cast<int64_t>(v)) + ".0";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, end);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

namespace {
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::string formatAttrValue(const AttrValue& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) return formatDouble(*d);
  if (auto* s = std::get_if<std::string>(&v)) return quote(*s);
  const auto& list = std::get<std::vector<int64_t>>(v);
  std::string out = "[";
  for (size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + std::to_string(list[i]);
  return out + "]";
}

}  // namespace tpc
