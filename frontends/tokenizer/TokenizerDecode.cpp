// Ids to text: the decoder chain of tokenizer.json applied to token strings, the way
// transformers.js applies it, and the streaming form on top of it.
#include "frontends/tokenizer/TokenizerImpl.h"

namespace tpc {
namespace {

using tok::Decoder;
using tok::replaceAll;

// "<0xAB>" -> 0xAB, or -1.
int byteToken(const std::string& token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

std::vector<std::string> applyDecoder(const Tokenizer::Impl& t, const Decoder& d,
                                      std::vector<std::string> tokens,
                                      const std::vector<bool>& isAdded) {
  std::vector<std::string> out;
  switch (d.kind) {
    case Decoder::Kind::ByteLevel: {
      // Runs of ordinary tokens go back to bytes; added tokens stay as they are.
      std::string bytes;
      auto flush = [&] {
        if (!bytes.empty()) out.push_back(tok::repairUtf8(bytes));
        bytes.clear();
      };
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i < isAdded.size() && isAdded[i]) {
          flush();
          out.push_back(tokens[i]);
          continue;
        }
        for (size_t at = 0; at < tokens[i].size();) {
          uint32_t cp = tok::nextCodePoint(tokens[i], at);
          auto it = t.charToByte.find(cp);
          bytes += static_cast<char>(it == t.charToByte.end() ? 0 : it->second);
        }
      }
      flush();
      return out;
    }
    case Decoder::Kind::Replace:
      for (std::string& token : tokens) token = replaceAll(token, d.pattern, d.content);
      return tokens;
    case Decoder::Kind::ByteFallback: {
      std::string bytes;
      for (std::string& token : tokens) {
        int b = byteToken(token);
        if (b >= 0) {
          bytes += static_cast<char>(b);
          continue;
        }
        if (!bytes.empty()) out.push_back(tok::repairUtf8(bytes));
        bytes.clear();
        out.push_back(std::move(token));
      }
      if (!bytes.empty()) out.push_back(tok::repairUtf8(bytes));
      return out;
    }
    case Decoder::Kind::Fuse: {
      std::string joined;
      for (const std::string& token : tokens) joined += token;
      return {joined};
    }
    case Decoder::Kind::Strip:
      for (std::string& token : tokens) {
        size_t begin = 0, end = token.size();
        for (int64_t i = 0; i < d.start && token.compare(begin, d.content.size(), d.content) == 0;
             ++i)
          begin += d.content.size();
        for (int64_t i = 0; i < d.stop && end >= begin + d.content.size() &&
                            token.compare(end - d.content.size(), d.content.size(), d.content) == 0;
             ++i)
          end -= d.content.size();
        token = token.substr(begin, end - begin);
      }
      return tokens;
    case Decoder::Kind::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        std::string text = replaceAll(tokens[i], d.pattern, " ");
        if (d.addPrefixSpace && i == 0 && text.starts_with(' ')) text.erase(0, 1);
        out.push_back(std::move(text));
      }
      return out;
  }
  return tokens;
}

}  // namespace

Expected<std::string> Tokenizer::decode(const std::vector<int32_t>& ids,
                                        const DecodeOptions& options) const {
  const Impl& t = *impl_;
  std::vector<std::string> tokens;
  std::vector<bool> isAdded(t.idToToken.size(), false);
  for (const AddedToken& a : t.added) isAdded[static_cast<size_t>(a.id)] = true;
  std::vector<bool> addedAt;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.idToToken.size())
      return makeError("token id ", id, " is outside the vocab of ", t.idToToken.size());
    if (options.skipSpecialTokens && isSpecial(id)) continue;
    tokens.push_back(t.idToToken[static_cast<size_t>(id)]);
    addedAt.push_back(isAdded[static_cast<size_t>(id)]);
  }
  if (!t.hasDecoder) {
    // transformers.js joins the tokens with spaces when there is no decoder.
    std::string text;
    for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
    return tok::repairUtf8(text);
  }
  for (const Decoder& d : t.decoders) {
    tokens = applyDecoder(t, d, std::move(tokens), addedAt);
    addedAt.clear();  // positions no longer line up after the first step
  }
  std::string text;
  for (const std::string& token : tokens) text += token;
  return tok::repairUtf8(text);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(tokenizer), options_(options) {}

// Decodes a window that starts one emitted token back, so decoders that treat the start of
// the text specially see the same start each time, and emits what the new token added.
Expected<std::string> StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  auto window = [&](size_t from, size_t to) {
    return std::vector<int32_t>(ids_.begin() + static_cast<std::ptrdiff_t>(from),
                                ids_.begin() + static_cast<std::ptrdiff_t>(to));
  };
  Expected<std::string> before = tokenizer_.decode(window(prefixOffset_, readOffset_), options_);
  if (!before) return before.takeError();
  Expected<std::string> after = tokenizer_.decode(window(prefixOffset_, ids_.size()), options_);
  if (!after) return after.takeError();
  bool incomplete = after->ends_with("\xEF\xBF\xBD");
  if (incomplete || after->size() <= before->size() || !after->starts_with(*before))
    return std::string();
  std::string added = after->substr(before->size());
  prefixOffset_ = readOffset_;
  readOffset_ = ids_.size();
  return added;
}

Expected<std::string> StreamDecoder::finish() {
  auto window = [&](size_t from) {
    return std::vector<int32_t>(ids_.begin() + static_cast<std::ptrdiff_t>(from), ids_.end());
  };
  Expected<std::string> before = tokenizer_.decode(
      std::vector<int32_t>(ids_.begin() + static_cast<std::ptrdiff_t>(prefixOffset_),
                           ids_.begin() + static_cast<std::ptrdiff_t>(readOffset_)),
      options_);
  if (!before) return before.takeError();
  Expected<std::string> after = tokenizer_.decode(window(prefixOffset_), options_);
  if (!after) return after.takeError();
  prefixOffset_ = readOffset_ = ids_.size();
  if (after->size() <= before->size() || !after->starts_with(*before)) return std::string();
  return after->substr(before->size());
}

}  // namespace tpc
