// Where a LLaVA checkpoint keeps its three parts. Real checkpoints use three layouts:
//   the Hub's llava-hf:        vision_tower.vision_model.X, multi_modal_projector.X,
//                              language_model.model.X, language_model.lm_head.weight
//   transformers 5 save_pretrained: vision_tower.X (no vision_model.), multi_modal_projector.X,
//                              language_model.model.X, language_model.lm_head.weight
//   nested (LlavaModel under model.): model.vision_tower.vision_model.X,
//                              model.multi_modal_projector.X, model.language_model.X,
//                              lm_head.weight
// The builders speak in canonical names ("model.layers.0...", "lm_head.weight" for the text
// model; "embeddings.patch_embedding.weight" for the tower; "linear_1.weight" for the projector)
// and the layout turns them into the checkpoint's.
#pragma once

#include <string>

#include "frontends/GraphBuilder.h"

namespace tpc {

struct LlavaLayout {
  std::string tower;      // prefix of the CLIP vision model's own names
  std::string projector;  // prefix of linear_1 / linear_2
  std::string textModel;  // replaces "model." of the text model's names
  std::string lmHead;     // the lm_head weight's full name

  // A canonical text-model name in this checkpoint.
  std::string textName(const std::string& canonical) const;
};

// The layout whose patch embedding and token embedding the checkpoint holds; the error lists
// what was looked for.
Expected<LlavaLayout> detectLlavaLayout(const TensorLookup& lookup);

}  // namespace tpc
