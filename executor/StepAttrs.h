// Reading a plan step's attributes, shared by the backends so both interpret a plan alike.
#pragma once

#include <string>
#include <string_view>

#include "codegen/PlanFormat.h"
#include "kernels/cpu/Kernels.h"

namespace tpc {

inline int64_t stepInt(const plan::Step& s, std::string_view key, int64_t fallback = 0) {
  return planIntAttr(s.attrs(), key, fallback);
}

inline double stepFloat(const plan::Step& s, std::string_view key, double fallback = 0.0) {
  const plan::Attr* a = findPlanAttr(s.attrs(), key);
  if (!a) return fallback;
  return a->kind() == plan::AttrKind::Float ? a->float_value()
                                            : static_cast<double>(a->int_value());
}

inline std::string stepString(const plan::Step& s, std::string_view key,
                              const std::string& fallback = "") {
  const plan::Attr* a = findPlanAttr(s.attrs(), key);
  return a && a->kind() == plan::AttrKind::String && a->string_value() ? a->string_value()->str()
                                                                       : fallback;
}

inline cpu::RopeParams stepRopeParams(const plan::Step& s) {
  cpu::RopeParams p;
  p.type = stepString(s, "rope_type", "default");
  p.theta = stepFloat(s, "rope_theta", 10000.0);
  p.headDim = stepInt(s, "head_dim");
  p.factor = stepFloat(s, "rope_factor", 1.0);
  p.lowFreqFactor = stepFloat(s, "rope_low_freq_factor", 1.0);
  p.highFreqFactor = stepFloat(s, "rope_high_freq_factor", 4.0);
  p.originalMaxPosition = stepInt(s, "rope_original_max_position");
  p.betaFast = stepFloat(s, "rope_beta_fast", 32.0);
  p.betaSlow = stepFloat(s, "rope_beta_slow", 1.0);
  p.attentionFactor = stepFloat(s, "rope_attention_factor", 0.0);
  return p;
}

// Elements per token of a buffer shape (the symbolic dims, negative, count as one).
inline int64_t elementsPerToken(const flatbuffers::Vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d >= 0) n *= d;
  return n;
}

}  // namespace tpc
