#include "net/http/Server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <map>
#include <optional>

namespace tpc::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

struct HttpServer::Impl {
  Impl(Engine& engine, Tokenizer* tokenizer, ServerOptions o)
      : ioc(std::make_shared<asio::io_context>(1)),
        acceptor(*ioc),
        watchdog(*ioc),
        signals(*ioc),
        options(std::move(o)),
        state(engine, tokenizer, options.modelName) {}
  ~Impl();
  void accept();
  void watch();
  std::function<void(std::function<void()>)> poster() {
    // The engine may post after the server is gone; the context outlives it then.
    return [ioc = ioc](std::function<void()> f) { asio::post(*ioc, std::move(f)); };
  }

  std::shared_ptr<asio::io_context> ioc;
  tcp::acceptor acceptor;
  asio::steady_timer watchdog;
  asio::signal_set signals;
  ServerOptions options;
  ServerState state;
  Error failure = Error::success();
  bool failing = false;
  std::optional<std::chrono::steady_clock::time_point> drainedAt;
  // Every open connection, to close them all when run() ends (a stopped context would leave
  // their clients waiting forever).
  std::map<uint64_t, std::function<void()>> closers;
  uint64_t nextSession = 0;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server)
      : stream_(std::move(socket)), server_(server), requestTimer_(*server.ioc) {}
  void start() {
    id_ = ++server_.nextSession;
    server_.closers[id_] = [weak = weak_from_this()] {
      if (auto s = weak.lock()) s->close();
    };
    waitForRequest();
  }

 private:
  // Idle: nothing of a request yet. A pipelined request may already be in the buffer.
  void waitForRequest() {
    if (buffer_.size() > 0) return readRequest();
    stream_.expires_after(server_.options.idleTimeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (ec) return self->close();
                              self->buffer_.commit(n);
                              self->readRequest();
                            });
  }

  void readRequest() {
    parser_.emplace();
    parser_->body_limit(server_.options.maxBodyBytes);
    parser_->header_limit(server_.options.maxHeaderBytes);
    // A timer of its own rather than the stream's, which would close the socket: a request
    // that is too slow still gets its 408.
    stream_.expires_never();
    timedOut_ = false;
    requestTimer_.expires_after(server_.options.requestTimeout);
    requestTimer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec) return;
      self->timedOut_ = true;
      error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](error_code ec, size_t) {
                        self->requestTimer_.cancel();
                        self->onRequest(ec);
                      });
  }

  void onRequest(error_code ec) {
    const ServerOptions& o = server_.options;
    if (ec == bhttp::error::end_of_stream) return close();
    if (ec && timedOut_)
      return replyAndClose(408, "the request did not arrive within " +
                                    std::to_string(o.requestTimeout.count()) + " ms");
    if (ec == bhttp::error::body_limit)
      return replyAndClose(413, "the request body is over the limit of " +
                                    std::to_string(o.maxBodyBytes) + " bytes (--max-body-bytes)");
    if (ec == bhttp::error::header_limit)
      return replyAndClose(431, "the request's headers are over the limit of " +
                                    std::to_string(o.maxHeaderBytes) + " bytes");
    if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
      return replyAndClose(400, "malformed HTTP request: " + ec.message());
    if (ec) return close();
    stream_.expires_never();
    bhttp::request<bhttp::string_body>& req = parser_->get();
    keepAlive_ = req.keep_alive();
    RouteRequest request{std::string(req.method_string()), std::string(req.target()),
                         std::move(req.body()), std::string(req[bhttp::field::authorization])};
    std::weak_ptr<Session> weak = weak_from_this();
    CompletionOutput output{
        [weak](int status, std::string body) {
          if (auto s = weak.lock())
            s->sendReply(Reply{status, std::move(body), "application/json", {}});
        },
        [weak](const std::string& data) {
          if (auto s = weak.lock()) s->sendEvent(data);
        },
        [weak] {
          if (auto s = weak.lock()) s->endStream();
        }};
    Routed routed = route(server_.state, o, request, std::move(output), server_.poster());
    if (routed.reply) return sendReply(*routed.reply);
    completion_ = routed.completion;
    if (routed.stream) startStream();
    watchDisconnect();
  }

  // While a completion runs, a readable socket means the client closed it (or pipelined the
  // next request, which then waits its turn): a client that goes away cancels its request.
  void watchDisconnect() {
    stream_.socket().async_wait(tcp::socket::wait_read,
                                [self = shared_from_this(), turn = turn_](error_code ec) {
                                  if (turn != self->turn_ || ec == asio::error::operation_aborted)
                                    return;
                                  if (!ec) {
                                    char c;
                                    error_code peek;
                                    size_t n = self->stream_.socket().receive(
                                        asio::buffer(&c, 1), tcp::socket::message_peek, peek);
                                    if (!peek && n > 0) return;
                                  }
                                  self->clientGone();
                                });
  }

  void clientGone() {
    if (completion_) completion_->clientGone();
    completion_.reset();
    close();
  }

  void replyAndClose(int status, std::string message) {
    keepAlive_ = false;
    ApiError e;
    e.status = status;
    e.message = std::move(message);
    sendReply(errorReply(e));
  }

  void sendReply(const Reply& reply) {
    if (closed_) return;
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(reply.status), 11);
    res->set(bhttp::field::server, "tpc");
    res->set(bhttp::field::content_type, reply.contentType);
    for (const auto& [name, value] : reply.headers) res->set(name, value);
    res->keep_alive(keepAlive_);
    res->body() = reply.body;
    res->prepare_payload();
    stream_.expires_after(server_.options.writeTimeout);
    bhttp::async_write(stream_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      self->finishResponse(ec);
    });
  }

  void finishResponse(error_code ec) {
    stream_.expires_never();
    completion_.reset();
    ++turn_;
    if (ec || !keepAlive_) return close();
    error_code ignored;
    stream_.socket().cancel(ignored);  // the disconnect watch of the request just answered
    waitForRequest();
  }

  void startStream() {
    auto res = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::ok, 11);
    res->set(bhttp::field::server, "tpc");
    res->set(bhttp::field::content_type, "text/event-stream");
    res->set(bhttp::field::cache_control, "no-cache");
    res->keep_alive(keepAlive_);
    res->chunked(true);
    auto serializer = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res);
    writing_ = true;
    stream_.expires_after(server_.options.writeTimeout);
    bhttp::async_write_header(stream_, *serializer,
                              [self = shared_from_this(), res, serializer](error_code ec, size_t) {
                                self->stream_.expires_never();
                                self->writing_ = false;
                                if (ec) return self->clientGone();
                                self->headerSent_ = true;
                                self->flush();
                              });
  }

  void sendEvent(const std::string& data) {
    if (closed_) return;
    pending_ += "data: ";
    pending_ += data;
    pending_ += "\n\n";
    if (headerSent_ && !writing_) flush();
  }

  void endStream() {
    ended_ = true;
    if (headerSent_ && !writing_) flush();
  }

  // One chunk in flight at a time; events that arrive meanwhile go out together in the next.
  void flush() {
    if (closed_) return;
    if (pending_.empty()) {
      if (!ended_) return;
      writing_ = true;
      stream_.expires_after(server_.options.writeTimeout);
      asio::async_write(stream_, bhttp::make_chunk_last(),
                        [self = shared_from_this()](error_code ec, size_t) {
                          self->writing_ = false;
                          self->resetStream();
                          self->finishResponse(ec);
                        });
      return;
    }
    writing_ = true;
    inflight_.swap(pending_);
    pending_.clear();
    stream_.expires_after(server_.options.writeTimeout);
    asio::async_write(stream_, bhttp::make_chunk(asio::buffer(inflight_)),
                      [self = shared_from_this()](error_code ec, size_t) {
                        self->stream_.expires_never();
                        self->writing_ = false;
                        if (ec) return self->clientGone();
                        self->flush();
                      });
  }

  void resetStream() {
    headerSent_ = ended_ = false;
    inflight_.clear();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    server_.closers.erase(id_);
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Completion> completion_;
  bool keepAlive_ = true, closed_ = false, writing_ = false, headerSent_ = false, ended_ = false;
  asio::steady_timer requestTimer_;
  bool timedOut_ = false;
  uint64_t turn_ = 0;  // which request the disconnect watch belongs to
  uint64_t id_ = 0;
  std::string pending_, inflight_;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (!ec) std::make_shared<Session>(std::move(socket), *this)->start();
    accept();
  });
}

// The engine failing ends the server: once every open request has had its Failed event (and
// a moment to write it), run() returns the failure so the process can exit non-zero.
void HttpServer::Impl::watch() {
  watchdog.expires_after(std::chrono::milliseconds(50));
  watchdog.async_wait([this](error_code ec) {
    if (ec) return;
    if (!failing && state.engine.state() == EngineState::Failed) {
      failing = true;
      failure = makeError("the engine failed: ", state.engine.failure());
    }
    if (failing && state.open == 0) {
      auto now = std::chrono::steady_clock::now();
      if (!drainedAt) drainedAt = now;
      if (now - *drainedAt > std::chrono::milliseconds(300)) {
        error_code ignored;
        acceptor.close(ignored);
        ioc->stop();
        return;
      }
    }
    watch();
  });
}

HttpServer::Impl::~Impl() {
  // Requests still in the engine are cancelled, and their last events drained, so that no
  // engine callback outlives the state it refers to.
  try {
    std::vector<Completion*> open(state.live.begin(), state.live.end());
    for (Completion* c : open) c->clientGone();
    ioc->restart();
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (state.open > 0 && std::chrono::steady_clock::now() < until)
      ioc->run_one_for(std::chrono::milliseconds(50));
  } catch (...) {
    // Out of memory while shutting down: nothing left to save.
  }
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

Expected<std::unique_ptr<HttpServer>> HttpServer::create(Engine& engine, Tokenizer* tokenizer,
                                                         ServerOptions options) {
  auto impl = std::make_unique<Impl>(engine, tokenizer, std::move(options));
  const ServerOptions& o = impl->options;
  error_code ec;
  asio::ip::address address = asio::ip::make_address(o.host, ec);
  if (ec) return makeError("--host ", o.host, ": not an IP address");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(o.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return makeError("cannot listen on ", o.host, ":", o.port, ": ", ec.message());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

Error HttpServer::run() {
  if (impl_->options.stopOnSignals) {
    impl_->signals.add(SIGINT);
    impl_->signals.add(SIGTERM);
    impl_->signals.async_wait([impl = impl_.get()](error_code ec, int) {
      if (ec) return;
      error_code ignored;
      impl->acceptor.close(ignored);
      impl->watchdog.cancel();
      impl->ioc->stop();
    });
  }
  impl_->accept();
  impl_->watch();
  impl_->ioc->run();
  error_code ignored;
  impl_->acceptor.close(ignored);
  std::map<uint64_t, std::function<void()>> open;
  open.swap(impl_->closers);
  for (auto& [id, closeIt] : open) closeIt();
  return std::move(impl_->failure);
}

void HttpServer::stop() {
  asio::post(*impl_->ioc, [impl = impl_.get()] {
    error_code ignored;
    impl->acceptor.close(ignored);
    impl->watchdog.cancel();
    impl->ioc->stop();
  });
}

}  // namespace tpc::http
