// Bad requests of every kind, each answered with its status and a one-line message in OpenAI's
// error object, while the server goes on serving everyone else.
#include <gtest/gtest.h>

#include "tests/http/ServerFixture.h"

namespace tpc::test {
namespace {

using nlohmann::json;

std::string post(const std::string& target, const std::string& body,
                 const std::string& extraHeaders = {}) {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
         extraHeaders + "Content-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

struct Case {
  const char* name;
  std::string request;  // raw bytes
  int status;
  const char* message;  // a part of error.message
};

int statusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

std::string bodyOf(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

TEST(HostileHttp, EveryBadRequestGetsItsStatusAndMessageAndTheServerKeepsServing) {
  EchoEngine::Options engine;
  engine.maxContext = 256;
  engine.vocab = 1000;
  http::ServerOptions options;
  options.maxBodyBytes = 4096;
  options.maxHeaderBytes = 8192;
  options.requestTimeout = std::chrono::milliseconds(500);
  options.idleTimeout = std::chrono::milliseconds(2000);
  RunningServer server(engine, options);
  const std::string cmpl = "/v1/completions", chat = "/v1/chat/completions";
  std::string longPrompt = json{{"prompt", std::vector<int>(300, 1)}}.dump();
  std::vector<Case> cases = {
      {"malformed JSON", post(cmpl, R"({"prompt": [1, 2)"), 400, "malformed JSON body"},
      {"not an object", post(cmpl, "[1, 2]"), 400, "must be a JSON object"},
      {"body over the cap", post(cmpl, std::string(8000, ' ')), 413,
       "over the limit of 4096 bytes"},
      {"invalid UTF-8", post(cmpl, "{\"prompt\": \"a\xff\xfe b\"}"), 400, "malformed JSON body"},
      {"negative max_tokens", post(cmpl, R"({"prompt": [1], "max_tokens": -5})"), 400,
       "'max_tokens' must be in [1, "},
      {"temperature -1", post(cmpl, R"({"prompt": [1], "temperature": -1})"), 400,
       "'temperature' must be in [0, 2], got -1"},
      {"five stop strings", post(cmpl, R"({"prompt": [1], "stop": ["a", "b", "c", "d", "e"]})"),
       400, "'stop' holds 5 strings; at most 4"},
      {"unknown route", post("/v1/nothing", "{}"), 404, "no route POST /v1/nothing"},
      {"oversized header", post(cmpl, "{}", "X-Big: " + std::string(10000, 'a') + "\r\n"), 431,
       "headers are over the limit of 8192 bytes"},
      {"slowloris", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le", 408,
       "did not arrive within 500 ms"},
      {"body shorter than its Content-Length",
       "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"prompt\"", 408,
       "did not arrive within"},
      {"max_tokens of the wrong type", post(cmpl, R"({"prompt": [1], "max_tokens": "ten"})"), 400,
       "'max_tokens' must be an integer"},
      {"n = 2", post(cmpl, R"({"prompt": [1], "n": 2})"), 400, "only n = 1"},
      {"21 logprobs", post(cmpl, R"({"prompt": [1], "logprobs": 21})"), 400,
       "'logprobs' must be in [0, 20]"},
      {"empty prompt", post(cmpl, R"({"prompt": ""})"), 400, "'prompt' must not be empty"},
      {"empty id list", post(cmpl, R"({"prompt": []})"), 400, "'prompt' must not be empty"},
      {"token id outside the vocab", post(cmpl, R"({"prompt": [1, 5000]})"), 400,
       "token id 5000 is outside the vocabulary (0..999)"},
      {"prompt longer than the context", post(cmpl, longPrompt), 400,
       "the prompt has 300 tokens, but the model's context is 256 tokens"},
      {"prompt and max_tokens past the context",
       post(cmpl, R"({"prompt": [1, 2, 3], "max_tokens": 254})"), 400,
       "the prompt has 3 tokens and max_tokens is 254, more than the model's context of 256"},
      {"unknown model", post(cmpl, R"({"model": "gpt-9", "prompt": [1]})"), 404,
       "the model 'gpt-9' does not exist"},
      {"wrong method", "GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405,
       "use POST /v1/completions"},
      {"no prompt", post(cmpl, R"({"max_tokens": 3})"), 400, "'prompt' is required"},
      {"stop of numbers", post(cmpl, R"({"prompt": [1], "stop": [1]})"), 400,
       "'stop' must hold strings"},
      {"stream_options without stream",
       post(cmpl, R"({"prompt": [1], "stream_options": {"include_usage": true}})"), 400,
       "only allowed with \"stream\": true"},
      {"top_p 0", post(cmpl, R"({"prompt": [1], "top_p": 0})"), 400, "'top_p' must be in"},
      {"empty messages", post(chat, R"({"messages": []})"), 400, "'messages' must not be empty"},
      {"chat without a tokenizer",
       post(chat, R"({"messages": [{"role": "user", "content": "hi"}]})"), 400,
       "this model has no tokenizer"},
      {"unknown role", post(chat, R"({"messages": [{"role": "wizard", "content": "hi"}]})"), 400,
       "message role 'wizard'"},
      {"garbage request line", "GARBAGE\r\n\r\n", 400, "malformed HTTP request"},
      {"stop_token_ids outside the vocab", post(cmpl, R"({"prompt": [1], "stop_token_ids": [-1]})"),
       400, "'stop_token_ids': token id -1 is outside the vocabulary"},
  };
  ASSERT_GE(cases.size(), 20u);
  for (const Case& c : cases) {
    std::string response = rawExchange(server.port(), c.request);
    EXPECT_EQ(statusOf(response), c.status) << c.name << "\n" << response;
    json body = json::parse(bodyOf(response), nullptr, false);
    ASSERT_TRUE(body.is_object() && body.contains("error")) << c.name << "\n" << response;
    const json& e = body["error"];
    for (const char* key : {"message", "type", "param", "code"})
      EXPECT_TRUE(e.contains(key)) << c.name << ": no error." << key;
    std::string message = e["message"].get<std::string>();
    EXPECT_NE(message.find(c.message), std::string::npos) << c.name << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.name << ": " << message;
    // Whatever came before, a good request is still answered.
    HttpReply ok = postJson(server.port(), cmpl, {{"prompt", {7, 8}}, {"max_tokens", 2}});
    ASSERT_EQ(ok.status, 200) << "after " << c.name << ": " << ok.body;
  }
  // Unknown fields are ignored, as OpenAI's clients send some of their own.
  HttpReply extra =
      postJson(server.port(), cmpl, {{"prompt", {7}}, {"max_tokens", 1}, {"colour", "blue"}});
  EXPECT_EQ(extra.status, 200) << extra.body;
}

TEST(HostileHttp, AnIdleConnectionIsClosed) {
  http::ServerOptions options;
  options.idleTimeout = std::chrono::milliseconds(300);
  RunningServer server({}, options);
  auto start = std::chrono::steady_clock::now();
  std::string response = rawExchange(server.port(), "", 10);
  EXPECT_EQ(response, "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(HostileHttp, AWrongOrMissingApiKeyIs401) {
  http::ServerOptions options;
  options.apiKey = "sesame";
  RunningServer server({}, options);
  json body = {{"prompt", {1, 2}}, {"max_tokens", 1}};
  HttpReply none = postJson(server.port(), "/v1/completions", body);
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.body.find("missing API key"), std::string::npos) << none.body;
  HttpReply wrong =
      postJson(server.port(), "/v1/completions", body, {{"Authorization", "Bearer nope"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_NE(wrong.body.find("wrong API key"), std::string::npos) << wrong.body;
  HttpReply right =
      postJson(server.port(), "/v1/completions", body, {{"Authorization", "Bearer sesame"}});
  EXPECT_EQ(right.status, 200) << right.body;
  EXPECT_EQ(httpRequest(server.port(), "GET", "/health").status, 200);
}

}  // namespace
}  // namespace tpc::test
