// Text to ids: added tokens first, then per section normalize, pre-tokenize and BPE, the order
// and the details transformers.js uses.
#include <algorithm>
#include <queue>

#include "frontends/StrictJson.h"
#include "frontends/tokenizer/TokenizerImpl.h"

namespace tpc {
namespace {

using tok::Normalizer;
using tok::PreTokenizer;
using tok::replaceAll;

constexpr const char* kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCachedWords = 1 << 16;

Expected<std::string> replaceRegex(std::string_view text, const tok::Regex& regex,
                                   std::string_view to) {
  auto matches = regex.findAll(text);
  if (!matches) return matches.takeError();
  std::string out;
  size_t at = 0;
  for (auto [begin, end] : *matches) {
    out.append(text.substr(at, begin - at));
    out.append(to);
    at = end;
  }
  out.append(text.substr(at));
  return out;
}

Expected<std::string> normalize(const std::vector<Normalizer>& steps, std::string text) {
  for (const Normalizer& n : steps) {
    switch (n.kind) {
      case Normalizer::Kind::Unicode: {
        Expected<std::string> out = tok::normalizeUnicode(text, n.form);
        if (!out) return out.takeError();
        text = std::move(*out);
        break;
      }
      case Normalizer::Kind::Prepend:
        text.insert(0, n.text);
        break;
      case Normalizer::Kind::Replace: {
        if (!n.pattern) {
          text = replaceAll(text, n.text, n.content);
          break;
        }
        Expected<std::string> out = replaceRegex(text, *n.pattern, n.content);
        if (!out) return out.takeError();
        text = std::move(*out);
        break;
      }
      case Normalizer::Kind::Lowercase: {
        Expected<std::string> out = tok::lowercaseUnicode(text);
        if (!out) return out.takeError();
        text = std::move(*out);
        break;
      }
      case Normalizer::Kind::Strip:
        text = tok::trimJsWhitespace(text, n.left, n.right);
        break;
    }
  }
  return text;
}

Error splitOne(const PreTokenizer& p, const std::string& piece,
               const std::array<std::string, 256>& byteToChar, size_t sectionIndex,
               std::vector<std::string>& out) {
  switch (p.kind) {
    case PreTokenizer::Kind::Split:
    case PreTokenizer::Kind::Digits: {
      auto matches = p.pattern->findAll(piece);
      if (!matches) return matches.takeError();
      if (p.behavior == PreTokenizer::Behavior::Invert) {
        for (auto [b, e] : *matches) out.push_back(piece.substr(b, e - b));
        return Error::success();
      }
      size_t prev = 0;
      for (auto [b, e] : *matches) {
        if (prev < b) out.push_back(piece.substr(prev, b - prev));
        if (e > b && p.behavior == PreTokenizer::Behavior::Isolated)
          out.push_back(piece.substr(b, e - b));
        prev = e;
      }
      if (prev < piece.size()) out.push_back(piece.substr(prev));
      return Error::success();
    }
    case PreTokenizer::Kind::ByteLevel: {
      std::string text = piece;
      if (p.addPrefixSpace && !text.starts_with(' ')) text.insert(text.begin(), ' ');
      auto map = [&](std::string_view part) {
        std::string mapped;
        mapped.reserve(part.size() * 2);
        for (char c : part) mapped += byteToChar[static_cast<unsigned char>(c)];
        out.push_back(std::move(mapped));
      };
      if (!p.pattern) {
        map(text);
        return Error::success();
      }
      auto matches = p.pattern->findAll(text);
      if (!matches) return matches.takeError();
      for (auto [b, e] : *matches) map(std::string_view(text).substr(b, e - b));
      return Error::success();
    }
    case PreTokenizer::Kind::Metaspace: {
      std::string text = replaceAll(piece, " ", p.replacement);
      bool prepend = p.prepend == PreTokenizer::Prepend::Always ||
                     (p.prepend == PreTokenizer::Prepend::First && sectionIndex == 0);
      if (p.addPrefixSpace && prepend && !text.starts_with(p.replacement))
        text.insert(0, p.replacement);
      out.push_back(std::move(text));
      return Error::success();
    }
  }
  return Error::success();
}

}  // namespace

Error Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) {
  struct Symbol {
    int32_t id;
    uint32_t begin, end;
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < word.size();) {
    size_t begin = i;
    auto lead = static_cast<unsigned char>(word[i]);
    int32_t id;
    if (lead < 0x80) {
      id = asciiIds[lead];
      ++i;
    } else {
      i += std::min(tok::utf8Length(lead), word.size() - i);
      auto it = vocab.find(word.substr(begin, i - begin));
      id = it == vocab.end() ? -1 : it->second;
    }
    auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {id, static_cast<uint32_t>(begin), static_cast<uint32_t>(i), index - 1, index + 1});
  }
  symbols.back().next = -1;
  // Lowest rank first, leftmost among equals: the order of every BPE implementation.
  struct Candidate {
    int32_t rank, left, leftId, rightId, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = symbols[static_cast<size_t>(left)].next;
    if (right < 0) return;
    int32_t a = symbols[static_cast<size_t>(left)].id, b = symbols[static_cast<size_t>(right)].id;
    if (a < 0 || b < 0) return;
    if (const tok::Merge* m = merges.find(a, b)) queue.push({m->rank, left, a, b, m->merged});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    if (left.id != c.leftId || left.end == 0 || left.next < 0) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    if (right.id != c.rightId) continue;
    left.id = c.merged;
    left.end = right.end;
    left.next = right.next;
    right.end = 0;  // dead
    right.id = -2;
    if (left.next >= 0) symbols[static_cast<size_t>(left.next)].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& s = symbols[static_cast<size_t>(i)];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    std::string_view piece = word.substr(s.begin, s.end - s.begin);
    bool allBytes = byteFallback;
    for (char ch : piece) allBytes = allBytes && byteTokenIds[static_cast<unsigned char>(ch)] >= 0;
    if (allBytes) {
      for (char ch : piece) out.push_back(byteTokenIds[static_cast<unsigned char>(ch)]);
    } else if (unkId) {
      out.push_back(*unkId);
    } else {
      return makeError(name, ": ", quoteName(tok::repairUtf8(piece)),
                       " is not in the vocab and the tokenizer has no unk_token");
    }
  }
  return Error::success();
}

Error Tokenizer::Impl::encodeWord(std::string_view word, std::vector<int32_t>& out) {
  if (word.empty()) return Error::success();
  if (ignoreMerges) {
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return Error::success();
    }
  }
  bool cacheable = word.size() < kMaxCachedWordBytes;
  if (cacheable) {
    auto hit = wordCache.find(word);
    if (hit != wordCache.end()) {
      out.insert(out.end(), hit->second.begin(), hit->second.end());
      return Error::success();
    }
  }
  size_t first = out.size();
  if (Error e = bpe(word, out)) return e;
  if (cacheable) {
    if (wordCache.size() >= kMaxCachedWords) wordCache.clear();
    wordCache.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
  return Error::success();
}

Error Tokenizer::Impl::encodeSection(std::string_view text, size_t sectionIndex,
                                     std::vector<int32_t>& out) {
  Expected<std::string> normalized = normalize(normalizers, std::string(text));
  if (!normalized) return normalized.takeError();
  if (normalized->empty()) return Error::success();
  std::vector<std::string> pieces{std::move(*normalized)}, next;
  for (const PreTokenizer& p : preTokenizers) {
    next.clear();
    for (const std::string& piece : pieces)
      if (Error e = splitOne(p, piece, byteToChar, sectionIndex, next))
        return std::move(e).withContext(name + ": pre_tokenizer: ");
    std::swap(pieces, next);
  }
  size_t first = out.size();
  for (const std::string& piece : pieces)
    if (Error e = encodeWord(piece, out)) return e;
  if (fuseUnk && unkId) {
    auto end = std::unique(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                           [&](int32_t a, int32_t b) { return a == *unkId && b == *unkId; });
    out.erase(end, out.end());
  }
  return Error::success();
}

Expected<std::vector<int32_t>> Tokenizer::encode(std::string_view input, bool addSpecialTokens) {
  Impl& t = *impl_;
  if (!tok::isValidUtf8(input)) return makeError("the text to encode is not valid UTF-8");
  std::string adjusted;
  if (t.llamaNonLegacy && !input.empty()) {
    adjusted = kMetaspace + replaceAll(input, kMetaspace, " ");
    input = adjusted;
  }
  // Sections: leftmost-longest matches of the added tokens, and the text between them.
  struct Section {
    std::string text;
    int32_t addedIndex = -1;
  };
  std::vector<Section> sections;
  size_t start = 0;
  for (size_t i = 0; i < input.size();) {
    int32_t match = -1;
    for (size_t a : t.addedByFirstByte[static_cast<unsigned char>(input[i])]) {
      if (input.compare(i, t.added[a].content.size(), t.added[a].content) == 0) {
        match = static_cast<int32_t>(a);
        break;
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    if (i > start) sections.push_back({std::string(input.substr(start, i - start))});
    sections.push_back({"", match});
    i += t.added[static_cast<size_t>(match)].content.size();
    start = i;
  }
  if (start < input.size()) sections.push_back({std::string(input.substr(start))});
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].addedIndex < 0) continue;
    const AddedToken& a = t.added[static_cast<size_t>(sections[i].addedIndex)];
    if (a.lstrip && i > 0 && sections[i - 1].addedIndex < 0)
      sections[i - 1].text = tok::trimJsWhitespace(sections[i - 1].text, false, true);
    if (a.rstrip && i + 1 < sections.size() && sections[i + 1].addedIndex < 0)
      sections[i + 1].text = tok::trimJsWhitespace(sections[i + 1].text, true, false);
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].addedIndex >= 0) {
      ids.push_back(t.added[static_cast<size_t>(sections[i].addedIndex)].id);
    } else if (!sections[i].text.empty()) {
      if (Error e = t.encodeSection(sections[i].text, i, ids)) return e;
    }
  }
  if (t.llamaNonLegacy && ids.size() > 1) {
    auto space = t.vocab.find(std::string_view(kMetaspace));
    if (space != t.vocab.end() && ids[0] == space->second && isSpecial(ids[1]))
      ids.erase(ids.begin());
  }
  if (addSpecialTokens && !t.postTemplate.empty()) {
    std::vector<int32_t> framed;
    for (int32_t piece : t.postTemplate) {
      if (piece < 0)
        framed.insert(framed.end(), ids.begin(), ids.end());
      else
        framed.push_back(piece);
    }
    ids = std::move(framed);
  }
  return ids;
}

}  // namespace tpc
