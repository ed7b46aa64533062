// Client of the rendezvous store (StoreServer). It is also a gloo::rendezvous::Store, so Gloo
// can rendezvous through it; the Gloo-facing methods throw, the others return Errors.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "executor/comm/Socket.h"
#include "ir/Error.h"

namespace tpc {

class StoreClient : public gloo::rendezvous::Store {
 public:
  // Connects, retrying until `timeout` because the server may not be up yet. Every key is
  // prefixed with `prefix`; `timeout` also bounds each request and each wait.
  static Expected<std::unique_ptr<StoreClient>> connect(const std::string& host, int port,
                                                        std::chrono::milliseconds timeout,
                                                        std::string prefix = "");

  Error trySet(const std::string& key, const std::vector<char>& value);
  // The value, or nullopt when the key is not there yet.
  Expected<std::optional<std::vector<char>>> tryGet(const std::string& key);
  // Waits until every key is present; the error names the first missing key.
  Error tryWait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);

  // gloo::rendezvous::Store: the same operations, failing with gloo::IoException. get() waits
  // for the key first, as Gloo's own stores do.
  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  StoreClient(UniqueFd fd, std::string where, std::chrono::milliseconds timeout,
              std::string prefix);
  // One request and its response; status and value come back through the out parameters.
  Error roundTrip(uint8_t op, const std::string& key, const std::vector<char>* value,
                  uint8_t& status, std::vector<char>& reply);

  std::mutex mutex_;  // one request at a time on the connection
  UniqueFd fd_;
  std::string where_;
  std::chrono::milliseconds timeout_;
  std::string prefix_;
};

}  // namespace tpc
