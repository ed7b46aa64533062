// Reading tokenizer.json and tokenizer_config.json into a Tokenizer. Every shape this does not
// understand is a one-line error naming the file and the part of it.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "frontends/StrictJson.h"
#include "frontends/tokenizer/TokenizerImpl.h"

namespace tpc {
namespace {

using nlohmann::json;
using tok::Decoder;
using tok::Normalizer;
using tok::PreTokenizer;

Expected<std::string> readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(path, ": cannot open");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return makeError(path, ": read failed");
  return bytes.str();
}

// `root[key]`, or null, without copying (a copy of a deeply nested value recurses).
const json& memberOrNull(const json& root, const char* key) {
  static const json null;
  auto it = root.find(key);
  return it == root.end() ? null : *it;
}

std::string typeOf(const json& node) {
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) return "";
  return node["type"].get<std::string>();
}

bool boolOr(const json& node, const char* key, bool fallback) {
  auto it = node.find(key);
  return it != node.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

std::string stringOr(const json& node, const char* key, const std::string& fallback = "") {
  auto it = node.find(key);
  return it != node.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// A "pattern": {"String": s} or {"Regex": r}.
struct Pattern {
  std::string literal;
  std::optional<tok::Regex> regex;
};
Expected<Pattern> readPattern(const json& node, const std::string& where) {
  auto it = node.find("pattern");
  if (it == node.end() || !it->is_object())
    return makeError(where, ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
  Pattern p;
  if (it->contains("String") && (*it)["String"].is_string()) {
    p.literal = (*it)["String"].get<std::string>();
  } else if (it->contains("Regex") && (*it)["Regex"].is_string()) {
    Expected<tok::Regex> re = tok::Regex::fromTokenizerPattern((*it)["Regex"].get<std::string>());
    if (!re) return std::move(re.takeError()).withContext(where + ": ");
    p.regex = std::move(*re);
  } else {
    return makeError(where, ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
  }
  return p;
}

// Sequences nest; real files nest them once or twice, and a hostile one must not exhaust the
// stack through the recursion below.
constexpr int kMaxSequenceDepth = 16;

Error readNormalizer(const json& node, const std::string& where, std::vector<Normalizer>& out,
                     int depth = 0) {
  if (node.is_null()) return Error::success();
  std::string type = typeOf(node);
  if (depth > kMaxSequenceDepth) return makeError(where, ": Sequences nested too deeply");
  if (type == "Sequence") {
    if (!node.contains("normalizers") || !node["normalizers"].is_array())
      return makeError(where, ": Sequence needs a \"normalizers\" array");
    for (const json& child : node["normalizers"])
      if (Error e = readNormalizer(child, where, out, depth + 1)) return e;
    return Error::success();
  }
  Normalizer n;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    n.form = type == "NFC"    ? tok::NormalForm::NFC
             : type == "NFD"  ? tok::NormalForm::NFD
             : type == "NFKC" ? tok::NormalForm::NFKC
                              : tok::NormalForm::NFKD;
  } else if (type == "Prepend") {
    n.kind = Normalizer::Kind::Prepend;
    n.text = stringOr(node, "prepend");
  } else if (type == "Replace") {
    n.kind = Normalizer::Kind::Replace;
    Expected<Pattern> p = readPattern(node, where + " Replace");
    if (!p) return p.takeError();
    n.text = p->literal;
    n.pattern = std::move(p->regex);
    n.content = stringOr(node, "content");
  } else if (type == "Lowercase") {
    n.kind = Normalizer::Kind::Lowercase;
  } else if (type == "Strip") {
    n.kind = Normalizer::Kind::Strip;
    n.left = boolOr(node, "strip_left", false);
    n.right = boolOr(node, "strip_right", false);
  } else {
    return makeError(
        where, ": unknown type ", quoteName(type),
        " (known: Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Lowercase, Strip)");
  }
  out.push_back(std::move(n));
  return Error::success();
}

constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

Error readPreTokenizer(const json& node, const std::string& where, std::vector<PreTokenizer>& out,
                       int depth = 0) {
  if (node.is_null()) return Error::success();
  std::string type = typeOf(node);
  if (depth > kMaxSequenceDepth) return makeError(where, ": Sequences nested too deeply");
  if (type == "Sequence") {
    if (!node.contains("pretokenizers") || !node["pretokenizers"].is_array())
      return makeError(where, ": Sequence needs a \"pretokenizers\" array");
    for (const json& child : node["pretokenizers"])
      if (Error e = readPreTokenizer(child, where, out, depth + 1)) return e;
    return Error::success();
  }
  PreTokenizer p;
  if (type == "Split") {
    Expected<Pattern> pattern = readPattern(node, where + " Split");
    if (!pattern) return pattern.takeError();
    if (pattern->regex) {
      p.pattern = std::move(pattern->regex);
    } else {
      Expected<tok::Regex> re = tok::Regex::literal(pattern->literal);
      if (!re) return re.takeError();
      p.pattern = std::move(*re);
    }
    // transformers.js knows "Removed" and invert; every other behaviour splits like Isolated.
    if (boolOr(node, "invert", false))
      p.behavior = PreTokenizer::Behavior::Invert;
    else if (stringOr(node, "behavior") == "Removed")
      p.behavior = PreTokenizer::Behavior::Removed;
  } else if (type == "ByteLevel") {
    p.kind = PreTokenizer::Kind::ByteLevel;
    p.addPrefixSpace = boolOr(node, "add_prefix_space", false);
    if (boolOr(node, "use_regex", true)) {
      Expected<tok::Regex> re = tok::Regex::fromTokenizerPattern(kGpt2Pattern);
      if (!re) return re.takeError();
      p.pattern = std::move(*re);
    }
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::Kind::Metaspace;
    p.replacement = stringOr(node, "replacement", "\xE2\x96\x81");
    p.addPrefixSpace = boolOr(node, "add_prefix_space", false);
    std::string scheme = stringOr(node, "prepend_scheme", "always");
    p.prepend = scheme == "first"   ? PreTokenizer::Prepend::First
                : scheme == "never" ? PreTokenizer::Prepend::Never
                                    : PreTokenizer::Prepend::Always;
  } else if (type == "Digits") {
    p.kind = PreTokenizer::Kind::Digits;
    Expected<tok::Regex> re = tok::Regex::fromTokenizerPattern(
        boolOr(node, "individual_digits", false) ? "[^\\d]+|\\d" : "[^\\d]+|\\d+");
    if (!re) return re.takeError();
    p.pattern = std::move(*re);
    p.behavior = PreTokenizer::Behavior::Invert;
  } else {
    return makeError(where, ": unknown type ", quoteName(type),
                     " (known: Sequence, Split, ByteLevel, Metaspace, Digits)");
  }
  out.push_back(std::move(p));
  return Error::success();
}

Error readDecoder(const json& node, const std::string& where, std::vector<Decoder>& out,
                  int depth = 0) {
  std::string type = typeOf(node);
  if (depth > kMaxSequenceDepth) return makeError(where, ": Sequences nested too deeply");
  if (type == "Sequence") {
    if (!node.contains("decoders") || !node["decoders"].is_array())
      return makeError(where, ": Sequence needs a \"decoders\" array");
    for (const json& child : node["decoders"])
      if (Error e = readDecoder(child, where, out, depth + 1)) return e;
    return Error::success();
  }
  Decoder d;
  if (type == "ByteLevel") {
  } else if (type == "Replace") {
    d.kind = Decoder::Kind::Replace;
    Expected<Pattern> p = readPattern(node, where + " Replace");
    if (!p) return p.takeError();
    if (p->regex) return makeError(where, ": Replace with a Regex pattern is not supported");
    d.pattern = p->literal;
    d.content = stringOr(node, "content");
  } else if (type == "ByteFallback") {
    d.kind = Decoder::Kind::ByteFallback;
  } else if (type == "Fuse") {
    d.kind = Decoder::Kind::Fuse;
  } else if (type == "Strip") {
    d.kind = Decoder::Kind::Strip;
    d.content = stringOr(node, "content", " ");
    d.start = node.value("start", int64_t{0});
    d.stop = node.value("stop", int64_t{0});
  } else if (type == "Metaspace") {
    d.kind = Decoder::Kind::Metaspace;
    d.pattern = stringOr(node, "replacement", "\xE2\x96\x81");
    d.addPrefixSpace = boolOr(node, "add_prefix_space", false);
  } else {
    return makeError(
        where, ": unknown type ", quoteName(type),
        " (known: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
  }
  out.push_back(std::move(d));
  return Error::success();
}

// TemplateProcessing's "single" as ids; ByteLevel adds nothing.
Error readPostProcessor(const json& node, const std::string& where, Tokenizer::Impl& t,
                        int depth = 0) {
  if (node.is_null()) return Error::success();
  std::string type = typeOf(node);
  if (depth > kMaxSequenceDepth) return makeError(where, ": Sequences nested too deeply");
  if (type == "ByteLevel") return Error::success();
  if (type == "Sequence") {
    if (!node.contains("processors") || !node["processors"].is_array())
      return makeError(where, ": Sequence needs a \"processors\" array");
    for (const json& child : node["processors"])
      if (Error e = readPostProcessor(child, where, t, depth + 1)) return e;
    return Error::success();
  }
  if (type != "TemplateProcessing")
    return makeError(where, ": unknown type ", quoteName(type),
                     " (known: TemplateProcessing, ByteLevel, Sequence)");
  if (!node.contains("single") || !node["single"].is_array())
    return makeError(where, ": TemplateProcessing needs a \"single\" array");
  t.postTemplate.clear();
  for (const json& piece : node["single"]) {
    if (piece.contains("Sequence")) {
      t.postTemplate.push_back(-1);
      continue;
    }
    std::string token = piece.contains("SpecialToken") && piece["SpecialToken"].is_object()
                            ? stringOr(piece["SpecialToken"], "id")
                            : "";
    auto id = t.vocab.find(token);
    if (id == t.vocab.end())
      return makeError(where, ": template token ", quoteName(token), " is not in the vocab");
    t.postTemplate.push_back(id->second);
  }
  return Error::success();
}

// "a b" (the older form) or ["a", "b"].
Expected<std::pair<std::string, std::string>> mergeParts(const json& merge) {
  if (merge.is_string()) {
    const std::string& s = merge.get_ref<const std::string&>();
    size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
      return makeError(quoteName(s), " is not two tokens separated by one space");
    return std::make_pair(s.substr(0, space), s.substr(space + 1));
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string())
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  return makeError("is neither \"a b\" nor [\"a\", \"b\"]");
}

Error readModel(const json& model, const std::string& name, Tokenizer::Impl& t) {
  std::string where = name + ": model";
  if (!model.is_object()) return makeError(name, ": no \"model\" section");
  std::string type = typeOf(model);
  if (type.empty() && model.contains("merges")) type = "BPE";
  if (type != "BPE")
    return makeError(where, ": type ", quoteName(type), " is not supported (only BPE)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return makeError(where, ": \"vocab\" must be an object of token: id");
  if (!model.contains("merges") || !model["merges"].is_array())
    return makeError(where, ": \"merges\" must be an array");
  t.vocab.reserve(model["vocab"].size() + 1024);
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1LL << 30))
      return makeError(where, ": vocab id of ", quoteName(token), " is not an id");
    t.vocab[token] = id.get<int32_t>();
  }
  const json& merges = model["merges"];
  t.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    Expected<std::pair<std::string, std::string>> parts = mergeParts(merges[rank]);
    if (!parts) return makeError(where, ": merge ", rank, " ", parts.errorMessage());
    auto left = t.vocab.find(parts->first), right = t.vocab.find(parts->second);
    auto merged = t.vocab.find(parts->first + parts->second);
    if (left == t.vocab.end())
      return makeError(where, ": merge ", rank, ": ", quoteName(parts->first),
                       " is not in the vocab");
    if (right == t.vocab.end())
      return makeError(where, ": merge ", rank, ": ", quoteName(parts->second),
                       " is not in the vocab");
    if (merged == t.vocab.end())
      return makeError(where, ": merge ", rank, ": the result ",
                       quoteName(parts->first + parts->second), " is not in the vocab");
    t.merges.set(left->second, right->second, {static_cast<int32_t>(rank), merged->second});
  }
  std::string unk = stringOr(model, "unk_token");
  if (!unk.empty()) {
    auto it = t.vocab.find(unk);
    if (it == t.vocab.end())
      return makeError(where, ": unk_token ", quoteName(unk), " is not in the vocab");
    t.unkId = it->second;
  }
  t.byteFallback = boolOr(model, "byte_fallback", false);
  t.fuseUnk = boolOr(model, "fuse_unk", false);
  t.ignoreMerges = boolOr(model, "ignore_merges", false);
  if (!stringOr(model, "end_of_word_suffix").empty() ||
      !stringOr(model, "continuing_subword_suffix").empty())
    return makeError(where, ": subword suffixes are not supported");
  return Error::success();
}

Error readAddedTokens(const json& root, const std::string& name, Tokenizer::Impl& t) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return Error::success();
  if (!it->is_array()) return makeError(name, ": \"added_tokens\" must be an array");
  for (const json& entry : *it) {
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string() ||
        entry["id"].get<int64_t>() < 0 || entry["id"].get<int64_t>() >= (1LL << 30))
      return makeError(name, ": every added token needs an \"id\" and a \"content\"");
    AddedToken a;
    a.content = entry["content"].get<std::string>();
    a.id = entry["id"].get<int32_t>();
    a.special = boolOr(entry, "special", false);
    a.lstrip = boolOr(entry, "lstrip", false);
    a.rstrip = boolOr(entry, "rstrip", false);
    if (a.content.empty()) return makeError(name, ": added token ", a.id, " is empty");
    t.vocab[a.content] = a.id;
    t.added.push_back(std::move(a));
  }
  return Error::success();
}

// bos_token and friends are a string or an AddedToken object.
std::string tokenText(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return stringOr(*it, "content");
  return "";
}

Error readSettings(std::string_view configJson, const std::string& name, Tokenizer::Impl& t) {
  if (configJson.empty()) return Error::success();
  json config = json::parse(configJson, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    return makeError(name, ": tokenizer_config.json is not a JSON object");
  TokenizerSettings& s = t.settings;
  s.tokenizerClass = stringOr(config, "tokenizer_class");
  if (s.tokenizerClass.size() > 4 && s.tokenizerClass.ends_with("Fast"))
    s.tokenizerClass.resize(s.tokenizerClass.size() - 4);
  s.bosToken = tokenText(config, "bos_token");
  s.eosToken = tokenText(config, "eos_token");
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    auto it = config.find(key);
    if (it != config.end() && (it->is_string() || it->is_object()))
      s.templateTokens.emplace_back(key, tokenText(config, key));
  }
  s.legacy = boolOr(config, "legacy", true);
  auto tmpl = config.find("chat_template");
  if (tmpl != config.end() && tmpl->is_string()) {
    s.chatTemplate = tmpl->get<std::string>();
  } else if (tmpl != config.end() && tmpl->is_array()) {
    for (const json& named : *tmpl)
      if (named.is_object() && (s.chatTemplate.empty() || stringOr(named, "name") == "default"))
        s.chatTemplate = stringOr(named, "template");
  }
  const json& extras = memberOrNull(config, "additional_special_tokens");
  if (extras.is_array())
    for (const json& extra : extras)
      if (extra.is_string())
        for (AddedToken& a : t.added)
          if (a.content == extra.get<std::string>()) a.special = true;
  return Error::success();
}

Error finish(Tokenizer::Impl& t) {
  int32_t maxId = -1;
  for (const auto& [token, id] : t.vocab) maxId = std::max(maxId, id);
  t.idToToken.assign(static_cast<size_t>(maxId) + 1, std::string());
  for (const auto& [token, id] : t.vocab) t.idToToken[static_cast<size_t>(id)] = token;
  t.specialIds.assign(t.idToToken.size(), false);
  for (const AddedToken& a : t.added) {
    t.idToToken[static_cast<size_t>(a.id)] = a.content;
    if (a.special) t.specialIds[static_cast<size_t>(a.id)] = true;
    t.addedByFirstByte[static_cast<unsigned char>(a.content[0])].push_back(&a - t.added.data());
  }
  for (auto& bucket : t.addedByFirstByte)
    std::stable_sort(bucket.begin(), bucket.end(), [&](size_t a, size_t b) {
      return t.added[a].content.size() > t.added[b].content.size();
    });
  for (int b = 0; b < 128; ++b) {
    auto it = t.vocab.find(std::string(1, static_cast<char>(b)));
    t.asciiIds[static_cast<size_t>(b)] = it == t.vocab.end() ? -1 : it->second;
  }
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    std::string token = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    auto it = t.vocab.find(token);
    t.byteTokenIds[static_cast<size_t>(b)] = it == t.vocab.end() ? -1 : it->second;
  }
  std::array<uint32_t, 256> alphabet = tok::byteLevelAlphabet();
  for (int b = 0; b < 256; ++b) {
    tok::appendUtf8(t.byteToChar[static_cast<size_t>(b)], alphabet[static_cast<size_t>(b)]);
    t.charToByte[alphabet[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
  }
  // transformers.js's LlamaTokenizer with legacy false replaces the normalizer and the
  // pre-tokenizer by a Metaspace that prepends to the first section only.
  if (t.settings.tokenizerClass == "LlamaTokenizer" && !t.settings.legacy) {
    t.llamaNonLegacy = true;
    t.normalizers.clear();
    t.preTokenizers.clear();
    tok::PreTokenizer meta;
    meta.kind = tok::PreTokenizer::Kind::Metaspace;
    meta.replacement = "\xE2\x96\x81";
    meta.addPrefixSpace = true;
    meta.prepend = tok::PreTokenizer::Prepend::First;
    t.preTokenizers.push_back(std::move(meta));
  }
  return Error::success();
}

}  // namespace

namespace tok {
std::array<uint32_t, 256> byteLevelAlphabet() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = printable ? b : next++;
  }
  return map;
}
}  // namespace tok

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Expected<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.json").string();
  if (!fs::is_regular_file(file, ec))
    return makeError(file, ": no such file (a tokenizer.json or a folder holding one)");
  Expected<std::string> text = readWholeFile(file);
  if (!text) return text.takeError();
  std::string config;
  fs::path configPath = fs::path(file).parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(configPath, ec)) {
    Expected<std::string> c = readWholeFile(configPath.string());
    if (!c) return c.takeError();
    config = std::move(*c);
  }
  Expected<std::unique_ptr<Tokenizer>> tokenizer = fromJson(*text, config, file);
  if (!tokenizer) return tokenizer;
  fs::path jinjaPath = fs::path(file).parent_path() / "chat_template.jinja";
  if (fs::is_regular_file(jinjaPath, ec)) {
    Expected<std::string> t = readWholeFile(jinjaPath.string());
    if (!t) return t.takeError();
    (*tokenizer)->impl_->settings.chatTemplate = std::move(*t);
  }
  return tokenizer;
}

Expected<TokenizerSettings> Tokenizer::loadSettings(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path configPath = fs::path(dir) / "tokenizer_config.json";
  fs::path jinjaPath = fs::path(dir) / "chat_template.jinja";
  if (!fs::is_regular_file(configPath, ec) && !fs::is_regular_file(jinjaPath, ec))
    return makeError(dir, ": no tokenizer_config.json (nor chat_template.jinja) in this folder");
  Impl impl;
  if (fs::is_regular_file(configPath, ec)) {
    Expected<std::string> c = readWholeFile(configPath.string());
    if (!c) return c.takeError();
    try {
      if (Error e = readSettings(*c, configPath.string(), impl)) return e;
    } catch (const json::exception& e) {
      return makeError(configPath.string(), ": unexpected JSON shape (", e.what(), ")");
    }
  }
  if (fs::is_regular_file(jinjaPath, ec)) {
    Expected<std::string> t = readWholeFile(jinjaPath.string());
    if (!t) return t.takeError();
    impl.settings.chatTemplate = std::move(*t);
  }
  return impl.settings;
}

Expected<std::unique_ptr<Tokenizer>> Tokenizer::fromJson(std::string_view tokenizerJson,
                                                         std::string_view configJson,
                                                         const std::string& name) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  // The type checks above cover what real files get wrong; anything stranger still ends as
  // one line rather than an exception escaping the library.
  try {
    json root = json::parse(tokenizerJson, nullptr, false);
    if (root.is_discarded()) return makeError(name, ": not valid JSON");
    if (!root.is_object()) return makeError(name, ": not a JSON object");
    if (!root.contains("model")) return makeError(name, ": no \"model\" section");
    if (Error e = readModel(root["model"], name, *impl)) return e;
    if (Error e = readAddedTokens(root, name, *impl)) return e;
    if (Error e = readSettings(configJson, name, *impl)) return e;
    if (Error e = readNormalizer(memberOrNull(root, "normalizer"), name + ": normalizer",
                                 impl->normalizers))
      return e;
    if (Error e = readPreTokenizer(memberOrNull(root, "pre_tokenizer"), name + ": pre_tokenizer",
                                   impl->preTokenizers))
      return e;
    if (Error e = readPostProcessor(memberOrNull(root, "post_processor"), name + ": post_processor",
                                    *impl))
      return e;
    const json& decoder = memberOrNull(root, "decoder");
    impl->hasDecoder = !decoder.is_null();
    if (impl->hasDecoder)
      if (Error e = readDecoder(decoder, name + ": decoder", impl->decoders)) return e;
    if (Error e = finish(*impl)) return e;
  } catch (const json::exception& e) {
    return makeError(name, ": unexpected JSON shape (", e.what(), ")");
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

int64_t Tokenizer::vocabSize() const { return static_cast<int64_t>(impl_->idToToken.size()); }

std::optional<int32_t> Tokenizer::tokenId(std::string_view token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->specialIds.size() &&
         impl_->specialIds[static_cast<size_t>(id)];
}

const std::vector<AddedToken>& Tokenizer::addedTokens() const { return impl_->added; }
const TokenizerSettings& Tokenizer::settings() const { return impl_->settings; }
const std::string& Tokenizer::name() const { return impl_->name; }

}  // namespace tpc
