// Which TCP socket of this process carries Gloo's connection to which peer rank. Gloo keeps
// its pairs' sockets private, yet two things need them: abort() must wake a thread blocked in
// a collective (shutting the socket down is the only thing Gloo's event loop reacts to), and
// an error must name the peer, while Gloo's messages carry only its address.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tpc {

class GlooPeerSockets {
 public:
  // `published` holds what each rank stored under its rank number during Gloo's full-mesh
  // rendezvous: the listening address of each of its pairs, in peer order. Matches them
  // against this process's sockets; peers it cannot match are simply left out.
  static GlooPeerSockets discover(int rank, int world,
                                  const std::map<int, std::vector<char>>& published);

  size_t size() const { return entries_.size(); }
  // Peer ranks whose connection address appears in a Gloo error message.
  std::vector<int> peersNamedIn(const std::string& message) const;
  // Shuts every still-matching socket down; the peers and Gloo's own loop see end-of-stream.
  void shutdownAll() const;

 private:
  struct Entry {
    int peer;
    int fd;
    std::string local;  // as Gloo's Address::str() prints them
    std::string remote;
  };
  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, int>> addresses_;  // any address of a peer -> its rank
};

}  // namespace tpc
