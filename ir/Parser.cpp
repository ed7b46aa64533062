#include "ir/Parser.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace tpc {
namespace {

enum class Tok { End, Ident, ValueName, String, Number, Punct };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // identifier, value name without '%', unescaped string, number, punct char
  int line = 1;
};

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  // Returns an empty message on success.
  std::string next(Token& tok) {
    skipSpaceAndComments();
    tok = Token{};
    tok.line = line_;
    if (pos_ >= text_.size()) return "";
    char c = text_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      tok.kind = Tok::Ident;
      while (pos_ < text_.size() && (std::isalnum(uc()) || text_[pos_] == '_'))
        tok.text += text_[pos_++];
      return "";
    }
    if (c == '%') {
      ++pos_;
      tok.kind = Tok::ValueName;
      while (pos_ < text_.size() &&
             (std::isalnum(uc()) ||
              std::string_view("_.-").find(text_[pos_]) != std::string_view::npos))
        tok.text += text_[pos_++];
      return tok.text.empty() ? "expected a value name after '%'" : "";
    }
    if (c == '"') return lexString(tok);
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      tok.kind = Tok::Number;
      tok.text += text_[pos_++];
      while (pos_ < text_.size() && (std::isalnum(uc()) || text_[pos_] == '.' ||
                                     ((text_[pos_] == '-' || text_[pos_] == '+') &&
                                      (text_[pos_ - 1] == 'e' || text_[pos_ - 1] == 'E'))))
        tok.text += text_[pos_++];
      return "";
    }
    if (std::string_view("()[]{},:=@").find(c) != std::string_view::npos) {
      tok.kind = Tok::Punct;
      tok.text = std::string(1, c);
      ++pos_;
      return "";
    }
    return std::string("unexpected character '") + c + "'";
  }

 private:
  unsigned char uc() const { return static_cast<unsigned char>(text_[pos_]); }

  void skipSpaceAndComments() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '\n') ++line_;
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '/' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '/') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string lexString(Token& tok) {
    tok.kind = Tok::String;
    ++pos_;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\n') return "newline inside a string";
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      tok.text += text_[pos_++];
    }
    if (pos_ >= text_.size()) return "unterminated string";
    ++pos_;
    return "";
  }

  std::string_view text_;
  size_t pos_ = 0;
  int line_ = 1;
};

class Parser {
 public:
  Parser(std::string_view text, const std::string& source) : lexer_(text), source_(source) {}

  Expected<Graph> run() {
    if (Error e = advance()) return e;
    if (Error e = expectIdent("graph")) return e;
    if (tok_.kind != Tok::String) return fail("expected the graph name as a string");
    graph_.name = tok_.text;
    if (Error e = advance()) return e;
    if (Error e = expectPunct("{")) return e;
    while (!isPunct("}")) {
      if (tok_.kind != Tok::Ident && tok_.kind != Tok::ValueName)
        return fail("expected attr, input, param, output or a node");
      // A node of an op without results (send) starts with the op's name.
      const OpInfo* bare = tok_.kind == Tok::Ident ? findOp(tok_.text) : nullptr;
      Error e = tok_.kind == Tok::ValueName || (bare && bare->results == 0) ? parseNode()
                                                                            : parseStatement();
      if (e) return e;
    }
    if (Error e = advance()) return e;
    if (tok_.kind != Tok::End) return fail("unexpected text after the closing '}'");
    return std::move(graph_);
  }

 private:
  Error fail(const std::string& what) const {
    return makeError(source_, ":", tok_.line, ": ", what,
                     tok_.kind == Tok::End ? " (at end of input)" : " (at '" + tok_.text + "')");
  }
  Error advance() {
    std::string problem = lexer_.next(tok_);
    return problem.empty() ? Error::success() : fail(problem);
  }
  bool isPunct(const char* p) const { return tok_.kind == Tok::Punct && tok_.text == p; }
  Error expectPunct(const char* p) {
    if (!isPunct(p)) return fail(std::string("expected '") + p + "'");
    return advance();
  }
  Error expectIdent(const char* word) {
    if (tok_.kind != Tok::Ident || tok_.text != word)
      return fail(std::string("expected '") + word + "'");
    return advance();
  }

  Error parseInt(int64_t& out) {
    if (tok_.kind != Tok::Number) return fail("expected an integer");
    auto [end, ec] = std::from_chars(tok_.text.data(), tok_.text.data() + tok_.text.size(), out);
    if (ec != std::errc() || end != tok_.text.data() + tok_.text.size())
      return fail("expected an integer");
    return advance();
  }

  Error parseAttrValue(AttrValue& out) {
    if (tok_.kind == Tok::String) {
      out = tok_.text;
      return advance();
    }
    if (isPunct("[")) {
      std::vector<int64_t> list;
      if (Error e = advance()) return e;
      while (!isPunct("]")) {
        if (!list.empty())
          if (Error e = expectPunct(",")) return e;
        int64_t v;
        if (Error e = parseInt(v)) return e;
        list.push_back(v);
      }
      out = std::move(list);
      return advance();
    }
    bool isIdentNumber = tok_.kind == Tok::Ident && (tok_.text == "inf" || tok_.text == "nan");
    if (tok_.kind != Tok::Number && !isIdentNumber) return fail("expected an attribute value");
    const std::string& t = tok_.text;
    if (t.find_first_of(".eEn") != std::string::npos) {
      double d;
      if (t == "inf")
        d = std::numeric_limits<double>::infinity();
      else if (t == "-inf")
        d = -std::numeric_limits<double>::infinity();
      else if (t == "nan")
        d = std::nan("");
      else {
        auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
        if (ec != std::errc() || end != t.data() + t.size()) return fail("bad number");
      }
      out = d;
      return advance();
    }
    int64_t v;
    if (Error e = parseInt(v)) return e;
    out = v;
    return Error::success();
  }

  // name = value
  Error parseKeyValue(Attributes& attrs) {
    if (tok_.kind != Tok::Ident) return fail("expected an attribute name");
    std::string key = tok_.text;
    if (Error e = advance()) return e;
    if (Error e = expectPunct("=")) return e;
    AttrValue v;
    if (Error e = parseAttrValue(v)) return e;
    attrs.set(key, std::move(v));
    return Error::success();
  }

  Error parseAttrBlock(Attributes& attrs) {
    if (!isPunct("{")) return Error::success();
    if (Error e = advance()) return e;
    bool first = true;
    while (!isPunct("}")) {
      if (!first)
        if (Error e = expectPunct(",")) return e;
      first = false;
      if (Error e = parseKeyValue(attrs)) return e;
    }
    return advance();
  }

  // dtype[shape] [sharding]
  Error parseType(DType& dtype, Shape& shape, Sharding& sharding) {
    if (tok_.kind != Tok::Ident) return fail("expected a dtype");
    auto parsed = parseIrDType(tok_.text);
    if (!parsed) return fail("unknown dtype");
    dtype = *parsed;
    if (Error e = advance()) return e;
    if (Error e = expectPunct("[")) return e;
    shape.clear();
    while (!isPunct("]")) {
      if (!shape.empty())
        if (Error e = expectPunct(",")) return e;
      if (tok_.kind == Tok::Ident && tok_.text == "tokens") {
        shape.push_back(Dim::tokens());
        if (Error e = advance()) return e;
      } else if (tok_.kind == Tok::Ident && tok_.text == "context") {
        shape.push_back(Dim::context());
        if (Error e = advance()) return e;
      } else {
        int64_t n;
        if (Error e = parseInt(n)) return e;
        if (n < 0) return fail("negative dimension");
        shape.push_back(Dim::of(n));
      }
    }
    if (Error e = advance()) return e;
    sharding = Sharding::replicated();
    if (tok_.kind == Tok::Ident && tok_.text == "partial") {
      sharding = Sharding::partial();
      return advance();
    }
    if (tok_.kind == Tok::Ident && tok_.text == "split") {
      if (Error e = advance()) return e;
      if (Error e = expectPunct("(")) return e;
      int64_t dim, parts;
      if (Error e = parseInt(dim)) return e;
      if (Error e = expectPunct(",")) return e;
      if (Error e = parseInt(parts)) return e;
      if (dim < 0 || dim >= static_cast<int64_t>(shape.size()) || parts < 1)
        return fail("split dim or parts out of range");
      sharding = Sharding::split(static_cast<int>(dim), parts);
      return expectPunct(")");
    }
    return Error::success();
  }

  // %name : type [@offset]
  Error parseDecl(std::string& name, DType& dtype, Shape& shape, Sharding& sharding,
                  int64_t& offset) {
    if (tok_.kind != Tok::ValueName) return fail("expected a %value name");
    name = tok_.text;
    if (graph_.findValue(name)) return fail("value %" + name + " is defined twice");
    if (Error e = advance()) return e;
    if (Error e = expectPunct(":")) return e;
    if (Error e = parseType(dtype, shape, sharding)) return e;
    offset = -1;
    if (!isPunct("@")) return Error::success();
    if (Error e = advance()) return e;
    if (Error e = parseInt(offset)) return e;
    if (offset < 0) return fail("negative arena offset");
    return Error::success();
  }

  Error parsePiece(WeightPiece& piece) {
    if (tok_.kind != Tok::String) return fail("expected a checkpoint tensor name");
    piece.tensor = tok_.text;
    if (Error e = advance()) return e;
    if (Error e = expectPunct(":")) return e;
    return parseType(piece.dtype, piece.shape, piece.sharding);
  }

  Error parseStatement() {
    std::string word = tok_.text;
    if (Error e = advance()) return e;
    if (word == "attr") return parseKeyValue(graph_.attrs);
    if (word == "input" || word == "param") {
      std::string name;
      DType dtype;
      Shape shape;
      Sharding sharding;
      int64_t offset;
      if (Error e = parseDecl(name, dtype, shape, sharding, offset)) return e;
      if (word == "input") {
        Value* v = graph_.addInput(name, dtype, shape);
        v->sharding = sharding;
        v->arenaOffset = offset;
        return Error::success();
      }
      if (Error e = expectPunct("=")) return e;
      llvm::SmallVector<WeightPiece, 1> pieces;
      if (tok_.kind == Tok::Ident && tok_.text == "concat") {
        if (Error e = advance()) return e;
        if (Error e = expectPunct("(")) return e;
        while (!isPunct(")")) {
          if (!pieces.empty())
            if (Error e = expectPunct(",")) return e;
          pieces.emplace_back();
          if (Error e = parsePiece(pieces.back())) return e;
        }
        if (Error e = advance()) return e;
        if (pieces.size() < 2) return fail("concat needs at least two pieces");
      } else {
        pieces.emplace_back();
        if (Error e = parsePiece(pieces.back())) return e;
      }
      graph_.addParameter(name, dtype, shape, std::move(pieces))->sharding = sharding;
      return Error::success();
    }
    if (word == "output") {
      if (tok_.kind != Tok::ValueName) return fail("expected a %value after output");
      Value* v = graph_.findValue(tok_.text);
      if (!v) return fail("output of undefined value %" + tok_.text);
      graph_.addOutput(v);
      return advance();
    }
    return makeError(source_, ":", tok_.line, ": unknown statement '", word, "'");
  }

  Error parseNode() {
    llvm::SmallVector<ResultSpec, 2> results;
    llvm::SmallVector<int64_t, 2> offsets;
    while (tok_.kind == Tok::ValueName) {
      ResultSpec r;
      int64_t offset;
      if (Error e = parseDecl(r.name, r.dtype, r.shape, r.sharding, offset)) return e;
      offsets.push_back(offset);
      for (const ResultSpec& earlier : results)
        if (earlier.name == r.name) return fail("value %" + r.name + " is defined twice");
      results.push_back(std::move(r));
      if (!isPunct(",")) break;
      if (Error e = advance()) return e;
    }
    if (!results.empty())
      if (Error e = expectPunct("=")) return e;
    if (tok_.kind != Tok::Ident) return fail("expected an op name");
    const OpInfo* info = findOp(tok_.text);
    if (!info) return fail("unknown op");
    if (results.empty() && info->results != 0) return fail("expected a %value name");
    if (Error e = advance()) return e;
    if (Error e = expectPunct("(")) return e;
    llvm::SmallVector<Value*, 4> operands;
    while (!isPunct(")")) {
      if (!operands.empty())
        if (Error e = expectPunct(",")) return e;
      if (tok_.kind != Tok::ValueName) return fail("expected a %value operand");
      Value* v = graph_.findValue(tok_.text);
      if (!v) return fail("use of undefined value %" + tok_.text);
      operands.push_back(v);
      if (Error e = advance()) return e;
    }
    if (Error e = advance()) return e;
    Attributes attrs;
    if (Error e = parseAttrBlock(attrs)) return e;
    Node* node = graph_.addNode(info->kind, operands, results, std::move(attrs));
    for (size_t i = 0; i < offsets.size(); ++i) node->results[i]->arenaOffset = offsets[i];
    return Error::success();
  }

  Lexer lexer_;
  std::string source_;
  Token tok_;
  Graph graph_;
};

}  // namespace

Expected<Graph> parseGraph(std::string_view text, const std::string& source) {
  return Parser(text, source).run();
}

}  // namespace tpc
