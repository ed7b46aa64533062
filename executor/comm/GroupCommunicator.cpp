// One pipeline stage's collectives over the world communicator's point-to-point messages: the
// group's first rank gathers every member's contribution, sums them in rank order (as the
// shared memory communicator does, so a stage gets the bits a world of its size would) and
// sends the result back. A stage has few ranks and its collectives carry the hidden state of
// one iteration, so a gather at one rank costs little next to the layers between them; it
// works unchanged over every transport that can send and receive (shm, Gloo).
#include <algorithm>
#include <vector>

#include "executor/comm/Communicator.h"

namespace tpc {
namespace {

class GroupCommunicator final : public Communicator {
 public:
  GroupCommunicator(Communicator& world, int firstRank, int size)
      : world_(world), first_(firstRank), size_(size), rank_(world.rank() - firstRank) {}

  int rank() const override { return rank_; }
  int world() const override { return size_; }

  Error allReduceSum(float* data, size_t count) override {
    if (size_ == 1 || count == 0) return Error::success();
    if (rank_ != 0) {
      if (Error e = world_.send(data, count, first_)) return e;
      return world_.recv(data, count, first_);
    }
    scratch_.resize(count);
    for (int r = 1; r < size_; ++r) {
      if (Error e = world_.recv(scratch_.data(), count, first_ + r)) return e;
      for (size_t i = 0; i < count; ++i) data[i] += scratch_[i];
    }
    for (int r = 1; r < size_; ++r)
      if (Error e = world_.send(data, count, first_ + r)) return e;
    return Error::success();
  }

  Error allGather(const float* in, size_t countPerRank, float* out) override {
    const size_t total = countPerRank * static_cast<size_t>(size_);
    if (countPerRank == 0) return Error::success();
    float* mine = out + static_cast<size_t>(rank_) * countPerRank;
    if (in != mine) std::copy(in, in + countPerRank, mine);
    if (size_ == 1) return Error::success();
    if (rank_ != 0) {
      if (Error e = world_.send(mine, countPerRank, first_)) return e;
      return world_.recv(out, total, first_);
    }
    for (int r = 1; r < size_; ++r)
      if (Error e =
              world_.recv(out + static_cast<size_t>(r) * countPerRank, countPerRank, first_ + r))
        return e;
    for (int r = 1; r < size_; ++r)
      if (Error e = world_.send(out, total, first_ + r)) return e;
    return Error::success();
  }

  Error barrier() override {
    float token = 0.0f;
    return allReduceSum(&token, 1);
  }

  Error broadcast(std::string& bytes, int root) override { return world_.broadcast(bytes, root); }
  Error send(const float* data, size_t count, int peer) override {
    return world_.send(data, count, peer);
  }
  Error recv(float* data, size_t count, int peer) override {
    return world_.recv(data, count, peer);
  }
  void abort() override { world_.abort(); }

 private:
  Communicator& world_;
  const int first_, size_, rank_;
  std::vector<float> scratch_;
};

}  // namespace

std::unique_ptr<Communicator> createGroupCommunicator(Communicator& world, int firstRank,
                                                      int size) {
  return std::make_unique<GroupCommunicator>(world, firstRank, size);
}

}  // namespace tpc
