#include "executor/comm/GlooPeerSockets.h"

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gloo/transport/tcp/address.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace tpc {
namespace {

using gloo::transport::tcp::Address;

// Address::str() of a socket's local or remote end; empty for anything but an IP socket.
// (Gloo's own fromSockName throws on a non-socket, so the probing is done here.)
std::string endpoint(int fd, bool local) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  int rc = local ? getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                 : getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0 || (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)) return {};
  return Address(reinterpret_cast<sockaddr*>(&addr), len).str();
}

// The address rank `owner` published for its pair with `peer`, or empty.
std::string publishedAddress(const std::map<int, std::vector<char>>& published, int owner, int peer,
                             size_t addressBytes) {
  auto it = published.find(owner);
  if (it == published.end()) return {};
  size_t index = static_cast<size_t>(peer < owner ? peer : peer - 1);
  const std::vector<char>& all = it->second;
  if ((index + 1) * addressBytes > all.size()) return {};
  std::vector<char> bytes(all.begin() + index * addressBytes,
                          all.begin() + (index + 1) * addressBytes);
  return Address(bytes).str();
}

std::vector<int> openDescriptors() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return fds;
  int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    if (!std::isdigit(static_cast<unsigned char>(entry->d_name[0]))) continue;
    int fd = std::atoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

}  // namespace

GlooPeerSockets GlooPeerSockets::discover(int rank, int world,
                                          const std::map<int, std::vector<char>>& published) {
  GlooPeerSockets result;
  size_t addressBytes = Address().bytes().size();
  // A pair is either the side that accepted (its local end is the address this rank
  // published) or the side that connected (its remote end is what the peer published).
  std::map<std::string, int> ownListeners, peerListeners;
  for (int peer = 0; peer < world; ++peer) {
    if (peer == rank) continue;
    std::string own = publishedAddress(published, rank, peer, addressBytes);
    std::string theirs = publishedAddress(published, peer, rank, addressBytes);
    if (!own.empty()) ownListeners[own] = peer;
    if (!theirs.empty()) peerListeners[theirs] = peer;
    // Gloo's messages name a peer by the address it published or by its end of the socket.
    if (!theirs.empty()) result.addresses_.push_back({theirs, peer});
  }
  for (int fd : openDescriptors()) {
    std::string local = endpoint(fd, true);
    std::string remote = endpoint(fd, false);
    if (local.empty() || remote.empty()) continue;
    auto accepted = ownListeners.find(local);
    auto connected = peerListeners.find(remote);
    int peer = accepted != ownListeners.end()     ? accepted->second
               : connected != peerListeners.end() ? connected->second
                                                  : -1;
    if (peer < 0) continue;
    result.entries_.push_back({peer, fd, local, remote});
    result.addresses_.push_back({remote, peer});
  }
  return result;
}

std::vector<int> GlooPeerSockets::peersNamedIn(const std::string& message) const {
  std::vector<int> peers;
  for (const auto& [address, peer] : addresses_) {
    // "[127.0.0.1]:4271" must not match inside "[127.0.0.1]:42714".
    for (size_t at = message.find(address); at != std::string::npos;
         at = message.find(address, at + 1)) {
      size_t after = at + address.size();
      if (after < message.size() && std::isdigit(static_cast<unsigned char>(message[after]))) {
        continue;
      }
      if (std::find(peers.begin(), peers.end(), peer) == peers.end()) peers.push_back(peer);
      break;
    }
  }
  std::sort(peers.begin(), peers.end());
  return peers;
}

void GlooPeerSockets::shutdownAll() const {
  for (const Entry& e : entries_) {
    // Gloo closes a failed pair's descriptor, and the number may since belong to another
    // socket; only shut down what still is the same connection.
    if (endpoint(e.fd, true) == e.local && endpoint(e.fd, false) == e.remote) {
      ::shutdown(e.fd, SHUT_RDWR);
    }
  }
}

}  // namespace tpc
