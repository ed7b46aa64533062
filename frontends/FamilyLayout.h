// Per-family facts the generic decoder builder needs: which optional pieces a layer has and the
// checkpoint names of the MoE tensors. Adding a Llama-like family means adding a row here.
#pragma once

#include <string>

#include "frontends/ModelSpec.h"

namespace tpc {

struct FamilyLayout {
  // MoE tensor names under "model.layers.{i}.", with {e} standing for the expert index.
  const char* routerGate = "";
  const char* expertGate = "";
  const char* expertUp = "";
  const char* expertDown = "";
};

const FamilyLayout& familyLayout(Family family);
// "mlp.experts.{e}.gate_proj.weight" with {e} = 3 → "mlp.experts.3.gate_proj.weight".
std::string expertTensorName(const char* pattern, int64_t expert);

}  // namespace tpc
