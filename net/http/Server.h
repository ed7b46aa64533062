// The OpenAI-compatible HTTP server: Boost.Beast over Asio, every connection on one I/O thread
// (asynchronous, so one thread holds thousands of open streams). The engine's events are
// posted to that thread; nothing here blocks it.
#pragma once

#include <memory>

#include "executor/engine/Engine.h"
#include "frontends/Tokenizer.h"
#include "ir/Error.h"
#include "net/http/Routes.h"

namespace tpc::http {

class HttpServer {
 public:
  // Binds host:port (port 0: any free one). `tokenizer` may be null: token-id prompts only.
  static Expected<std::unique_ptr<HttpServer>> create(Engine& engine, Tokenizer* tokenizer,
                                                      ServerOptions options);
  ~HttpServer();
  int port() const;
  // Serves on the calling thread until stop(), or until the engine fails: then every open
  // stream has its error event written and run() returns the engine's failure.
  Error run();
  void stop();  // thread-safe

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpc::http
