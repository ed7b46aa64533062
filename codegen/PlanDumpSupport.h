// Pieces the three plan dumps share, so that text, JSON and dot spell dims, shardings, dtypes
// and byte counts the same way. Internal to codegen: only the PlanDump*.cpp files include it.
//
// Every function here takes a plan that passed LoadedPlan's checks, but still treats the
// fields those checks leave optional (producer, sharding structs, attribute payloads) as
// possibly absent: a plan with a flipped byte can pass the checks with those missing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codegen/plan_generated.h"

namespace tpc::dumpdetail {

// A name from the plan with control bytes spelled \xNN, so one name stays on one line.
std::string printable(std::string_view s);
std::string printable(const flatbuffers::String* s);
// The raw string, empty when absent (JSON escapes on its own).
std::string raw(const flatbuffers::String* s);

// "tokens", "context" or the number.
std::string dimText(int64_t dim);
// "[tokens, 64]".
std::string shapeText(const flatbuffers::Vector<int64_t>* shape);
// "replicated", "split(1,8)", "partial"; an absent struct is the schema default, replicated.
std::string shardingText(const plan::Sharding* sharding);
// "bf16"; an out-of-range value (which the reader rejects) prints as "dtype(N)".
std::string dtypeText(uint8_t dtype);

// "1.50 KiB (1536 B)": the unit a person reads first and the exact count to check against.
std::string bytesText(uint64_t bytes);
// A double that prints back to the same value, in the fewest digits ("1e-05",
// not 1.0000000000000001e-05).
std::string doubleText(double value);
// One attribute's value as text: 5, 1e-05, llama, [1, 2, 3]. Long int lists are cut after
// `maxInts` values with a count of the rest, to keep a table row readable.
std::string attrValueText(const plan::Attr& attr, size_t maxInts = SIZE_MAX);

// arena * batch, or nullopt when it does not fit (only a corrupted plan gets there).
std::optional<uint64_t> bytesAtBatch(int64_t bytesPerToken, int64_t batch);

// The rank programs a dump shows: all of them, or only `rank` (none when it is out of range).
std::vector<const plan::RankProgram*> selectRanks(const plan::Plan& plan,
                                                  std::optional<uint32_t> rank);

bool isCollective(const plan::Step& step);

struct CollectiveCounts {
  int64_t allReduces = 0;
  int64_t allGathers = 0;
  uint64_t bytesPerToken = 0;  // summed payload per token of every collective of the step
};
CollectiveCounts countCollectives(const plan::RankProgram& program);

// A step's operand or result as a name, whichever table it refers to.
std::string operandName(const plan::RankProgram& program, const plan::Ref& ref);
std::string bufferName(const plan::RankProgram& program, uint32_t index);

// The checkpoint file a weight slice comes from.
std::string fileName(const plan::Plan& plan, uint32_t file);

}  // namespace tpc::dumpdetail
