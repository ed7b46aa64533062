// Constants and small conversions shared by the plan writer, reader and dumps.
#pragma once

#include <cstdint>
#include <string_view>

#include "codegen/plan_generated.h"
#include "ir/Graph.h"

namespace tpc {

// Version 1: the first plan format. A reader refuses plans written by a newer schema.
constexpr uint32_t kPlanSchemaVersion = 2;
constexpr const char* kPlanProducer = "tpc 0.1.0";

// How symbolic dims are stored in plan shapes.
constexpr int64_t kTokensDim = -1;
constexpr int64_t kContextDim = -2;

inline int64_t encodeDim(const Dim& d) {
  switch (d.kind) {
    case Dim::Kind::Tokens:
      return kTokensDim;
    case Dim::Kind::Context:
      return kContextDim;
    default:
      return d.size;
  }
}

inline plan::Sharding encodeSharding(const Sharding& s) {
  return plan::Sharding(static_cast<plan::ShardingKind>(s.kind), static_cast<int8_t>(s.dim),
                        s.parts);
}

using PlanAttrs = flatbuffers::Vector<flatbuffers::Offset<plan::Attr>>;

// The attribute named `key` of a plan's model or of a step; nullptr when absent.
inline const plan::Attr* findPlanAttr(const PlanAttrs* attrs, std::string_view key) {
  if (attrs)
    for (const plan::Attr* a : *attrs)
      if (a->key()->string_view() == key) return a;
  return nullptr;
}

inline int64_t planIntAttr(const PlanAttrs* attrs, std::string_view key, int64_t fallback = 0) {
  const plan::Attr* a = findPlanAttr(attrs, key);
  return a && a->kind() == plan::AttrKind::Int ? a->int_value() : fallback;
}

}  // namespace tpc
