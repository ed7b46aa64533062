#include "tests/http/HttpTestClient.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>

namespace tpc::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

void boundReads(tcp::socket& socket, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool connect(tcp::socket& socket, int port) {
  beast::error_code ec;
  socket.connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)), ec);
  if (ec) return false;
  boundReads(socket, 10);
  return true;
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
  beast::error_code ec;
  if (!connect(socket, port)) return out;
  bhttp::write(socket, makeRequest(method, target, body, headers), ec);
  if (ec) return out;
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(uint64_t{1} << 30);
  bhttp::read(socket, buffer, parser, ec);
  if (ec) return out;
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
  if (!connect(socket, port)) return {};
  boundReads(socket, seconds);
  beast::error_code ec;
  asio::write(socket, asio::buffer(bytes), ec);
  std::string out;
  char buffer[4096];
  while (true) {
    size_t n = socket.read_some(asio::buffer(buffer), ec);
    if (ec || n == 0) break;
    out.append(buffer, n);
  }
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
  if (!connect(impl_->socket, port)) return;
  beast::error_code ec;
  bhttp::write(impl_->socket, makeRequest("POST", target, body.dump(), {}), ec);
  if (ec) return;
  impl_->parser.body_limit(uint64_t{1} << 30);
  // The parser keeps a reference to the callback: it lives in Impl.
  impl_->onChunk = [impl = impl_](uint64_t, beast::string_view data, beast::error_code&) {
    impl->text.append(data.data(), data.size());
    return data.size();
  };
  impl_->parser.on_chunk_body(impl_->onChunk);
  bhttp::read_header(impl_->socket, impl_->buffer, impl_->parser, ec);
  if (ec) return;
  status_ = static_cast<int>(impl_->parser.get().result_int());
  if (status_ != 200) {
    // An error is a plain JSON body, not a stream.
    bhttp::response_parser<bhttp::string_body> whole(std::move(impl_->parser));
    bhttp::read(impl_->socket, impl_->buffer, whole, ec);
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
    beast::error_code ec;
    bhttp::read_some(impl_->socket, impl_->buffer, impl_->parser, ec);
    if (ec) {
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
