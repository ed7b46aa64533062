// Reads the text printGraph writes. Used by golden tests and by `tpc compile` on .tpcir input.
#pragma once

#include <string>
#include <string_view>

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

// `source` names the text in errors ("model.tpcir:12: expected ')'").
Expected<Graph> parseGraph(std::string_view text, const std::string& source);

}  // namespace tpc
