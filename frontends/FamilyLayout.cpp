#include "frontends/FamilyLayout.h"

namespace tpc {

const FamilyLayout& familyLayout(Family family) {
  static const FamilyLayout kDense{};
  // Hugging Face checkpoint names; transformers 5 fuses experts in memory but loads and saves
  // these per-expert names.
  static const FamilyLayout kQwen3Moe{"mlp.gate.weight", "mlp.experts.{e}.gate_proj.weight",
                                      "mlp.experts.{e}.up_proj.weight",
                                      "mlp.experts.{e}.down_proj.weight"};
  static const FamilyLayout kMixtral{
      "block_sparse_moe.gate.weight", "block_sparse_moe.experts.{e}.w1.weight",
      "block_sparse_moe.experts.{e}.w3.weight", "block_sparse_moe.experts.{e}.w2.weight"};
  switch (family) {
    case Family::Qwen3Moe:
      return kQwen3Moe;
    case Family::Mixtral:
      return kMixtral;
    default:
      return kDense;
  }
}

std::string expertTensorName(const char* pattern, int64_t expert) {
  std::string s = pattern;
  size_t at = s.find("{e}");
  if (at != std::string::npos) s.replace(at, 3, std::to_string(expert));
  return s;
}

}  // namespace tpc
