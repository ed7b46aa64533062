#include "tests/http/HttpTestClient.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>

namespace tpc::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Asio's blocking calls poll without a time limit (a socket timeout does not reach them), so
// every operation here is asynchronous and the context runs for a bounded time.
constexpr auto kLimit = std::chrono::seconds(10);

// Runs `ioc` until `done` or `limit`; false on timeout (the socket is then closed).
bool runBounded(asio::io_context& ioc, tcp::socket& socket, const bool& done,
                std::chrono::steady_clock::duration limit = kLimit) {
  ioc.restart();
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < until)
    if (ioc.run_one_until(until) == 0) break;
  if (done) return true;
  beast::error_code ignored;
  socket.close(ignored);
  ioc.restart();
  ioc.run_for(std::chrono::seconds(1));  // let the aborted handlers finish
  return false;
}

bool connect(asio::io_context& ioc, tcp::socket& socket, int port) {
  bool done = false;
  beast::error_code result;
  socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
      [&](beast::error_code ec) {
        result = ec;
        done = true;
      });
  return runBounded(ioc, socket, done) && !result;
}

bhttp::request<bhttp::string_body> makeRequest(const std::string& method, const std::string& target,
                                               const std::string& body, const Headers& headers) {
  bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), target, 11);
  req.set(bhttp::field::host, "127.0.0.1");
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = body;
  req.prepare_payload();
  return req;
}

}  // namespace

std::string HttpReply::header(const std::string& name) const {
  for (const auto& [n, v] : headers)
    if (beast::iequals(n, name)) return v;
  return {};
}

HttpReply httpRequest(int port, const std::string& method, const std::string& target,
                      const std::string& body, const Headers& headers) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  HttpReply out;
  if (!connect(ioc, socket, port)) return out;
  auto req = makeRequest(method, target, body, headers);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(uint64_t{1} << 30);
  bool done = false;
  beast::error_code result;
  bhttp::async_write(socket, req, [&](beast::error_code ec, size_t) {
    if (ec) {
      result = ec;
      done = true;
      return;
    }
    bhttp::async_read(socket, buffer, parser, [&](beast::error_code ec2, size_t) {
      result = ec2;
      done = true;
    });
  });
  if (!runBounded(ioc, socket, done) || result) return out;
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  for (const auto& field : res)
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  return out;
}

std::string rawExchange(int port, const std::string& bytes, int seconds) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  if (!connect(ioc, socket, port)) return {};
  std::string out;
  char chunk[4096];
  bool done = false;
  std::function<void()> readMore = [&] {
    socket.async_read_some(asio::buffer(chunk), [&](beast::error_code ec, size_t n) {
      out.append(chunk, n);
      if (ec) {
        done = true;
        return;
      }
      readMore();
    });
  };
  asio::async_write(socket, asio::buffer(bytes), [&](beast::error_code ec, size_t) {
    if (ec) {
      done = true;
      return;
    }
    readMore();
  });
  runBounded(ioc, socket, done, std::chrono::seconds(seconds));
  return out;
}

struct SseStream::Impl {
  asio::io_context ioc;
  tcp::socket socket{ioc};
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::empty_body> parser;
  std::string text;  // body bytes not yet split into events
  std::function<size_t(uint64_t, beast::string_view, beast::error_code&)> onChunk;
  bool closed = false;
};

SseStream::SseStream(int port, const std::string& target, const nlohmann::json& body)
    : impl_(new Impl) {
  Impl& m = *impl_;
  if (!connect(m.ioc, m.socket, port)) return;
  auto req = makeRequest("POST", target, body.dump(), {});
  bool done = false;
  beast::error_code ec;
  bhttp::async_write(m.socket, req, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!runBounded(m.ioc, m.socket, done) || ec) return;
  impl_->parser.body_limit(uint64_t{1} << 30);
  // The parser keeps a reference to the callback: it lives in Impl.
  impl_->onChunk = [impl = impl_](uint64_t, beast::string_view data, beast::error_code&) {
    impl->text.append(data.data(), data.size());
    return data.size();
  };
  impl_->parser.on_chunk_body(impl_->onChunk);
  done = false;
  bhttp::async_read_header(m.socket, m.buffer, m.parser, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!runBounded(m.ioc, m.socket, done) || ec) return;
  status_ = static_cast<int>(impl_->parser.get().result_int());
  if (status_ != 200) {
    // An error is a plain JSON body, not a stream.
    bhttp::response_parser<bhttp::string_body> whole(std::move(impl_->parser));
    done = false;
    bhttp::async_read(m.socket, m.buffer, whole, [&](beast::error_code e, size_t) {
      ec = e;
      done = true;
    });
    runBounded(m.ioc, m.socket, done);
    errorBody_ = whole.get().body();
    impl_->closed = true;
  }
}

SseStream::~SseStream() { delete impl_; }

std::optional<std::string> SseStream::next() {
  while (true) {
    size_t end = impl_->text.find("\n\n");
    if (end != std::string::npos) {
      std::string event = impl_->text.substr(0, end);
      impl_->text.erase(0, end + 2);
      if (event.rfind("data: ", 0) == 0) event.erase(0, 6);
      return event;
    }
    if (impl_->closed || impl_->parser.is_done()) return std::nullopt;
    bool done = false;
    beast::error_code ec;
    bhttp::async_read_some(impl_->socket, impl_->buffer, impl_->parser,
                           [&](beast::error_code e, size_t) {
                             ec = e;
                             done = true;
                           });
    if (!runBounded(impl_->ioc, impl_->socket, done) || ec) {
      impl_->closed = true;
      return std::nullopt;
    }
  }
}

std::vector<std::string> SseStream::rest() {
  std::vector<std::string> out;
  while (std::optional<std::string> e = next()) out.push_back(*e);
  return out;
}

void SseStream::disconnect() {
  beast::error_code ec;
  impl_->socket.shutdown(tcp::socket::shutdown_both, ec);
  impl_->socket.close(ec);
  impl_->closed = true;
}

}  // namespace tpc::test
