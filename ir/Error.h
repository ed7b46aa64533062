// Recoverable failures travel as values: an Error carries a one-line message that names the
// thing at fault (file, tensor, flag, rank). Only tools/* mains print them and exit.
#pragma once

#include <cassert>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace tpc {

class [[nodiscard]] Error {
 public:
  static Error success() { return Error(); }
  static Error failure(std::string message) {
    Error e;
    e.message_ = std::move(message);
    return e;
  }
  // True when this is a failure, so `if (Error e = f()) return e;` reads naturally.
  explicit operator bool() const { return message_.has_value(); }
  const std::string& message() const {
    assert(message_ && "message() on success");
    return *message_;
  }
  // Prefixes context ("in model.safetensors: ") to a failure; success stays success.
  Error withContext(const std::string& prefix) && {
    if (message_) message_ = prefix + *message_;
    return std::move(*this);
  }

 private:
  std::optional<std::string> message_;
};

// Concatenates its arguments with operator<< into one failure message.
template <class... Parts>
Error makeError(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return Error::failure(os.str());
}

template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : state_(std::move(value)) {}
  Expected(Error error) : state_(std::move(error)) { assert(std::get<Error>(state_)); }

  explicit operator bool() const { return std::holds_alternative<T>(state_); }
  T& operator*() { return std::get<T>(state_); }
  const T& operator*() const { return std::get<T>(state_); }
  T* operator->() { return &std::get<T>(state_); }
  const T* operator->() const { return &std::get<T>(state_); }
  // Moves the failure out; only valid when !*this.
  Error takeError() { return std::move(std::get<Error>(state_)); }
  const std::string& errorMessage() const { return std::get<Error>(state_).message(); }

 private:
  std::variant<T, Error> state_;
};

}  // namespace tpc
