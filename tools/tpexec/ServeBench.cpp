// `tpexec serve-bench`: a load generator for an OpenAI-compatible server, in the manner of
// `vllm bench serve`: random token-id prompts of a given length (optionally sharing a prefix),
// sent at a Poisson --request-rate or with --max-concurrency open streams, each streamed with
// its token ids so that every token's arrival is timed. Reports TTFT, TPOT, ITL and end-to-end
// latency (mean, median, p99), throughput and errors. One Asio thread drives every stream.
// Boost 1.74's Asio uses std::exchange without including <utility> in C++20.
#include <utility>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "tools/common/Args.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchFlags {
  std::string host = "127.0.0.1", model, apiKey;
  int64_t port = 8000, prompts = 100, inputLen = 1024, outputLen = 128, sharedPrefix = 0;
  int64_t maxConcurrency = 0, seed = 0, minTokenId = 100, maxTokenId = 30000;
  double requestRate = 0;  // 0: all at once (bounded by --max-concurrency)
  bool json = false;
};

struct Result {
  bool ok = false;
  std::string error;
  double ttft = 0, e2e = 0;
  std::vector<double> itl;
  int64_t outputTokens = 0, promptTokens = 0;
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One streamed request on its own connection.
class Request : public std::enable_shared_from_this<Request> {
 public:
  Request(asio::io_context& ioc, const BenchFlags& f, std::string body, Result& out,
          std::function<void()> done)
      : socket_(ioc), flags_(f), body_(std::move(body)), out_(out), done_(std::move(done)) {}
  void start() {
    start_ = Clock::now();
    tcp::endpoint at(asio::ip::make_address(flags_.host), static_cast<unsigned short>(flags_.port));
    socket_.async_connect(at, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish("connect: " + ec.message());
      self->send();
    });
  }

 private:
  void send() {
    request_ = {bhttp::verb::post, "/v1/completions", 11};
    request_.set(bhttp::field::host, flags_.host);
    request_.set(bhttp::field::content_type, "application/json");
    if (!flags_.apiKey.empty())
      request_.set(bhttp::field::authorization, "Bearer " + flags_.apiKey);
    request_.body() = body_;
    request_.prepare_payload();
    bhttp::async_write(socket_, request_,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->finish("send: " + ec.message());
                         self->parser_.body_limit(uint64_t{1} << 32);
                         self->onChunk_ = [self = self.get()](uint64_t, beast::string_view data,
                                                              beast::error_code&) {
                           self->text_.append(data.data(), data.size());
                           self->consume();
                           return data.size();
                         };
                         self->parser_.on_chunk_body(self->onChunk_);
                         self->read();
                       });
  }
  void read() {
    bhttp::async_read_some(
        socket_, buffer_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->finish("read: " + ec.message());
          if (self->parser_.is_header_done() && self->parser_.get().result_int() != 200)
            return self->finish("HTTP " + std::to_string(self->parser_.get().result_int()));
          if (self->parser_.is_done()) return self->finish({});
          self->read();
        });
  }
  // Splits SSE events; each chunk's token_ids are timed on arrival.
  void consume() {
    size_t end;
    while ((end = text_.find("\n\n")) != std::string::npos) {
      std::string event = text_.substr(6, end - 6);  // after "data: "
      text_.erase(0, end + 2);
      if (event == "[DONE]") continue;
      json chunk = json::parse(event, nullptr, false);
      if (chunk.is_discarded()) continue;
      if (chunk.contains("error")) error_ = chunk["error"].value("message", "stream error");
      if (chunk.contains("usage") && chunk["usage"].is_object())
        out_.promptTokens = chunk["usage"].value("prompt_tokens", 0);
      for (const json& c : chunk.value("choices", json::array())) {
        size_t n = c.value("token_ids", json::array()).size();
        if (n == 0) continue;
        Clock::time_point now = Clock::now();
        if (out_.outputTokens == 0)
          out_.ttft = seconds(now - start_);
        else
          out_.itl.push_back(seconds(now - last_));
        last_ = now;
        out_.outputTokens += static_cast<int64_t>(n);
      }
    }
  }
  void finish(const std::string& error) {
    if (finished_) return;
    finished_ = true;
    out_.e2e = seconds(Clock::now() - start_);
    out_.error = error.empty() ? error_ : error;
    out_.ok = out_.error.empty() && out_.outputTokens > 0;
    beast::error_code ignored;
    socket_.close(ignored);
    done_();
  }

  tcp::socket socket_;
  const BenchFlags& flags_;
  std::string body_, text_, error_;
  Result& out_;
  std::function<void()> done_;
  bhttp::request<bhttp::string_body> request_;
  beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::empty_body> parser_;
  std::function<size_t(uint64_t, beast::string_view, beast::error_code&)> onChunk_;
  Clock::time_point start_, last_;
  bool finished_ = false;
};

struct Stats {
  double mean = 0, median = 0, p99 = 0;
};

Stats statsOf(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  s.median = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(v.size())))];
  return s;
}

// The server's tpc:http_cpu_seconds_total and tpc:generation_tokens_total; -1 when absent.
std::pair<double, double> scrape(const BenchFlags& f) {
  try {
    asio::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect({asio::ip::make_address(f.host), static_cast<unsigned short>(f.port)});
    bhttp::request<bhttp::empty_body> req(bhttp::verb::get, "/metrics", 11);
    req.set(bhttp::field::host, f.host);
    bhttp::write(socket, req);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket, buffer, res);
    auto value = [&](const std::string& name) {
      size_t at = res.body().find("\n" + name);
      if (at == std::string::npos) return -1.0;
      size_t end = res.body().find('\n', at + 1);
      std::string line = res.body().substr(at + 1, end - at - 1);
      return std::stod(line.substr(line.rfind(' ') + 1));
    };
    return {value("tpc:http_cpu_seconds_total"), value("tpc:generation_tokens_total")};
  } catch (const std::exception&) {
    return {-1, -1};
  }
}

}  // namespace

int runServeBench(int argc, char** argv) {
  using namespace tpc;
  BenchFlags f;
  cli::ArgParser args("tpexec serve-bench",
                      "Load on an OpenAI-compatible server (tpexec serve, vLLM, ...): random\n"
                      "token-id prompts, streamed completions, latency and throughput.");
  args.option("--host", &f.host, "ADDR", "server address (default 127.0.0.1)");
  args.option("--port", &f.port, "N", "server port (default 8000)");
  args.option("--model", &f.model, "NAME", "model name to send (default: none)");
  args.option("--api-key", &f.apiKey, "KEY", "sent as Authorization: Bearer KEY");
  args.option("--num-prompts", &f.prompts, "N", "requests to send (default 100)");
  args.option("--input-len", &f.inputLen, "N", "prompt tokens per request (default 1024)");
  args.option("--output-len", &f.outputLen, "N", "tokens generated per request (default 128)");
  args.option("--shared-prefix-len", &f.sharedPrefix, "N",
              "the first N prompt tokens are the same in every request (default 0)");
  args.option("--request-rate", &f.requestRate, "R",
              "requests per second, Poisson arrivals (default: all at once)");
  args.option("--max-concurrency", &f.maxConcurrency, "C",
              "open requests at most (default: no bound)");
  args.option("--min-token-id", &f.minTokenId, "N", "random prompt ids from N (default 100)");
  args.option("--max-token-id", &f.maxTokenId, "N", "random prompt ids below N (default 30000)");
  args.option("--seed", &f.seed, "S", "prompt and arrival seed (default 0)");
  args.flag("--json", &f.json, "print one JSON object");
  if (Error e = args.parse(argc, argv, 2))
    return std::fprintf(stderr, "error: %s\n", e.message().c_str()), 2;
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (f.prompts < 1 || f.inputLen < 1 || f.outputLen < 1)
    return std::fprintf(stderr,
                        "error: --num-prompts, --input-len and --output-len must be at least 1\n"),
           2;
  if (f.sharedPrefix < 0 || f.sharedPrefix > f.inputLen)
    return std::fprintf(stderr, "error: --shared-prefix-len must be in 0..--input-len\n"), 2;
  if (f.minTokenId < 0 || f.maxTokenId <= f.minTokenId)
    return std::fprintf(stderr, "error: --max-token-id must be above --min-token-id\n"), 2;

  std::mt19937_64 rng(static_cast<uint64_t>(f.seed));
  std::uniform_int_distribution<int64_t> token(f.minTokenId, f.maxTokenId - 1);
  std::vector<int64_t> prefix(static_cast<size_t>(f.sharedPrefix));
  for (int64_t& t : prefix) t = token(rng);
  std::vector<std::string> bodies;
  for (int64_t i = 0; i < f.prompts; ++i) {
    std::vector<int64_t> ids = prefix;
    while (static_cast<int64_t>(ids.size()) < f.inputLen) ids.push_back(token(rng));
    json body = {{"prompt", ids},
                 {"max_tokens", f.outputLen},
                 {"ignore_eos", true},
                 {"temperature", 0},
                 {"stream", true},
                 {"return_token_ids", true},
                 {"stream_options", {{"include_usage", true}}}};
    if (!f.model.empty()) body["model"] = f.model;
    bodies.push_back(body.dump());
  }
  std::exponential_distribution<double> gap(f.requestRate > 0 ? f.requestRate : 1.0);

  auto [cpuBefore, tokensBefore] = scrape(f);
  asio::io_context ioc(1);
  asio::steady_timer arrivals(ioc);
  std::vector<Result> results(static_cast<size_t>(f.prompts));
  size_t next = 0;
  int64_t open = 0;
  std::function<void()> launch;
  auto startOne = [&] {
    size_t i = next++;
    ++open;
    std::make_shared<Request>(ioc, f, bodies[i], results[i], [&] {
      --open;
      launch();
    })->start();
  };
  bool waitingForArrival = false;
  launch = [&] {
    while (next < bodies.size() && (f.maxConcurrency == 0 || open < f.maxConcurrency)) {
      if (f.requestRate <= 0) {
        startOne();
        continue;
      }
      if (waitingForArrival) return;
      waitingForArrival = true;
      arrivals.expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng))));
      arrivals.async_wait([&](beast::error_code) {
        waitingForArrival = false;
        if (f.maxConcurrency == 0 || open < f.maxConcurrency) startOne();
        launch();
      });
      return;
    }
  };
  Clock::time_point begin = Clock::now();
  launch();
  ioc.run();
  double duration = seconds(Clock::now() - begin);
  auto [cpuAfter, tokensAfter] = scrape(f);

  std::vector<double> ttft, tpot, itl, e2e;
  int64_t ok = 0, errors = 0, outputTokens = 0, inputTokens = 0;
  std::string firstError;
  for (const Result& r : results) {
    if (!r.ok) {
      ++errors;
      if (firstError.empty()) firstError = r.error;
      continue;
    }
    ++ok;
    outputTokens += r.outputTokens;
    inputTokens += r.promptTokens > 0 ? r.promptTokens : f.inputLen;
    ttft.push_back(r.ttft * 1e3);
    e2e.push_back(r.e2e * 1e3);
    if (r.outputTokens > 1)
      tpot.push_back((r.e2e - r.ttft) * 1e3 / static_cast<double>(r.outputTokens - 1));
    for (double x : r.itl) itl.push_back(x * 1e3);
  }
  json out = {{"requests", f.prompts},
              {"completed", ok},
              {"errors", errors},
              {"duration_s", duration},
              {"request_throughput", ok / duration},
              {"output_token_throughput", outputTokens / duration},
              {"total_token_throughput", (outputTokens + inputTokens) / duration}};
  if (!firstError.empty()) out["first_error"] = firstError;
  auto put = [&](const char* name, const std::vector<double>& v) {
    Stats s = statsOf(v);
    out[std::string("mean_") + name + "_ms"] = s.mean;
    out[std::string("median_") + name + "_ms"] = s.median;
    out[std::string("p99_") + name + "_ms"] = s.p99;
  };
  put("ttft", ttft);
  put("tpot", tpot);
  put("itl", itl);
  put("e2e", e2e);
  if (cpuBefore >= 0 && cpuAfter >= 0 && tokensAfter > tokensBefore)
    out["http_cpu_us_per_token"] = (cpuAfter - cpuBefore) * 1e6 / (tokensAfter - tokensBefore);
  if (f.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("requests %lld, completed %lld, errors %lld in %.2f s%s%s\n",
                static_cast<long long>(f.prompts), static_cast<long long>(ok),
                static_cast<long long>(errors), duration,
                firstError.empty() ? "" : ": first error: ", firstError.c_str());
    std::printf("throughput: %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
                out["request_throughput"].get<double>(),
                out["output_token_throughput"].get<double>(),
                out["total_token_throughput"].get<double>());
    for (const char* name : {"ttft", "tpot", "itl", "e2e"})
      std::printf("%-5s ms: mean %8.2f  median %8.2f  p99 %8.2f\n", name,
                  out[std::string("mean_") + name + "_ms"].get<double>(),
                  out[std::string("median_") + name + "_ms"].get<double>(),
                  out[std::string("p99_") + name + "_ms"].get<double>());
    if (out.contains("http_cpu_us_per_token"))
      std::printf("server HTTP thread: %.1f us CPU per generated token\n",
                  out["http_cpu_us_per_token"].get<double>());
  }
  return errors > 0 ? 1 : 0;
}
