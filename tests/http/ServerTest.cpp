// The server's endpoints and shapes against the echo engine, whose output follows from each
// request alone (tests/http/EchoEngine.h): token-id prompts, streaming, usage, metrics, the
// queue bound, disconnects and engine failure.
#include <gtest/gtest.h>

#include <future>

#include "tests/http/ServerFixture.h"

namespace tpc::test {
namespace {

using nlohmann::json;

std::vector<int32_t> echoed(const std::vector<int32_t>& prompt, int64_t n) {
  EngineRequest r;
  r.promptIds = prompt;
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(EchoEngine::tokenAt(r, i, 128256));
  return out;
}

// The token ids of a whole stream, and its finish reason.
struct Streamed {
  std::vector<int32_t> ids;
  std::string finishReason;
  int64_t usagePrompt = -1, usageCompletion = -1;
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
    if (chunk.contains("usage") && !chunk["usage"].is_null()) {
      out.usagePrompt = chunk["usage"]["prompt_tokens"];
      out.usageCompletion = chunk["usage"]["completion_tokens"];
    }
    for (const json& choice : chunk["choices"]) {
      for (const json& id : choice.value("token_ids", json::array())) out.ids.push_back(id);
      if (!choice["finish_reason"].is_null()) out.finishReason = choice["finish_reason"];
    }
  }
  return out;
}

TEST(HttpServer, CompletionOfTokenIdsReturnsTheIdsAndUsage) {
  RunningServer server({}, {});
  HttpReply r = postJson(
      server.port(), "/v1/completions",
      {{"model", "echo"}, {"prompt", {5, 6, 7}}, {"max_tokens", 5}, {"return_token_ids", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "echo");
  EXPECT_EQ(j["choices"][0]["token_ids"], json(echoed({5, 6, 7}, 5)));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"], 8);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

TEST(HttpServer, AStreamCarriesTheSameIdsThenUsageThenDone) {
  RunningServer server({}, {});
  json body = {{"prompt", {9, 8, 7, 6}},
               {"max_tokens", 7},
               {"return_token_ids", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  SseStream s(server.port(), "/v1/completions", body);
  ASSERT_EQ(s.status(), 200) << s.errorBody();
  Streamed got = collect(s);
  EXPECT_TRUE(got.done);
  EXPECT_EQ(got.ids, echoed({9, 8, 7, 6}, 7));
  EXPECT_EQ(got.finishReason, "length");
  EXPECT_EQ(got.usageCompletion, 7);
  EXPECT_EQ(got.usagePrompt, 4);
}

TEST(HttpServer, StopTokenIdsEndWithStopAndLogprobsComeWithTheirAlternatives) {
  RunningServer server({}, {});
  HttpReply r = postJson(server.port(), "/v1/completions",
                         {{"prompt", {3, 4, 5, 6}},
                          {"max_tokens", 10},
                          {"stop_token_ids", {5}},
                          {"logprobs", 3},
                          {"return_token_ids", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  json c = r.json()["choices"][0];
  EXPECT_EQ(c["token_ids"], json({3, 4, 5}));
  EXPECT_EQ(c["finish_reason"], "stop");
  ASSERT_EQ(c["logprobs"]["token_logprobs"].size(), 3u);
  EXPECT_EQ(c["logprobs"]["top_logprobs"][0].size(), 3u);
}

TEST(HttpServer, ModelsHealthMetricsAndLoading) {
  EchoEngine::Options e;
  e.initial = EngineState::Loading;
  http::ServerOptions o;
  o.modelName = "tiny";
  RunningServer server(e, o);
  HttpReply loading = httpRequest(server.port(), "GET", "/health");
  EXPECT_EQ(loading.status, 503);
  EXPECT_NE(loading.body.find("loading"), std::string::npos) << loading.body;
  server.engine().setReady();
  EXPECT_EQ(httpRequest(server.port(), "GET", "/health").status, 200);
  json models = httpRequest(server.port(), "GET", "/v1/models").json();
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["max_model_len"], 256);
  ASSERT_EQ(
      postJson(server.port(), "/v1/completions", {{"prompt", {1, 2}}, {"max_tokens", 4}}).status,
      200);
  std::string metrics = httpRequest(server.port(), "GET", "/metrics").body;
  EXPECT_EQ(metricValue(metrics, "tpc:generation_tokens_total"), 4) << metrics;
  EXPECT_EQ(metricValue(metrics, "tpc:prompt_tokens_total"), 2) << metrics;
  EXPECT_EQ(metricValue(metrics, "tpc:time_to_first_token_seconds_count"), 1) << metrics;
  EXPECT_EQ(metricValue(metrics, "tpc:inter_token_latency_seconds_count"), 3) << metrics;
  EXPECT_EQ(metricValue(metrics, "tpc:e2e_request_latency_seconds_count"), 1) << metrics;
  EXPECT_EQ(metricValue(metrics, "tpc:request_queue_time_seconds_count"), 1) << metrics;
  for (const char* name : {"tpc:num_requests_running", "tpc:num_requests_waiting",
                           "tpc:kv_blocks_used", "tpc:prefix_cache_queries_total",
                           "tpc:prefix_cache_hits_total", "tpc:num_preemptions_total"})
    EXPECT_EQ(metricValue(metrics, name), 0) << name << "\n" << metrics;
}

TEST(HttpServer, PastTheQueueBoundRequestsGet429WithRetryAfter) {
  http::ServerOptions o;
  o.maxQueued = 2;
  RunningServer server({}, o);
  server.engine().pause(true);
  json body = {
      {"prompt", {1, 2, 3}}, {"max_tokens", 3}, {"stream", true}, {"return_token_ids", true}};
  SseStream a(server.port(), "/v1/completions", body), b(server.port(), "/v1/completions", body);
  ASSERT_EQ(a.status(), 200);
  ASSERT_EQ(b.status(), 200);
  HttpReply full = postJson(server.port(), "/v1/completions", body);
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_EQ(full.header("Retry-After"), "1");
  EXPECT_NE(full.body.find("2 requests are waiting"), std::string::npos) << full.body;
  server.engine().pause(false);
  EXPECT_EQ(collect(a).ids, echoed({1, 2, 3}, 3));
  EXPECT_EQ(collect(b).ids, echoed({1, 2, 3}, 3));
  EXPECT_EQ(postJson(server.port(), "/v1/completions", body).status, 200);
}

std::vector<int32_t> promptOf(int i) {
  std::vector<int32_t> p;
  for (int k = 0; k <= i % 13; ++k) p.push_back(100 + i * 17 + k);
  return p;
}

TEST(HttpServer, SixtyFourConcurrentStreamsGiveWhatEachGivesAlone) {
  RunningServer server({}, {});
  auto body = [](int i) {
    return json{
        {"prompt", promptOf(i)}, {"max_tokens", 24}, {"stream", true}, {"return_token_ids", true}};
  };
  std::vector<std::vector<int32_t>> alone;
  for (int i = 0; i < 64; ++i) {
    SseStream s(server.port(), "/v1/completions", body(i));
    alone.push_back(collect(s).ids);
    ASSERT_EQ(alone.back(), echoed(promptOf(i), 24)) << i;
  }
  std::vector<std::future<Streamed>> together;
  together.reserve(64);
  for (int i = 0; i < 64; ++i)
    together.push_back(std::async(std::launch::async, [&, i] {
      SseStream s(server.port(), "/v1/completions", body(i));
      return collect(s);
    }));
  for (int i = 0; i < 64; ++i) {
    Streamed got = together[i].get();
    EXPECT_EQ(got.ids, alone[i]) << i;
    EXPECT_TRUE(got.done) << i;
  }
}

TEST(HttpServer, ClientsThatDisconnectAreCancelledAndTheOthersFinish) {
  RunningServer server({}, {});
  auto body = [](int i) {
    return json{
        {"prompt", promptOf(i)}, {"max_tokens", 200}, {"stream", true}, {"return_token_ids", true}};
  };
  // Paused, the engine runs only the iterations it is given: every stream has its first token
  // and none has finished when ten clients go away, however slow the machine.
  server.engine().pause(true);
  std::vector<std::unique_ptr<SseStream>> streams;
  for (int i = 0; i < 20; ++i) {
    streams.push_back(std::make_unique<SseStream>(server.port(), "/v1/completions", body(i)));
    ASSERT_EQ(streams.back()->status(), 200);
  }
  // A stream's headers may reach the client before its request reaches the engine: wait until
  // all twenty are queued, so the one iteration below starts every one of them.
  for (int t = 0; t < 500 && server.engine().counters().waiting < 20; ++t)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(server.engine().counters().waiting, 20);
  server.engine().step(1);
  for (auto& s : streams) ASSERT_TRUE(s->next().has_value());  // it is running
  for (int i = 0; i < 10; ++i) streams[i]->disconnect();
  // Within a bounded wait, the engine has cancelled exactly those ten.
  for (int t = 0; t < 500 && server.engine().cancelled() < 10; ++t) {
    server.engine().step(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server.engine().cancelled(), 10);
  server.engine().pause(true);
  std::string midway = httpRequest(server.port(), "GET", "/metrics").body;
  EXPECT_EQ(metricValue(midway, "tpc:num_requests_running"), 10) << midway;
  double blocks = metricValue(midway, "tpc:kv_blocks_used");
  EXPECT_GT(blocks, 0);
  EXPECT_LE(blocks, 10 * ((13 + 200 + 15) / 16)) << midway;  // only the ten left hold blocks
  server.engine().pause(false);
  for (int i = 10; i < 20; ++i) {
    Streamed got = collect(*streams[i]);
    std::vector<int32_t> expected = echoed(promptOf(i), 200);
    expected.erase(expected.begin());  // the first chunk was read above
    EXPECT_EQ(got.ids, expected) << i;
    EXPECT_EQ(got.finishReason, "length") << i;
  }
  std::string after = httpRequest(server.port(), "GET", "/metrics").body;
  EXPECT_EQ(metricValue(after, "tpc:kv_blocks_used"), 0) << after;
  EXPECT_NE(after.find("finished_reason=\"abort\"} 10"), std::string::npos) << after;
}

TEST(HttpServer, WhenTheEngineFailsEveryStreamGetsAnErrorAndRunReturnsIt) {
  RunningServer server({}, {});
  json body = {{"prompt", {1, 2}}, {"max_tokens", 200}, {"stream", true}};
  std::vector<std::unique_ptr<SseStream>> streams;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<SseStream>(server.port(), "/v1/completions", body));
    ASSERT_TRUE(streams.back()->next().has_value());
  }
  server.engine().fail("rank 1 died");
  for (auto& s : streams) {
    std::vector<std::string> events = s->rest();
    ASSERT_FALSE(events.empty());
    json last = json::parse(events.back());
    ASSERT_TRUE(last.contains("error")) << events.back();
    EXPECT_NE(last["error"]["message"].get<std::string>().find("rank 1 died"), std::string::npos);
  }
  ASSERT_TRUE(server.waitForExit(10));
  ASSERT_TRUE(server.result());
  EXPECT_NE(server.result().message().find("rank 1 died"), std::string::npos);
}

}  // namespace
}  // namespace tpc::test
