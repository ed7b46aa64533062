// How a value is laid out across the world (DESIGN.md vocabulary): Replicated, Split(dim) or
// Partial. A Split has `parts` distinct pieces; when parts < world each piece is held by
// world/parts ranks (KV replication), rank r holding piece r / (world / parts).
#pragma once

#include <cstdint>
#include <string>

namespace tpc {

struct Sharding {
  enum class Kind : uint8_t { Replicated, Split, Partial };
  Kind kind = Kind::Replicated;
  int dim = 0;        // Split only; a non-negative dim index
  int64_t parts = 1;  // Split only

  static Sharding replicated() { return {}; }
  static Sharding split(int dim, int64_t parts) { return {Kind::Split, dim, parts}; }
  static Sharding partial() { return {Kind::Partial, 0, 1}; }

  bool isReplicated() const { return kind == Kind::Replicated; }
  bool isSplit() const { return kind == Kind::Split; }
  bool isPartial() const { return kind == Kind::Partial; }
  bool operator==(const Sharding& o) const {
    return kind == o.kind && (kind != Kind::Split || (dim == o.dim && parts == o.parts));
  }
  bool operator!=(const Sharding& o) const { return !(*this == o); }

  // Which piece rank `rank` of `world` holds (Split only).
  int64_t pieceOf(int64_t rank, int64_t world) const { return rank / (world / parts); }

  // "replicated", "split(1,8)", "partial".
  std::string str() const;
};

// Rows of a dim of `size` that piece `piece` of `parts` holds: each piece gets
// ceil(size / parts) rows; the last ones may hold fewer real rows (vocab padding) or none.
struct SliceRange {
  int64_t start = 0;   // first real row
  int64_t length = 0;  // real rows (the rest of the local extent is zero padding)
  int64_t extent = 0;  // local rows including padding
};
SliceRange sliceOf(int64_t size, int64_t parts, int64_t piece);

}  // namespace tpc
