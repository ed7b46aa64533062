// The tokenizer without the oracle: malformed tokenizer.json files end in one line naming the
// file and the part at fault; hand-built tokenizers check the SentencePiece decoder chain and
// streaming; JavaScript's \s is what split patterns see.
#include "frontends/Tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "frontends/tokenizer/TokenizerText.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

std::string loadError(const std::string& json) {
  Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::fromJson(json, "", "t.json");
  if (t) return "loaded";
  return t.errorMessage();
}

TEST(TokenizerErrors, MalformedFilesAreOneLineErrors) {
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2})";
  struct Case {
    std::string json, expected;
  } cases[] = {
      {"", "not valid JSON"},
      {"{\"model\": ", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{}", "no \"model\" section"},
      {R"({"model": "BPE"})", "no \"model\" section"},
      {R"({"model": {"type": "Unigram", "vocab": []}})", "type \"Unigram\" is not supported"},
      {R"({"model": {"type": "WordPiece", )" + vocab + "}}", "is not supported"},
      {R"({"model": {"type": "BPE", "merges": []}})", "\"vocab\" must be an object"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "is not an id"},
      {R"({"model": {"type": "BPE", )" + vocab + "}}", "\"merges\" must be an array"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["a c"]}})",
       "merge 0: \"c\" is not in the vocab"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["ab"]}})",
       "not two tokens separated by one space"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["a b", 7]}})",
       "merge 1 is neither"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["b a"]}})",
       "the result \"ba\" is not in the vocab"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": [], "unk_token": "<unk>"}})",
       "unk_token \"<unk>\" is not in the vocab"},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "normalizer": {"type": "Foo"}})",
       "normalizer: unknown type \"Foo\""},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"}}})",
       "bad regex"},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": 3}})",
       "\"pattern\" must be"},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": 5}})",
       "Sequence needs"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": []}, "decoder": {"type": "CTC"}})",
       "decoder: unknown type \"CTC\""},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": []}, "decoder": 12})",
       "decoder: unknown type"},
      {R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": []}, "added_tokens": [{"id": 3}]})",
       "every added token needs"},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}]}})",
       "template token \"<s>\" is not in the vocab"},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(, "merges": []}, "post_processor": {"type": "BertProcessing"}})",
       "post_processor: unknown type \"BertProcessing\""},
  };
  for (const Case& c : cases) {
    std::string message = loadError(c.json);
    EXPECT_NE(message.find(c.expected), std::string::npos)
        << "for " << c.json << "\n  expected \"" << c.expected << "\" in: " << message;
    EXPECT_EQ(message.rfind("t.json", 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(TokenizerErrors, DeeplyNestedSequencesAreRefusedNotRecursedInto) {
  std::string json = R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": )";
  for (int i = 0; i < 10000; ++i) json += R"({"type": "Sequence", "normalizers": [)";
  json += R"({"type": "NFC"})";
  for (int i = 0; i < 10000; ++i) json += "]}";
  json += "}";
  std::string message = loadError(json);
  EXPECT_NE(message.find("nested too deeply"), std::string::npos) << message.substr(0, 200);
}

TEST(TokenizerErrors, MissingFileIsNamed) {
  test::TempDir dir;
  Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::load(dir.path());
  ASSERT_FALSE(t);
  EXPECT_NE(t.errorMessage().find(dir.file("tokenizer.json")), std::string::npos)
      << t.errorMessage();
}

// A SentencePiece-style tokenizer (Llama-2's normalizer and decoder chain) small enough that
// the expected ids and texts below are worked out by hand.
std::unique_ptr<Tokenizer> sentencePiece() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"\xE2\x96\x81", 2},   {"h", 3},
                          {"i", 4},     {"hi", 5},  {"\xE2\x96\x81hi", 6}, {"<0xC3>", 7},
                          {"<0xA9>", 8}};
  nlohmann::json json = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"h i", "\xE2\x96\x81 hi"}},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true}}},
      {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}}};
  Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::fromJson(json.dump(), "", "sp.json");
  EXPECT_TRUE(t) << t.errorMessage();
  return t ? std::move(*t) : nullptr;
}

TEST(Tokenizer, SentencePieceEncodesWithByteFallbackAndUnk) {
  std::unique_ptr<Tokenizer> t = sentencePiece();
  ASSERT_TRUE(t);
  // "hi hi" -> "▁hi▁hi" -> [▁hi, ▁hi]; é is not in the vocab but its bytes are; "xy" has
  // neither, and the two unknowns fuse into one <unk>.
  EXPECT_EQ(*t->encode("hi hi"), (std::vector<int32_t>{6, 6}));
  EXPECT_EQ(*t->encode("hi\xC3\xA9"), (std::vector<int32_t>{6, 7, 8}));
  EXPECT_EQ(*t->encode("hixy"), (std::vector<int32_t>{6, 0}));
  EXPECT_EQ(*t->encode("hi", true), (std::vector<int32_t>{1, 6}));
  EXPECT_EQ(*t->decode({6, 2, 6, 7, 8}), "hi  hi\xC3\xA9");
  EXPECT_EQ(*t->decode({1, 6}, {true}), "hi");
  EXPECT_FALSE(t->encode("\xFF"));  // not UTF-8
  EXPECT_FALSE(t->decode({9}));     // outside the vocab
}

TEST(Tokenizer, StreamingKeepsSpacesAndWholeCharacters) {
  std::unique_ptr<Tokenizer> t = sentencePiece();
  ASSERT_TRUE(t);
  StreamDecoder stream(*t);
  std::vector<std::string> pieces;
  for (int32_t id : {6, 6, 7, 8, 2, 6}) pieces.push_back(*stream.push(id));
  pieces.push_back(*stream.finish());
  // The leading space is stripped once, not per token; é waits for its second byte.
  EXPECT_EQ(pieces, (std::vector<std::string>{"hi", " hi", "", "\xC3\xA9", " ", " hi", ""}));
}

TEST(Tokenizer, StreamingFlushesAnIncompleteCharacterAsReplacement) {
  std::unique_ptr<Tokenizer> t = sentencePiece();
  ASSERT_TRUE(t);
  StreamDecoder stream(*t);
  EXPECT_EQ(*stream.push(6), "hi");
  EXPECT_EQ(*stream.push(7), "");
  EXPECT_EQ(*stream.finish(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, TinyByteLevelRoundTripsAnyText) {
  Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::load(test::dataDir() + "/tokenizer/tiny-bpe");
  ASSERT_TRUE(t) << t.errorMessage();
  EXPECT_EQ((*t)->vocabSize(), 500);
  for (std::string text :
       {"Hello, world!", "  spaces\n\ttabs\r\n", "日本語 🙂👨‍👩‍👧", "x<|im_end|>y",
        "The compiler reads a checkpoint.", ""}) {
    Expected<std::vector<int32_t>> ids = (*t)->encode(text);
    ASSERT_TRUE(ids) << ids.errorMessage();
    EXPECT_EQ(*(*t)->decode(*ids), text);
    StreamDecoder stream(**t);
    std::string streamed;
    for (int32_t id : *ids) {
      std::string piece = *stream.push(id);
      EXPECT_NO_THROW((void)nlohmann::json(piece).dump()) << "a piece is not whole UTF-8";
      streamed += piece;
    }
    streamed += *stream.finish();
    EXPECT_EQ(streamed, text);
  }
  // Added tokens are found in running text and never split.
  std::optional<int32_t> imEnd = (*t)->tokenId("<|im_end|>");
  ASSERT_TRUE(imEnd);
  std::vector<int32_t> ids = *(*t)->encode("a<|im_end|>");
  EXPECT_EQ(ids.back(), *imEnd);
  EXPECT_TRUE((*t)->isSpecial(*imEnd));
}

// JavaScript's \s (what transformers.js splits with) has U+FEFF and lacks U+0085; PCRE2's is
// the other way round, so the patterns are rewritten.
TEST(TokenizerText, SplitPatternsSeeJavaScriptWhitespace) {
  Expected<tok::Regex> re = tok::Regex::fromTokenizerPattern("\\s+|[^\\s]+");
  ASSERT_TRUE(re) << re.errorMessage();
  std::string text =
      "a\xEF\xBB\xBF"
      "b\xC2\x85"
      "c";  // a, U+FEFF, b, U+0085, c
  auto matches = re->findAll(text);
  ASSERT_TRUE(matches);
  std::vector<std::string> parts;
  parts.reserve(matches->size());
  for (auto [b, e] : *matches) parts.push_back(text.substr(b, e - b));
  EXPECT_EQ(parts, (std::vector<std::string>{"a", "\xEF\xBB\xBF",
                                             "b\xC2\x85"
                                             "c"}));
  // (?i:'s|...) as transformers.js rewrites it: ASCII letters only.
  Expected<tok::Regex> contractions =
      tok::Regex::fromTokenizerPattern("(?i:'s|'t|'re|'ve|'m|'ll|'d)");
  ASSERT_TRUE(contractions);
  EXPECT_EQ(contractions->findAll("'S 'T '\xC5\xBF")->size(), 2u);  // not the long s
}

TEST(TokenizerText, Utf8RepairMatchesTheWhatwgDecoder) {
  // Maximal subparts: F0 9F 98 (a truncated emoji) is one U+FFFD, a stray 80 another.
  EXPECT_EQ(tok::repairUtf8("a\xF0\x9F\x98"
                            "b\x80"),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
  EXPECT_EQ(tok::repairUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_TRUE(tok::isValidUtf8("\xF0\x9F\x99\x82"));
  EXPECT_FALSE(tok::isValidUtf8("\xC0\xAF"));  // overlong
}

}  // namespace
}  // namespace tpc
