// The endpoints, apart from the transport: a parsed HTTP request in, either a reply at once
// or a completion that answers later through its CompletionOutput. Everything here runs on
// the I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "net/http/ChatImages.h"
#include "net/http/Completion.h"

namespace tpc::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (HttpServer::port() says which)
  std::string modelName;
  std::string apiKey;        // empty: no authentication
  int64_t maxQueued = 1024;  // requests waiting for their first token; past it, 429
  uint64_t maxBodyBytes = uint64_t{4} << 20;
  uint32_t maxHeaderBytes = 16 << 10;
  // A connection with no request started for idleTimeout, or one whose request has not fully
  // arrived requestTimeout after its first byte (slowloris), is closed.
  std::chrono::milliseconds idleTimeout{60000}, requestTimeout{30000};
  std::chrono::milliseconds writeTimeout{30000};  // a client that reads nothing this long
  bool stopOnSignals = false;  // SIGINT and SIGTERM end run() cleanly (the tpexec serve process)
  // A vision model's image input; null: a text-only model (image parts are a 400).
  std::shared_ptr<const ServedImages> images;
};

struct Reply {
  int status = 200;
  std::string body;
  std::string contentType = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

struct RouteRequest {
  std::string method, target, body, authorization;
};

struct Routed {
  Routed(Reply r)
      : reply(std::move(r)) {}  // NOLINT(google-explicit-constructor): a reply is routed
  Routed(std::shared_ptr<Completion> c, bool s) : completion(std::move(c)), stream(s) {}
  std::optional<Reply> reply;              // answered now
  std::shared_ptr<Completion> completion;  // or started; it answers through its output
  bool stream = false;                     // the completion answers with Server-Sent Events
};

// `post` hands a function to the I/O thread (the engine's events go through it).
Routed route(ServerState& server, const ServerOptions& options, const RouteRequest& request,
             CompletionOutput output, const std::function<void(std::function<void()>)>& post);

Reply errorReply(const ApiError& error);

}  // namespace tpc::http
