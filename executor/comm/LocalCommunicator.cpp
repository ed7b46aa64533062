// The world-of-one communicator: every rank's contribution is its own.
#include <atomic>
#include <cstring>
#include <string>

#include "executor/comm/Communicator.h"

namespace tpc {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }

  Error allReduceSum(float* data, size_t count) override {
    return aborted_ ? abortedError("allReduceSum") : Error::success();
  }

  Error allGather(const float* in, size_t countPerRank, float* out) override {
    if (aborted_) return abortedError("allGather");
    // memmove: `in` may be `out` itself (the in-place form).
    if (countPerRank != 0 && in != out) std::memmove(out, in, countPerRank * sizeof(float));
    return Error::success();
  }

  Error barrier() override { return aborted_ ? abortedError("barrier") : Error::success(); }

  // The root's bytes are already everyone's.
  Error broadcast(std::string&, int) override {
    return aborted_ ? abortedError("broadcast") : Error::success();
  }

  void abort() override { aborted_ = true; }

 private:
  static Error abortedError(const char* op) {
    return makeError("rank 0: ", op, " after the communicator was aborted");
  }
  std::atomic<bool> aborted_{false};
};

}  // namespace

std::unique_ptr<Communicator> createLocalCommunicator() {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace tpc
