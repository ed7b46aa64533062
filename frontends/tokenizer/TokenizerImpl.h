// The parts of a loaded tokenizer.json, shared by the loader, the encoder and the decoder.
// Internal to tpc_frontends.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontends/Tokenizer.h"
#include "frontends/tokenizer/TokenizerText.h"

namespace tpc {
namespace tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct Normalizer {
  enum class Kind { Unicode, Prepend, Replace, Lowercase, Strip };
  Kind kind = Kind::Unicode;
  NormalForm form = NormalForm::NFC;
  std::string text;                  // Prepend: the prefix; Replace: the literal pattern
  std::optional<Regex> pattern;      // Replace with a Regex pattern
  std::string content;               // Replace: the replacement
  bool left = false, right = false;  // Strip
};

struct PreTokenizer {
  enum class Kind { Split, ByteLevel, Metaspace, Digits };
  Kind kind = Kind::Split;
  std::optional<Regex> pattern;  // Split, Digits, ByteLevel with use_regex
  enum class Behavior { Isolated, Removed, Invert } behavior = Behavior::Isolated;
  bool addPrefixSpace = false;
  std::string replacement;  // Metaspace
  enum class Prepend { Always, First, Never } prepend = Prepend::Always;
};

struct Decoder {
  enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace };
  Kind kind = Kind::ByteLevel;
  std::string pattern, content;  // Replace (literal); Strip: content; Metaspace: replacement
  int64_t start = 0, stop = 0;   // Strip
  bool addPrefixSpace = false;   // Metaspace
};

// One element of TemplateProcessing's "single": a token, or the encoded text (-1).
using TemplatePiece = int32_t;

struct Merge {
  int32_t rank;
  int32_t merged;
};

// (left id, right id) -> merge, open addressing: the one lookup in BPE's inner loop, where a
// node-based map costs a cache miss per probe.
class MergeTable {
 public:
  void reserve(size_t merges) {
    size_t capacity = 16;
    while (capacity < merges * 2) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
  }
  // A later merge of the same pair replaces the earlier one, as transformers.js's Map does.
  void set(int32_t left, int32_t right, Merge merge) {
    uint64_t key = keyOf(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty || slots_[i].key == key) {
        slots_[i] = {key, merge};
        return;
      }
    }
  }
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    uint64_t key = keyOf(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are below 2^30, so no key is this
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  static uint64_t keyOf(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

}  // namespace tok

struct Tokenizer::Impl {
  std::string name;
  TokenizerSettings settings;
  std::vector<tok::Normalizer> normalizers;
  std::vector<tok::PreTokenizer> preTokenizers;
  std::vector<tok::Decoder> decoders;
  bool hasDecoder = false;
  std::vector<tok::TemplatePiece> postTemplate;  // empty: nothing added
  bool llamaNonLegacy = false;

  // The BPE model. `vocab` also holds the added tokens, as transformers.js's does.
  tok::StringMap<int32_t> vocab;
  std::vector<std::string> idToToken;
  tok::MergeTable merges;
  std::array<int32_t, 128> asciiIds{};  // one-byte tokens by byte, -1 where missing
  std::optional<int32_t> unkId;
  bool byteFallback = false, fuseUnk = false, ignoreMerges = false;
  std::array<int32_t, 256> byteTokenIds{};  // <0xAB> tokens, -1 where missing

  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> addedByFirstByte;  // longest first
  std::vector<bool> specialIds;

  // Byte-level mapping (GPT-2's bytes_to_unicode) and its inverse.
  std::array<std::string, 256> byteToChar;
  std::unordered_map<uint32_t, uint8_t> charToByte;

  tok::StringMap<std::vector<int32_t>> wordCache;

  Error encodeSection(std::string_view text, size_t sectionIndex, std::vector<int32_t>& out);
  Error encodeWord(std::string_view word, std::vector<int32_t>& out);
  Error bpe(std::string_view word, std::vector<int32_t>& out);
};

namespace tok {
// GPT-2's reversible map from bytes to printable code points.
std::array<uint32_t, 256> byteLevelAlphabet();
}  // namespace tok

}  // namespace tpc
