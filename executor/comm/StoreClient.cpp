#include "executor/comm/StoreClient.h"

#include <gloo/common/error.h>

#include <algorithm>
#include <thread>

#include "executor/comm/StoreProtocol.h"

namespace tpc {

Expected<std::unique_ptr<StoreClient>> StoreClient::connect(const std::string& host, int port,
                                                            std::chrono::milliseconds timeout,
                                                            std::string prefix) {
  auto fd = connectTcp(host, port, deadlineAfter(timeout));
  if (!fd) return fd.takeError().withContext("store: ");
  std::string where = "the store at " + host + ":" + std::to_string(port);
  return std::unique_ptr<StoreClient>(
      new StoreClient(std::move(*fd), std::move(where), timeout, std::move(prefix)));
}

StoreClient::StoreClient(UniqueFd fd, std::string where, std::chrono::milliseconds timeout,
                         std::string prefix)
    : fd_(std::move(fd)), where_(std::move(where)), timeout_(timeout), prefix_(std::move(prefix)) {}

Error StoreClient::roundTrip(uint8_t op, const std::string& key, const std::vector<char>* value,
                             uint8_t& status, std::vector<char>& reply) {
  std::string fullKey = prefix_ + key;
  size_t valueSize = value ? value->size() : 0;
  if (fullKey.empty() || fullKey.size() > store::kMaxKeyBytes) {
    return makeError("store: key '", key, "' is empty or longer than ", store::kMaxKeyBytes,
                     " bytes");
  }
  if (valueSize > store::kMaxValueBytes) {
    return makeError("store: value of key '", key, "' is ", valueSize, " bytes, over the cap of ",
                     store::kMaxValueBytes);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!fd_.valid()) return makeError("store: connection to ", where_, " was lost earlier");
  Deadline deadline = deadlineAfter(timeout_);
  std::string header =
      store::encodeRequestHeader(static_cast<store::Op>(op), fullKey.size(), valueSize);
  Error e = sendAll(fd_.get(), header.data(), header.size(), deadline, where_);
  if (!e) e = sendAll(fd_.get(), fullKey.data(), fullKey.size(), deadline, where_);
  if (!e && valueSize) e = sendAll(fd_.get(), value->data(), valueSize, deadline, where_);
  char response[store::kResponseHeaderBytes];
  if (!e) e = recvAll(fd_.get(), response, sizeof(response), deadline, where_);
  if (!e) {
    status = static_cast<uint8_t>(response[0]);
    size_t length = store::getU32(response + 1);
    if (length > store::kMaxValueBytes) {
      e = makeError(where_, " sent a reply of ", length, " bytes, over the cap");
    } else {
      reply.resize(length);
      if (length) e = recvAll(fd_.get(), reply.data(), length, deadline, where_);
    }
  }
  if (!e && status == static_cast<uint8_t>(store::Status::kBadRequest)) {
    e = makeError(where_, " refused the request for key '", key,
                  "': ", std::string(reply.begin(), reply.end()));
  }
  if (e) {
    // A half-read reply leaves the stream out of step; nothing after it could be trusted.
    fd_.reset();
    return std::move(e).withContext("store: ");
  }
  return Error::success();
}

Error StoreClient::trySet(const std::string& key, const std::vector<char>& value) {
  uint8_t status = 0;
  std::vector<char> reply;
  return roundTrip(static_cast<uint8_t>(store::Op::kSet), key, &value, status, reply);
}

Expected<std::optional<std::vector<char>>> StoreClient::tryGet(const std::string& key) {
  uint8_t status = 0;
  std::vector<char> reply;
  if (Error e = roundTrip(static_cast<uint8_t>(store::Op::kGet), key, nullptr, status, reply)) {
    return e;
  }
  if (status == static_cast<uint8_t>(store::Status::kNotFound)) {
    return std::optional<std::vector<char>>();
  }
  return std::optional<std::vector<char>>(std::move(reply));
}

Error StoreClient::tryWait(const std::vector<std::string>& keys,
                           std::chrono::milliseconds timeout) {
  Deadline deadline = deadlineAfter(timeout);
  // Polling keeps the server stateless; rendezvous waits are short and rare.
  auto pause = std::chrono::milliseconds(1);
  for (const std::string& key : keys) {
    for (;;) {
      auto value = tryGet(key);
      if (!value) return value.takeError();
      if (value->has_value()) break;
      if (std::chrono::steady_clock::now() + pause > deadline) {
        return makeError("store: timed out after ", timeout.count(), " ms waiting for key '", key,
                         "' from ", where_);
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  return Error::success();
}

void StoreClient::set(const std::string& key, const std::vector<char>& data) {
  if (Error e = trySet(key, data)) throw gloo::IoException(e.message());
}

std::vector<char> StoreClient::get(const std::string& key) {
  if (Error e = tryWait({key}, timeout_)) throw gloo::IoException(e.message());
  auto value = tryGet(key);
  if (!value) throw gloo::IoException(value.errorMessage());
  if (!value->has_value()) throw gloo::IoException("store: key '" + key + "' vanished");
  return std::move(**value);
}

void StoreClient::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void StoreClient::wait(const std::vector<std::string>& keys,
                       const std::chrono::milliseconds& timeout) {
  // Our own timeout bounds Gloo's too; Gloo's zero means "none", which we never allow.
  auto bound = timeout.count() > 0 ? std::min(timeout, timeout_) : timeout_;
  if (Error e = tryWait(keys, bound)) throw gloo::IoException(e.message());
}

}  // namespace tpc
