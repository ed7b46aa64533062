#include "executor/SelectRowsAlias.h"

namespace tpc {

bool selectRowsMayAlias(const plan::RankProgram& prog, uint32_t selectStep) {
  const plan::Step& select = *prog.steps()->Get(selectStep);
  const uint32_t from = select.results()->Get(0), to = select.operands()->Get(0)->index();
  const plan::Buffer& target = *prog.buffers()->Get(to);
  // Arena offsets scale with the step's rows alike, so bytes that overlap for one row overlap
  // for any number.
  const int64_t begin = target.arena_offset(), end = begin + target.bytes_per_token();
  uint32_t lastReader = selectStep;
  for (uint32_t i = selectStep + 1; i < prog.steps()->size(); ++i)
    for (const plan::Ref* r : *prog.steps()->Get(i)->operands())
      if (r->kind() == plan::RefKind::Buffer && r->index() == from) lastReader = i;
  for (uint32_t i = selectStep + 1; i <= lastReader; ++i)
    for (uint32_t b : *prog.steps()->Get(i)->results()) {
      const plan::Buffer& written = *prog.buffers()->Get(b);
      const int64_t writtenBegin = written.arena_offset();
      const int64_t writtenEnd = writtenBegin + written.bytes_per_token();
      if (writtenBegin < end && begin < writtenEnd) return false;
    }
  return true;
}

}  // namespace tpc
