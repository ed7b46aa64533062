// Pipeline micro-batches in the engine on the CPU backend: with the running sequences split
// into micro-batches in flight together, every request of the golden models at (tp, pp) =
// (1, 2) and (2, 2) gets the tokens (greedy logits within 1e-5, seeded picks exactly) of one
// micro-batch at a time and of the unstaged plan; preemption and the prefix cache keep them.
#include <gtest/gtest.h>

#include <mutex>

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

LoadedPlan planOf(const std::string& goldenCase, int64_t world, int64_t pp) {
  Expected<LoadedPlan> plan =
      test::compileModelDir(test::dataDir() + "/hf/" + goldenCase, world, DType::F32, 256, 16, pp);
  if (!plan) throw std::runtime_error(plan.errorMessage());
  return std::move(*plan);
}

// Eight requests of 2 to 12 prompt tokens: greedy ones returning their logits, and seeded
// sampled ones, some with penalties (picked on rank 0 from the logits), some without (picked
// by the backend's sampler).
std::vector<EngineRequest> requestsOf(int64_t vocab) {
  std::vector<EngineRequest> out;
  for (int i = 0; i < 8; ++i) {
    EngineRequest r;
    const int length = 2 + (i * 5) % 11;
    for (int j = 0; j < length; ++j)
      r.promptIds.push_back(static_cast<int32_t>((i * 131 + j * 17 + 3) % vocab));
    r.maxTokens = 6 + i % 3;
    r.ignoreEos = true;
    if (i % 2 == 0) {
      r.returnLogits = true;
    } else {
      r.temperature = 0.8f;
      r.topK = i % 3 ? 40 : 0;
      r.seed = 500 + static_cast<uint64_t>(i);
      if (i % 4 == 1) r.repetitionPenalty = 1.3f;
    }
    out.push_back(std::move(r));
  }
  return out;
}

EngineRunOptions optionsWith(int64_t microBatches) {
  EngineRunOptions o;
  o.engine.maxBatchedTokens = 32;
  o.engine.kvBlockSize = 4;
  o.engine.microBatches = microBatches;
  return o;
}

// Greedy logits within 1e-5 (another sharding of the same sums), seeded picks exactly.
Error sameResults(const std::vector<Outcome>& got, const std::vector<Outcome>& want,
                  const std::string& what) {
  if (got.size() != want.size()) return makeError(what, ": ", got.size(), " outcomes");
  for (size_t i = 0; i < want.size(); ++i) {
    if (Error e = sameOutcomes({got[i]}, {want[i]}, 1e-5, what + ", request " + std::to_string(i)))
      return e;
    if (got[i].finish != "length")
      return makeError(what, ": request ", i, " finished by ", got[i].finish);
  }
  return Error::success();
}

// The requests together on `plan`. The driver runs in rank 0's process, which is forked at
// world > 1: the outcomes are compared with `want` there (when given), and `out` is filled only
// at world 1. `overlapped`: some iteration must have begun while another was in flight.
Error runRequests(const LoadedPlan& plan, EngineRunOptions o, const std::vector<Outcome>* want,
                  const std::string& what, bool overlapped, std::vector<Outcome>* out = nullptr) {
  auto alongside = std::make_shared<std::pair<std::mutex, int64_t>>();
  o.onIteration = [alongside](const IterationStats& s) {
    std::lock_guard<std::mutex> lock(alongside->first);
    if (s.alongside > 0) ++alongside->second;
  };
  return runEngineLocally(plan, o, [&](Engine& engine) -> Error {
    Expected<std::vector<Outcome>> got = runTogether(engine, requestsOf(engine.vocabSize()));
    if (!got) return got.takeError();
    if (want)
      if (Error e = sameResults(*got, *want, what)) return e;
    std::lock_guard<std::mutex> lock(alongside->first);
    if (overlapped && alongside->second == 0)
      return makeError(what, ": no iteration began while another was in flight");
    if (out) *out = std::move(*got);
    return Error::success();
  });
}

TEST(MicroBatchEngine, GoldenModelsGiveOneMicroBatchsAndTheUnstagedPlansTokens) {
  for (const char* name : test::kGoldenCases) {
    std::vector<Outcome> flat;
    Error e = runRequests(planOf(name, 1, 1), optionsWith(1), nullptr, "unstaged", false, &flat);
    ASSERT_FALSE(e) << name << ": " << e.message();
    for (int64_t tp : {1, 2}) {
      SCOPED_TRACE(std::string(name) + " tp " + std::to_string(tp) + " pp 2");
      LoadedPlan staged = planOf(name, 2 * tp, 2);
      e = runRequests(staged, optionsWith(1), &flat, "one micro-batch vs unstaged", false);
      EXPECT_FALSE(e) << e.message();
      e = runRequests(staged, optionsWith(0), &flat, "two micro-batches vs unstaged", true);
      EXPECT_FALSE(e) << e.message();
    }
  }
}

// Bytes per block of the CPU's fp32 pool, for the rank of a plan with the most KV per token.
uint64_t poolBytesPerBlock(const LoadedPlan& plan, int64_t blockSize) {
  uint64_t most = 0;
  for (const plan::RankProgram* program : *plan.plan().ranks()) {
    uint64_t bytes = 0;
    for (const plan::Step* s : *program->steps())
      if (s->op()->string_view() == "attention")
        bytes +=
            2 * 4 *
            static_cast<uint64_t>(blockSize * stepInt(*s, "kv_heads") * stepInt(*s, "head_dim"));
    most = std::max(most, bytes);
  }
  return most;
}

// A pool too small for every request at once: sequences not in flight are preempted and
// recomputed, and a second round finds the prompts in the prefix cache.
TEST(MicroBatchEngine, PreemptionAndThePrefixCacheKeepTheTokens) {
  std::vector<Outcome> want;
  Error e = runRequests(planOf("llama-gqa-llama3rope", 1, 1), optionsWith(1), nullptr, "unstaged",
                        false, &want);
  ASSERT_FALSE(e) << e.message();
  LoadedPlan staged = planOf("llama-gqa-llama3rope", 2, 2);
  EngineRunOptions o = optionsWith(2);
  o.engine.kvCacheBytes = 14 * poolBytesPerBlock(staged, 4);
  e = runEngineLocally(staged, o, [&](Engine& engine) -> Error {
    for (int round = 0; round < 2; ++round) {
      Expected<std::vector<Outcome>> got = runTogether(engine, requestsOf(engine.vocabSize()));
      if (!got) return got.takeError();
      if (Error same = sameResults(*got, want, "small pool, round " + std::to_string(round)))
        return same;
    }
    if (engine.counters().preemptions == 0) return makeError("no preemption happened");
    if (engine.counters().prefixCacheHitTokens == 0) return makeError("no prefix cache hit");
    return Error::success();
  });
  EXPECT_FALSE(e) << e.message();
}

TEST(MicroBatchEngine, MicroBatchesOnAnUnstagedPlanAreRefused) {
  Error e = runEngineLocally(planOf("mistral-gqa", 1, 1), optionsWith(2),
                             [](Engine&) { return Error::success(); });
  ASSERT_TRUE(e);
  EXPECT_NE(e.message().find("--micro-batches 2 keeps pipeline stages busy, but the plan has one "
                             "stage"),
            std::string::npos)
      << e.message();
}

}  // namespace
}  // namespace tpc
