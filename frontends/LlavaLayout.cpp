#include "frontends/LlavaLayout.h"

namespace tpc {

std::string LlavaLayout::textName(const std::string& canonical) const {
  if (canonical == "lm_head.weight") return lmHead;
  if (canonical.rfind("model.", 0) == 0) return textModel + canonical.substr(6);
  return canonical;
}

Expected<LlavaLayout> detectLlavaLayout(const TensorLookup& lookup) {
  static const char* const kTowers[] = {"vision_tower.vision_model.", "vision_tower.",
                                        "model.vision_tower.vision_model.", "model.vision_tower."};
  static const char* const kTexts[] = {"language_model.model.", "model.language_model."};
  LlavaLayout layout;
  for (const char* t : kTowers)
    if (lookup(std::string(t) + "embeddings.patch_embedding.weight")) {
      layout.tower = t;
      break;
    }
  for (const char* t : kTexts)
    if (lookup(std::string(t) + "embed_tokens.weight")) {
      layout.textModel = t;
      break;
    }
  if (layout.tower.empty() || layout.textModel.empty())
    return makeError("not a llava checkpoint layout: no ",
                     layout.tower.empty() ? "vision_tower[.vision_model].embeddings."
                                            "patch_embedding.weight (at the top or under model.)"
                                          : "language_model.model.embed_tokens.weight or "
                                            "model.language_model.embed_tokens.weight");
  const bool nested = layout.textModel.rfind("model.", 0) == 0;
  layout.projector = nested ? "model.multi_modal_projector." : "multi_modal_projector.";
  layout.lmHead = nested ? "lm_head.weight" : "language_model.lm_head.weight";
  return layout;
}

}  // namespace tpc
