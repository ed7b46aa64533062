// The engine on the CPU backend with the transformers golden models (tests/data/hf): batching
// never changes a result (each request alone is the reference), preemption and the prefix
// cache keep outputs, and a bad request fails alone.
#include <gtest/gtest.h>

#include "codegen/PlanFormat.h"
#include "executor/StepAttrs.h"
#include "executor/engine/EngineRun.h"
#include "tests/executor/EngineTestUtil.h"
#include "tests/support/Fixtures.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::Outcome;
using test::runTogether;
using test::sameOutcomes;

LoadedPlan planOf(const std::string& goldenCase, int64_t world) {
  Expected<LoadedPlan> plan =
      test::compileModelDir(test::dataDir() + "/hf/" + goldenCase, world, DType::F32);
  if (!plan) throw std::runtime_error(plan.errorMessage());
  return std::move(*plan);
}

// Prompts of 1 to 23 tokens, different for every request.
std::vector<EngineRequest> mixedRequests(int64_t vocab, int count, bool sampled) {
  std::vector<EngineRequest> out;
  for (int i = 0; i < count; ++i) {
    EngineRequest r;
    const int length = 1 + (i * 5) % 23;
    for (int j = 0; j < length; ++j)
      r.promptIds.push_back(static_cast<int32_t>((i * 131 + j * 17 + 3) % vocab));
    r.maxTokens = 3 + i % 3;
    r.ignoreEos = true;
    if (sampled) {
      r.temperature = 0.9f;
      r.topK = i % 2 ? 40 : 0;
      r.topP = i % 3 ? 0.9f : 1.0f;
      r.minP = i % 4 == 0 ? 0.05f : 0.0f;
      r.seed = 1000 + static_cast<uint64_t>(i);
    } else {
      r.returnLogits = true;
    }
    out.push_back(std::move(r));
  }
  return out;
}

// Each request alone, one after another: the reference a batch must reproduce.
Expected<std::vector<Outcome>> runAlone(Engine& engine, const std::vector<EngineRequest>& rs) {
  std::vector<Outcome> out;
  for (const EngineRequest& r : rs) {
    Expected<std::vector<Outcome>> one = runTogether(engine, {r});
    if (!one) return one.takeError();
    out.push_back((*one)[0]);
  }
  return out;
}

// Greedy (with logits) and seeded-sampling references: each request alone.
struct References {
  std::vector<EngineRequest> greedy, sampled;
  std::vector<Outcome> greedyAlone, sampledAlone;
};

// The 16 requests submitted together reproduce every request's output alone.
Error checkTogether(Engine& engine, const References& refs) {
  Expected<std::vector<Outcome>> greedy = runTogether(engine, refs.greedy);
  if (!greedy) return greedy.takeError();
  if (Error e = sameOutcomes(*greedy, refs.greedyAlone, 1e-5, "greedy, 16 together vs alone"))
    return e;
  Expected<std::vector<Outcome>> sampled = runTogether(engine, refs.sampled);
  if (!sampled) return sampled.takeError();
  if (Error e = sameOutcomes(*sampled, refs.sampledAlone, 0, "seeded, 16 together vs alone"))
    return e;
  if (engine.counters().iterations == 0) return makeError("no iteration was counted");
  return Error::success();
}

EngineRunOptions smallBatches() {
  EngineRunOptions o;
  o.engine.maxSeqs = 16;
  o.engine.maxBatchedTokens = 32;  // prompts are chunked and share iterations with decodes
  o.engine.kvBlockSize = 4;
  return o;
}

// The references run alone at world 1; worlds 2 and 4 must reproduce them (sharding keeps
// logits within 1e-5 as well, tests/tools/TpexecGoldenTest.cpp).
TEST(Engine, BatchingNeverChangesAResultAtWorlds1And2And4) {
  for (const char* name : test::kGoldenCases) {
    References refs;
    for (int world : {1, 2, 4}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      LoadedPlan plan = planOf(name, world);
      Error e = runEngineLocally(plan, smallBatches(), [&](Engine& engine) -> Error {
        if (world == 1) {
          refs.greedy = mixedRequests(engine.vocabSize(), 16, false);
          refs.sampled = mixedRequests(engine.vocabSize(), 16, true);
          Expected<std::vector<Outcome>> greedy = runAlone(engine, refs.greedy);
          if (!greedy) return greedy.takeError();
          Expected<std::vector<Outcome>> sampled = runAlone(engine, refs.sampled);
          if (!sampled) return sampled.takeError();
          refs.greedyAlone = std::move(*greedy);
          refs.sampledAlone = std::move(*sampled);
        }
        return checkTogether(engine, refs);
      });
      ASSERT_FALSE(e) << e.message();
    }
  }
}

// Bytes per block of a plan's rank 0 in the CPU's fp32 pool.
uint64_t poolBytesPerBlock(const LoadedPlan& plan, int64_t blockSize) {
  uint64_t bytes = 0;
  for (const plan::Step* s : *plan.plan().ranks()->Get(0)->steps())
    if (s->op()->string_view() == "attention")
      bytes += 2 * 4 *
               static_cast<uint64_t>(blockSize * stepInt(*s, "kv_heads") * stepInt(*s, "head_dim"));
  return bytes;
}

TEST(Engine, PreemptedRequestsFinishWithTheirOutputAlone) {
  LoadedPlan plan = planOf("llama-gqa-llama3rope", 1);
  for (bool prefixCaching : {true, false}) {
    EngineRunOptions o = smallBatches();
    o.engine.prefixCaching = prefixCaching;
    // Ten blocks of four tokens; six requests of 10 prompt and 10 generated tokens need five
    // each, thirty together.
    o.engine.kvCacheBytes = 10 * poolBytesPerBlock(plan, 4);
    Error e = runEngineLocally(plan, o, [](Engine& engine) -> Error {
      std::vector<EngineRequest> requests;
      for (int i = 0; i < 6; ++i) {
        EngineRequest r;
        for (int j = 0; j < 10; ++j)
          r.promptIds.push_back(static_cast<int32_t>((i * 37 + j * 11 + 1) % engine.vocabSize()));
        r.maxTokens = 10;
        r.ignoreEos = true;
        r.returnLogits = true;
        requests.push_back(r);
      }
      Expected<std::vector<Outcome>> alone = runAlone(engine, requests);
      if (!alone) return alone.takeError();
      if (engine.counters().preemptions != 0) return makeError("one request alone was preempted");
      if (engine.counters().kvBlocksTotal != 10)
        return makeError("the pool has ", engine.counters().kvBlocksTotal, " blocks, not 10");
      Expected<std::vector<Outcome>> together = runTogether(engine, requests);
      if (!together) return together.takeError();
      if (Error e = sameOutcomes(*together, *alone, 1e-5, "preempted vs alone")) return e;
      if (engine.counters().preemptions == 0) return makeError("no preemption happened");
      return Error::success();
    });
    EXPECT_FALSE(e) << e.message();
  }
}

TEST(Engine, APrefixInTheCacheIsNotComputedAgain) {
  LoadedPlan plan = planOf("qwen3-qknorm-headdim", 1);
  std::vector<EngineRequest> requests(2);
  for (int j = 0; j < 14; ++j) requests[0].promptIds.push_back(5 + 3 * j);
  requests[1].promptIds.assign(requests[0].promptIds.begin(), requests[0].promptIds.begin() + 12);
  for (int32_t id : {7, 8, 9}) requests[1].promptIds.push_back(id);  // 3 blocks of 4, then 3
  for (EngineRequest& r : requests) {
    r.maxTokens = 5;
    r.ignoreEos = true;
    r.returnLogits = true;
  }
  std::vector<Outcome> results[2];
  for (bool prefixCaching : {true, false}) {
    EngineRunOptions o = smallBatches();
    o.engine.prefixCaching = prefixCaching;
    Error e = runEngineLocally(plan, o, [&](Engine& engine) -> Error {
      Expected<std::vector<Outcome>> first = runTogether(engine, {requests[0]});
      if (!first) return first.takeError();
      const int64_t before = engine.counters().promptTokens;
      Expected<std::vector<Outcome>> second = runTogether(engine, {requests[1]});
      if (!second) return second.takeError();
      const int64_t computed = engine.counters().promptTokens - before;
      const int64_t cached = (*second)[0].cachedPromptTokens;
      if (prefixCaching && (computed != 3 || cached != 12))
        return makeError("the second prompt computed ", computed, " tokens (", cached,
                         " cached) instead of 3 (12 cached)");
      if (!prefixCaching && (computed != 15 || cached != 0))
        return makeError("without the prefix cache ", computed, " tokens were computed");
      results[prefixCaching ? 0 : 1] = {(*first)[0], (*second)[0]};
      return Error::success();
    });
    ASSERT_FALSE(e) << e.message();
  }
  Error same = sameOutcomes(results[0], results[1], 1e-5, "prefix cache on vs off");
  EXPECT_FALSE(same) << same.message();
}

TEST(Engine, ABadRequestFailsAloneWithAClearMessage) {
  LoadedPlan plan = planOf("mistral-gqa", 1);
  Error e = runEngineLocally(plan, smallBatches(), [](Engine& engine) -> Error {
    EngineRequest good;
    good.promptIds = {1, 2, 3};
    good.maxTokens = 4;
    good.ignoreEos = true;
    EngineRequest tooLong = good, outsideVocab = good, noTokens = good;
    tooLong.promptIds.assign(static_cast<size_t>(engine.maxContext()), 1);
    outsideVocab.promptIds = {1, static_cast<int32_t>(engine.vocabSize())};
    noTokens.maxTokens = 0;
    Expected<std::vector<Outcome>> out =
        runTogether(engine, {good, tooLong, outsideVocab, noTokens, good});
    if (!out) return out.takeError();
    const char* expected[] = {"", "max context", "outside the vocab", "max tokens", ""};
    for (size_t i = 0; i < 5; ++i) {
      const Outcome& o = (*out)[i];
      if (expected[i][0] == '\0') {
        if (o.finish != "length" || o.ids.size() != 4)
          return makeError("good request ", i, " ended with '", o.finish, "': ", o.error);
      } else if (o.finish != "rejected" || o.error.find(expected[i]) == std::string::npos) {
        return makeError("bad request ", i, " ended with '", o.finish, "': '", o.error,
                         "' (expected a message about ", expected[i], ")");
      }
    }
    return Error::success();
  });
  EXPECT_FALSE(e) << e.message();
}

// llava: a request's image is checked at submit: its shape against the tower, the prompt's
// image tokens against its rows, and a prompt holding image tokens without an image are each
// rejected alone. Two images that together pass the per-iteration image budget (across nodes,
// half a control-plane frame) run in different iterations and answer alike; an image over the
// budget by itself is rejected.
TEST(Engine, BadImageRequestsFailAloneWithAClearMessage) {
  // tpc compile writes the tower's program (the fixture's compile is text only).
  test::TempDir tmp;
  const std::string planPath = tmp.file("llava.fb");
  test::CommandResult c =
      test::runCommand(test::binPath("tpc") + " compile " + test::dataDir() +
                       "/hf/llava-tiny --world 2 --dtype f32 --quiet -o " + planPath);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  Expected<LoadedPlan> plan = LoadedPlan::readFile(planPath);
  ASSERT_TRUE(plan) << plan.errorMessage();
  EngineRequest good;
  good.promptIds = {1, 2, 3};
  good.promptIds.insert(good.promptIds.begin() + 1, 16, 250);  // image_seq_length image tokens
  good.maxTokens = 3;
  good.ignoreEos = true;
  auto image = std::make_shared<EngineImage>();
  image->rows = 17;  // the class slot and 16 patches: 13056 bytes of patches
  image->patches.assign(17 * 3 * 8 * 8, 0.25f);
  good.image = image;
  EngineRunOptions options = smallBatches();
  options.engine.maxImageBytesPerIteration = 16 << 10;
  Error e = runEngineLocally(*plan, options, [&](Engine& engine) -> Error {
    EngineRequest noImage = good, fewTokens = good, wrongRows = good;
    noImage.image = nullptr;
    fewTokens.promptIds.erase(fewTokens.promptIds.begin() + 1);
    auto shortImage = std::make_shared<EngineImage>(*image);
    shortImage->rows = 16;
    shortImage->patches.resize(16 * 3 * 8 * 8);
    wrongRows.image = shortImage;
    Expected<std::vector<Outcome>> out =
        runTogether(engine, {good, noImage, fewTokens, wrongRows, good});
    if (!out) return out.takeError();
    const char* expected[] = {"", "carries no image", "has 15 image tokens", "takes 17 rows", ""};
    for (size_t i = 0; i < 5; ++i) {
      const Outcome& o = (*out)[i];
      if (expected[i][0] == '\0') {
        if (o.finish != "length" || o.ids.size() != 3)
          return makeError("good request ", i, " ended with '", o.finish, "': ", o.error);
      } else if (o.finish != "rejected" || o.error.find(expected[i]) == std::string::npos) {
        return makeError("bad request ", i, " ended with '", o.finish, "': '", o.error,
                         "' (expected a message about ", expected[i], ")");
      }
    }
    if ((*out)[0].ids != (*out)[4].ids) return makeError("the same image request gave two answers");
    return Error::success();
  });
  EXPECT_FALSE(e) << e.message();
  options.engine.maxImageBytesPerIteration = 8 << 10;
  e = runEngineLocally(*plan, options, [&](Engine& engine) -> Error {
    Expected<std::vector<Outcome>> out = runTogether(engine, {good});
    if (!out) return out.takeError();
    if ((*out)[0].finish != "rejected" ||
        (*out)[0].error.find("one iteration carries between nodes") == std::string::npos)
      return makeError("an image over the iteration's budget ended with '", (*out)[0].finish,
                       "': ", (*out)[0].error);
    return Error::success();
  });
  EXPECT_FALSE(e) << e.message();
}

}  // namespace
}  // namespace tpc
