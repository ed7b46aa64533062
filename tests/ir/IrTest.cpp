#include <gtest/gtest.h>

#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"

namespace tpc {
namespace {

// A graph that uses every printable feature: symbolic dims, every sharding, concat params,
// multi-result nodes and every attribute type.
Graph makeSample() {
  Graph g;
  g.name = "sample \"quoted\"";
  g.attrs.setInt("world", 2);
  g.attrs.setDouble("rope_theta", 500000.0);
  g.attrs.setDouble("eps", 1e-05);
  g.attrs.setInts("eos_token_ids", {2, 7});
  g.attrs.setString("family", "llama");
  Value* ids = g.addInput("token_ids", DType::I32, {Dim::tokens()});
  Value* pos = g.addInput("positions", DType::I32, {Dim::tokens()});
  Shape embedShape = staticShape({250, 8});
  Value* embed = g.addParameter("model.embed_tokens.weight", DType::BF16, embedShape,
                                {WeightPiece{"model.embed_tokens.weight", DType::BF16,
                                             staticShape({500, 8}), Sharding::split(0, 2)}});
  embed->sharding = Sharding::split(0, 2);
  Value* qkv = g.addParameter(
      "l0.qkv.weight", DType::BF16, staticShape({8, 8}),
      {WeightPiece{"q.weight", DType::BF16, staticShape({8, 8}), Sharding::split(0, 2)},
       WeightPiece{"k.weight", DType::BF16, staticShape({2, 8}), Sharding::split(0, 1)},
       WeightPiece{"v.weight", DType::BF16, staticShape({2, 8}), Sharding::split(0, 1)}});
  Value* norm = g.addParameter("norm.weight", DType::F32, staticShape({8}),
                               {WeightPiece{"norm.weight", DType::F32, staticShape({8}), {}}});
  Attributes a;
  a.setInt("split_groups", 500);
  Value* h =
      g.addNode(OpKind::Embedding, {ids, embed},
                {ResultSpec{"embed", DType::F32, {Dim::tokens(), Dim::of(8)}, Sharding::partial()}},
                a)
          ->result();
  Value* r = g.addNode(OpKind::AllReduce, {h},
                       {ResultSpec{"embed.ar", DType::F32, {Dim::tokens(), Dim::of(8)}}})
                 ->result();
  Attributes eps;
  eps.setDouble("eps", 1e-6);
  Value* x = g.addNode(OpKind::RmsNorm, {r, norm},
                       {ResultSpec{"x", DType::F32, {Dim::tokens(), Dim::of(8)}}}, eps)
                 ->result();
  Value* fused =
      g.addNode(OpKind::Linear, {x, qkv},
                {ResultSpec{"qkv", DType::F32, {Dim::tokens(), Dim::of(8)}, Sharding::split(1, 2)}})
          ->result();
  Attributes sizes;
  sizes.setInts("sizes", {4, 2, 2});
  Node* split =
      g.addNode(OpKind::Split, {fused},
                {ResultSpec{"q", DType::F32, {Dim::tokens(), Dim::of(4)}, Sharding::split(1, 2)},
                 ResultSpec{"k", DType::F32, {Dim::tokens(), Dim::of(2)}, Sharding::split(1, 1)},
                 ResultSpec{"v", DType::F32, {Dim::tokens(), Dim::of(2)}, Sharding::split(1, 1)}},
                sizes);
  Attributes attn;
  attn.setInt("heads", 2);
  attn.setInt("kv_heads", 1);
  attn.setInt("head_dim", 2);
  attn.setDouble("scale", 0.7071067811865476);
  attn.setString("note", "back\\slash");
  Value* out =
      g.addNode(
           OpKind::Attention, {split->result(0), split->result(1), split->result(2), pos},
           {ResultSpec{"attn", DType::F32, {Dim::tokens(), Dim::of(4)}, Sharding::split(1, 2)}},
           attn)
          ->result();
  g.addOutput(out);
  out->arenaOffset = 64;  // as plan-memory would set it
  return g;
}

TEST(IrText, PrintParsePrintIsIdentical) {
  Graph g = makeSample();
  ASSERT_FALSE(verifyGraph(g)) << verifyGraph(g).message();
  std::string once = printGraph(g);
  Expected<Graph> parsed = parseGraph(once, "sample.tpcir");
  ASSERT_TRUE(parsed) << parsed.errorMessage();
  EXPECT_FALSE(verifyGraph(*parsed));
  EXPECT_EQ(printGraph(*parsed), once);
  EXPECT_EQ(parsed->attrs, g.attrs);  // doubles survive exactly
}

TEST(IrText, PrintsReadableLines) {
  std::string text = printGraph(makeSample());
  EXPECT_NE(text.find("  input %token_ids : i32[tokens]\n"), std::string::npos) << text;
  EXPECT_NE(text.find("param %model.embed_tokens.weight : bf16[250, 8] split(0,2) = "
                      "\"model.embed_tokens.weight\" : bf16[500, 8] split(0,2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("= concat(\"q.weight\""), std::string::npos) << text;
  EXPECT_NE(
      text.find(
          "%embed : f32[tokens, 8] partial = embedding(%token_ids, %model.embed_tokens.weight)"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("attr rope_theta = 500000.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("attr eps = 1e-05\n"), std::string::npos) << text;
}

struct BadText {
  const char* text;
  const char* expected;
};

TEST(IrText, ParseErrorsNameTheLineAndProblem) {
  const BadText cases[] = {
      {"", "expected 'graph'"},
      {"graph \"g\" {\n  input %a : q7[tokens]\n}", "g.tpcir:2: unknown dtype"},
      {"graph \"g\" {\n  %b : f32[tokens, 4] = nosuchop(%a)\n}", "unknown op"},
      {"graph \"g\" {\n  input %a : f32[tokens, 4]\n  %b : f32[tokens, 4] = add(%a, %zz)\n}",
       "g.tpcir:3: use of undefined value %zz"},
      {"graph \"g\" {\n  input %a : f32[tokens]\n  input %a : f32[tokens]\n}", "defined twice"},
      {"graph \"g\" {\n  input %a : f32[tokens, 4] split(5,2)\n}",
       "split dim or parts out of range"},
      {"graph \"g\" {\n  attr x = \"unterminated\n}", "newline inside a string"},
      {"graph \"g\" {\n  input %a : f32[-3]\n}", "negative dimension"},
      {"graph \"g\" {\n  output %nothing\n}", "output of undefined value"},
      {"graph \"g\" { } trailing", "unexpected text after the closing"},
      {"graph \"g\" {\n  param %w : f32[4] = concat(\"a\" : f32[4])\n}", "at least two pieces"},
      {"graph \"g\" {\n  attr n = 99999999999999999999999\n}", "expected an integer"},
  };
  for (const BadText& c : cases) {
    Expected<Graph> g = parseGraph(c.text, "g.tpcir");
    ASSERT_FALSE(g) << c.text;
    EXPECT_NE(g.errorMessage().find(c.expected), std::string::npos)
        << "text: " << c.text << "\nerror: " << g.errorMessage();
  }
}

TEST(IrVerifier, CatchesShapeAndOrderProblems) {
  auto verifyText = [](const std::string& body) {
    Expected<Graph> g = parseGraph("graph \"g\" {\n" + body + "}\n", "v.tpcir");
    EXPECT_TRUE(g) << g.errorMessage();
    Error e = verifyGraph(*g);
    return e ? e.message() : std::string("ok");
  };
  std::string head =
      "  input %x : f32[tokens, 8]\n"
      "  param %w : f32[4, 8] = \"w\" : f32[4, 8]\n";
  EXPECT_EQ(verifyText(head + "  %y : f32[tokens, 4] = linear(%x, %w)\n  output %y\n"), "ok");
  EXPECT_NE(verifyText(head + "  %y : f32[tokens, 5] = linear(%x, %w)\n  output %y\n")
                .find("must be [tokens, 4]"),
            std::string::npos);
  EXPECT_NE(verifyText(head + "  %y : f32[tokens, 4] = linear(%w, %x)\n  output %y\n")
                .find("x must be [tokens, in]"),
            std::string::npos);
  EXPECT_NE(
      verifyText(head + "  %y : f32[tokens, 8] = add(%x)\n  output %y\n").find("takes 2 operands"),
      std::string::npos);
  EXPECT_NE(verifyText(head).find("has no output"), std::string::npos);
  EXPECT_NE(
      verifyText(
          "  param %w : f32[6, 8] = \"w\" : f32[8, 8] split(0,2)\n  input %x : f32[tokens, 8]\n"
          "  output %x\n")
          .find("its pieces make [4, 8]"),
      std::string::npos);
  EXPECT_NE(verifyText("  input %x : f32[tokens, 8]\n  %y : f32[tokens, 8], %z : f32[tokens, 8] = "
                       "split(%x) {sizes = [4, 4]}\n  output %y\n")
                .find("must be [tokens, 4]"),
            std::string::npos);
}

TEST(IrSharding, SlicesPadTheLastPieces) {
  SliceRange last = sliceOf(500, 8, 7);  // 500 rows over 8 ranks: 63 each, the last holds 59
  EXPECT_EQ(last.extent, 63);
  EXPECT_EQ(last.start, 441);
  EXPECT_EQ(last.length, 59);
  SliceRange first = sliceOf(500, 8, 0);
  EXPECT_EQ(first.start, 0);
  EXPECT_EQ(first.length, 63);
  EXPECT_EQ(sliceOf(3, 4, 3).length, 0);  // more pieces than rows: the tail holds only padding
  EXPECT_EQ(Sharding::split(0, 2).pieceOf(5, 8), 1);  // KV replication: ranks 4..7 hold piece 1
}

}  // namespace
}  // namespace tpc
