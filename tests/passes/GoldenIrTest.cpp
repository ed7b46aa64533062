// The sharded IR of the tiny llama preset at worlds 1, 2 and 8, compared with checked-in text
// that was read and checked by hand: column/row splits, KV heads per rank, one all-reduce after
// o_proj and after down_proj, the vocab-parallel embedding's all-reduce, the logits gather and
// the slice that drops vocab padding (500 rows over 8 ranks pad to 504), and the select_rows that
// keeps only the logit rows before the lm_head.
#include <gtest/gtest.h>

#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"
#include "tests/support/Fixtures.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

TEST(GoldenIr, TinyLlamaAtWorlds1And2And8) {
  for (int world : {1, 2, 8}) {
    std::string path = test::dataDir() + "/golden/tiny-llama.w" + std::to_string(world) + ".tpcir";
    std::string expected = test::readFile(path);
    std::string actual = printGraph(test::compiledGraph(test::presetSpec(Family::Llama), world));
    EXPECT_EQ(actual, expected) << "sharded IR differs from " << path;
  }
}

TEST(GoldenIr, CompiledGraphsOfEveryFamilyRoundTrip) {
  for (Family family : test::kAllFamilies) {
    for (int world : {1, 4}) {
      std::string once = printGraph(test::compiledGraph(test::presetSpec(family), world));
      Expected<Graph> parsed = parseGraph(once, "compiled.tpcir");
      ASSERT_TRUE(parsed) << parsed.errorMessage();
      EXPECT_FALSE(verifyGraph(*parsed));
      EXPECT_EQ(printGraph(*parsed), once) << familyName(family) << " world " << world;
    }
  }
}

}  // namespace
}  // namespace tpc
