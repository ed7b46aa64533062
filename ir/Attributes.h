// Node and graph attributes: a sorted map, so printing is deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace tpc {

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

class Attributes {
 public:
  void set(const std::string& key, AttrValue value) { map_[key] = std::move(value); }
  void setInt(const std::string& key, int64_t v) { map_[key] = v; }
  void setDouble(const std::string& key, double v) { map_[key] = v; }
  void setString(const std::string& key, std::string v) { map_[key] = std::move(v); }
  void setInts(const std::string& key, std::vector<int64_t> v) { map_[key] = std::move(v); }

  bool has(const std::string& key) const { return map_.count(key) != 0; }
  void erase(const std::string& key) { map_.erase(key); }
  const AttrValue* find(const std::string& key) const;

  // Typed reads; the *Or forms return `fallback` when the key is absent or of another type.
  int64_t getInt(const std::string& key, int64_t fallback = 0) const;
  double getDouble(const std::string& key, double fallback = 0.0) const;
  std::string getString(const std::string& key, const std::string& fallback = "") const;
  std::vector<int64_t> getInts(const std::string& key) const;

  bool empty() const { return map_.empty(); }
  const std::map<std::string, AttrValue>& entries() const { return map_; }
  bool operator==(const Attributes& o) const { return map_ == o.map_; }

 private:
  std::map<std::string, AttrValue> map_;
};

// Shortest text that parses back to the same double, always with a '.' or an exponent so it
// never reads back as an integer.
std::string formatDouble(double v);
// `name = value` text of one attribute value, as the IR printer writes it.
std::string formatAttrValue(const AttrValue& v);

}  // namespace tpc
