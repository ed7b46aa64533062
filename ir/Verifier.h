// Structural and shape checks that every graph must pass, before and after each pass:
// definitions precede uses, op arity matches Ops.def, operand and result shapes agree, and
// each parameter's pieces concatenate to its (per-rank) shape.
#pragma once

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

Error verifyGraph(const Graph& graph);

// Per-rank shape of a weight piece: its split dim cut to ceil(size / parts).
Shape localPieceShape(const WeightPiece& piece);

}  // namespace tpc
