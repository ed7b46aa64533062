// `tpexec serve` over the real engine (the server tests beside it use the echo engine): many
// concurrent streams on a golden model each give what the same request gives alone, greedy and
// seeded, and clients that go away mid-stream free their KV blocks (as /metrics reports) while
// the others carry on.
#include <gtest/gtest.h>

#include <future>
#include <memory>

#include "tests/http/Served.h"
#include "tests/http/ServerFixture.h"

namespace tpc::test {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

struct Streamed {
  std::vector<int32_t> ids;
  std::string finishReason;
  bool done = false;
};

Streamed collect(SseStream& s) {
  Streamed out;
  for (const std::string& e : s.rest()) {
    if (e == "[DONE]") {
      out.done = true;
      continue;
    }
    json chunk = json::parse(e);
    for (const json& choice : chunk["choices"]) {
      for (const json& id : choice.value("token_ids", json::array())) out.ids.push_back(id);
      if (!choice["finish_reason"].is_null()) out.finishReason = choice["finish_reason"];
    }
  }
  return out;
}

// Prompts of different lengths (3..14 tokens), inside every golden model's vocab.
std::vector<int32_t> promptFor(int i) {
  std::vector<int32_t> ids(static_cast<size_t>(3 + i % 12));
  for (size_t t = 0; t < ids.size(); ++t)
    ids[t] = static_cast<int32_t>(1 + (i * 37 + t * 11) % 200);
  return ids;
}

class ServeEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    plan_ = dir_->file("w2.fb");
    std::string compile = binPath("tpc") + " compile " + dataDir();
    compile += "/hf/llama-gqa-llama3rope --world 2 --dtype f32 --max-batch 16 --max-context 4096";
    compile += " --quiet -o " + plan_;
    CommandResult c = runCommand(compile);
    ASSERT_EQ(c.exitCode, 0) << c.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
  static std::string plan_;
};

TempDir* ServeEngine::dir_ = nullptr;
std::string ServeEngine::plan_;

TEST_F(ServeEngine, ThirtyTwoConcurrentStreamsGiveWhatEachGivesAlone) {
  TempDir tmp;
  Served s(tmp, plan_ + " --backend cpu --max-seqs 16");
  ASSERT_GT(s.port, 0) << s.process.err();
  constexpr int kStreams = 32;
  auto body = [](int i) {
    json b = {{"prompt", promptFor(i)},
              {"max_tokens", 8 + i % 9},
              {"stream", true},
              {"return_token_ids", true},
              {"ignore_eos", true}};
    if (i % 3 == 1) b.update({{"temperature", 0.9}, {"top_k", 40}, {"seed", 2000 + i}});
    return b;
  };
  std::vector<Streamed> alone;
  for (int i = 0; i < kStreams; ++i) {
    SseStream stream(s.port, "/v1/completions", body(i));
    ASSERT_EQ(stream.status(), 200) << stream.errorBody();
    alone.push_back(collect(stream));
    ASSERT_EQ(alone.back().ids.size(), static_cast<size_t>(8 + i % 9)) << i;
  }
  auto counter = [&](const char* name) {
    return metricValue(httpRequest(s.port, "GET", "/metrics").body, name);
  };
  const double iterationsBefore = counter("tpc:iterations_total");
  const double tokensBefore = counter("tpc:generation_tokens_total");
  std::vector<std::future<Streamed>> together;
  together.reserve(kStreams);
  for (int i = 0; i < kStreams; ++i)
    together.push_back(std::async(std::launch::async, [&, i] {
      SseStream stream(s.port, "/v1/completions", body(i));
      return collect(stream);
    }));
  for (int i = 0; i < kStreams; ++i) {
    Streamed got = together[i].get();
    EXPECT_EQ(got.ids, alone[i].ids) << i;
    EXPECT_EQ(got.finishReason, "length") << i;
    EXPECT_TRUE(got.done) << i;
  }
  // They did run together: far fewer iterations than tokens generated (alone, each token
  // costs an iteration of its own).
  const double iterations = counter("tpc:iterations_total") - iterationsBefore;
  const double tokens = counter("tpc:generation_tokens_total") - tokensBefore;
  EXPECT_GT(tokens, 0);
  EXPECT_LT(iterations, tokens / 2) << iterations << " iterations for " << tokens << " tokens";
}

TEST_F(ServeEngine, ClientsThatDisconnectFreeTheirBlocksAndTheOthersGoOn) {
  TempDir tmp;
  // No prefix cache: a finished request's blocks are free, not kept for reuse.
  Served s(tmp, plan_ + " --backend cpu --max-seqs 16 --no-prefix-caching");
  ASSERT_GT(s.port, 0) << s.process.err();
  // Long enough that none finishes while the test looks (thousands of decode steps).
  auto body = [](int i) {
    return json{{"prompt", promptFor(i)},
                {"max_tokens", 4000},
                {"stream", true},
                {"return_token_ids", true},
                {"ignore_eos", true}};
  };
  constexpr int kStreams = 12, kGone = 8;
  std::vector<std::unique_ptr<SseStream>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<SseStream>(s.port, "/v1/completions", body(i)));
    ASSERT_EQ(streams.back()->status(), 200) << streams.back()->errorBody();
  }
  for (auto& stream : streams) ASSERT_TRUE(stream->next().has_value());
  // A stream's first event can come before its request joins the running batch (a fresh-clone
  // run saw 7 running and 5 waiting here): within a bounded wait all of them run.
  std::string before;
  for (int t = 0; t < 500; ++t) {
    before = httpRequest(s.port, "GET", "/metrics").body;
    if (metricValue(before, "tpc:num_requests_running") == kStreams) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(metricValue(before, "tpc:num_requests_running"), kStreams) << before;
  for (int i = 0; i < kGone; ++i) streams[i]->disconnect();
  // Within a bounded wait the engine has cancelled exactly those, and holds blocks only for the
  // four left: each needs at most ceil((14 + 4000) / 16) blocks.
  std::string midway;
  for (int t = 0; t < 500; ++t) {
    midway = httpRequest(s.port, "GET", "/metrics").body;
    if (metricValue(midway, "tpc:num_requests_running") == kStreams - kGone) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(metricValue(midway, "tpc:num_requests_running"), kStreams - kGone) << midway;
  EXPECT_NE(midway.find("finished_reason=\"abort\"} " + std::to_string(kGone)), std::string::npos)
      << midway;
  double blocks = metricValue(midway, "tpc:kv_blocks_used");
  EXPECT_GT(blocks, 0) << midway;
  EXPECT_LE(blocks, (kStreams - kGone) * ((14 + 4000 + 15) / 16)) << midway;
  // The others are still streaming, then go too; every block comes back.
  for (int i = kGone; i < kStreams; ++i) ASSERT_TRUE(streams[i]->next().has_value()) << i;
  for (int i = kGone; i < kStreams; ++i) streams[i]->disconnect();
  std::string after;
  for (int t = 0; t < 500; ++t) {
    after = httpRequest(s.port, "GET", "/metrics").body;
    if (metricValue(after, "tpc:kv_blocks_used") == 0) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(metricValue(after, "tpc:kv_blocks_used"), 0) << after;
  EXPECT_EQ(metricValue(after, "tpc:num_requests_running"), 0) << after;
}

}  // namespace
}  // namespace tpc::test
