// Damaged plans: every way a plan file can be cut, flipped or mislabelled gives a one-line
// error or a plan that all three dumps can still print. CI runs this under ASan and UBSan, so
// any read outside the buffer, in the reader or in a dumper, fails here.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "codegen/PlanDump.h"
#include "codegen/PlanFormat.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

std::vector<uint8_t> validPlanBytes(int64_t world = 2) {
  Expected<LoadedPlan> plan = test::compileSpec(test::presetSpec(Family::Llama), world);
  if (!plan) throw std::runtime_error(plan.errorMessage());
  return plan->bytes();
}

// The message of a plan that must not load: present, and on one line.
std::string loadError(std::vector<uint8_t> bytes) {
  Expected<LoadedPlan> plan = LoadedPlan::fromBytes(std::move(bytes), "bad.fb");
  if (plan) {
    ADD_FAILURE() << "a damaged plan loaded";
    return {};
  }
  std::string message = plan.errorMessage();
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_EQ(message.rfind("bad.fb: ", 0), 0u) << "names the file: " << message;
  return message;
}

// Table fields of a verified plan, written in place: the generated code has no mutators, but
// every table is a flatbuffers::Table underneath. Returns false when the field is absent.
template <class T, class Table>
bool setField(const Table* table, flatbuffers::voffset_t field, T value) {
  auto* t = reinterpret_cast<flatbuffers::Table*>(const_cast<Table*>(table));
  return t->SetField<T>(field, value, T{});
}

TEST(BadPlan, EveryTruncationIsAOneLineError) {
  std::vector<uint8_t> bytes = validPlanBytes();
  for (size_t k = 0; k < 16; ++k) {
    SCOPED_TRACE("cut at " + std::to_string(k) + "/16");
    std::vector<uint8_t> cut(bytes.begin(),
                             bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() * k / 16));
    loadError(std::move(cut));
  }
}

TEST(BadPlan, TooShortFiles) {
  EXPECT_NE(loadError({}).find("0 bytes"), std::string::npos);
  EXPECT_NE(loadError({1, 2, 3, 4, 5, 6, 7}).find("7 bytes"), std::string::npos);
}

TEST(BadPlan, WrongFileIdentifier) {
  std::vector<uint8_t> bytes = validPlanBytes();
  std::memcpy(bytes.data() + 4, "TPCQ", 4);
  std::string message = loadError(bytes);
  EXPECT_NE(message.find("\"TPCP\""), std::string::npos) << message;
  EXPECT_NE(message.find("\"TPCQ\""), std::string::npos) << message;
  bytes[4] = '\n';
  EXPECT_NE(loadError(bytes).find("\"?PCQ\""), std::string::npos);
}

TEST(BadPlan, NewerSchemaVersion) {
  std::vector<uint8_t> bytes = validPlanBytes();
  ASSERT_TRUE(setField<uint32_t>(plan::GetPlan(bytes.data()), plan::Plan::VT_SCHEMA_VERSION,
                                 kPlanSchemaVersion + 1));
  std::string message = loadError(bytes);
  EXPECT_NE(message.find("newer"), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(kPlanSchemaVersion + 1)), std::string::npos) << message;
}

// A name with a control byte, in a plan the semantic checks refuse for that very buffer: the
// message quotes the name and must still be one line.
TEST(BadPlan, ControlBytesInNamesStayOnOneLine) {
  std::vector<uint8_t> bytes = validPlanBytes();
  const plan::RankProgram* rank = plan::GetPlan(bytes.data())->ranks()->Get(0);
  const plan::Buffer* victim = nullptr;
  for (const plan::Buffer* b : *rank->buffers())
    if (b->arena_offset() > 0 && b->name()->size() > 1) victim = b;
  ASSERT_NE(victim, nullptr);
  auto nameAt =
      static_cast<size_t>(reinterpret_cast<const uint8_t*>(victim->name()->c_str()) - bytes.data());
  bytes[nameAt + 1] = '\n';
  ASSERT_TRUE(setField<int64_t>(victim, plan::Buffer::VT_ARENA_OFFSET, -8));
  std::string message = loadError(bytes);
  EXPECT_NE(message.find("\\x0a"), std::string::npos) << message;
}

// Payloads so large that summing them over a program would overflow, which the summary and the
// dumps do: the reader refuses them first.
TEST(BadPlan, CollectivePayloadsOutOfRange) {
  for (int64_t comm : {int64_t{-1}, int64_t{1} << 62}) {
    std::vector<uint8_t> bytes = validPlanBytes();
    const plan::RankProgram* rank = plan::GetPlan(bytes.data())->ranks()->Get(1);
    for (const plan::Step* s : *rank->steps())
      if (s->comm_bytes_per_token() > 0) {
        ASSERT_TRUE(setField<int64_t>(s, plan::Step::VT_COMM_BYTES_PER_TOKEN, comm));
      }
    std::string message = loadError(bytes);
    EXPECT_NE(message.find("rank 1: "), std::string::npos) << message;
    EXPECT_NE(message.find("bytes per token"), std::string::npos) << message;
  }
}

// Points a [long] vector field of `table` 4 bytes further on, at a 1-element vector holding
// `value` written over the old vector's own bytes: every offset and length still verifies, but
// the element sits 4 bytes off its 8-byte alignment, which the FlatBuffers 2.0 verifier misses.
template <class Table>
void misalignLongs(std::vector<uint8_t>& bytes, const Table* table, flatbuffers::voffset_t field,
                   int64_t value) {
  const uint8_t* at = reinterpret_cast<const flatbuffers::Table*>(table)->GetAddressOf(field);
  ASSERT_NE(at, nullptr);
  auto fieldPos = static_cast<size_t>(at - bytes.data());
  uint32_t offset;
  std::memcpy(&offset, at, 4);
  size_t vectorPos = fieldPos + offset;
  // The moved length and element end 16 bytes in: inside a vector of at least two elements.
  ASSERT_GE(flatbuffers::ReadScalar<uint32_t>(bytes.data() + vectorPos), 2u);
  uint32_t moved = offset + 4, one = 1;
  std::memcpy(bytes.data() + fieldPos, &moved, 4);
  std::memcpy(bytes.data() + vectorPos + 4, &one, 4);
  std::memcpy(bytes.data() + vectorPos + 8, &value, 8);
}

TEST(BadPlan, MisalignedLongVectors) {
  {
    std::vector<uint8_t> bytes = validPlanBytes();
    const plan::Buffer* b = nullptr;
    for (const plan::Buffer* candidate : *plan::GetPlan(bytes.data())->ranks()->Get(0)->buffers())
      if (!b && candidate->shape()->size() >= 2) b = candidate;
    ASSERT_NE(b, nullptr);
    misalignLongs(bytes, b, plan::Buffer::VT_SHAPE, 16);
    std::string message = loadError(bytes);
    EXPECT_NE(message.find("misaligned shape"), std::string::npos) << message;
  }
  {
    std::vector<uint8_t> bytes = validPlanBytes();
    const plan::RankProgram* rank = plan::GetPlan(bytes.data())->ranks()->Get(1);
    const plan::Attr* sizes = nullptr;
    for (const plan::Step* s : *rank->steps())
      if (s->op()->string_view() == "split") sizes = s->attrs()->Get(0);
    ASSERT_NE(sizes, nullptr);
    ASSERT_EQ(sizes->key()->string_view(), "sizes");
    misalignLongs(bytes, sizes, plan::Attr::VT_INTS, 64);
    std::string message = loadError(bytes);
    EXPECT_NE(message.find("rank 1: a split step's attribute sizes has misaligned values"),
              std::string::npos)
        << message;
  }
}

// What a dump of any loadable plan must give: output, valid JSON, and a dot graph.
void dumpAll(const plan::Plan& p) {
  for (std::optional<uint32_t> rank :
       {std::optional<uint32_t>(), std::optional<uint32_t>(p.world() - 1)}) {
    EXPECT_FALSE(dumpPlanText(p, rank).empty());
    nlohmann::json doc =
        nlohmann::json::parse(dumpPlanJson(p, rank), nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << "the JSON dump of a damaged plan must still parse";
    EXPECT_EQ(dumpPlanDot(p, rank).rfind("digraph", 0), 0u);
  }
}

TEST(BadPlan, RandomByteFlipsGiveAnErrorOrADumpablePlan) {
  const std::vector<uint8_t> valid = validPlanBytes();
  std::mt19937 random(20261123);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(random); };
  int loaded = 0, dumped = 0, refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bytes = valid;
    switch (pick(3)) {
      case 0:  // one byte anywhere, to anything
        bytes[pick(bytes.size())] = static_cast<uint8_t>(pick(256));
        break;
      case 1:  // one bit: offsets and sizes a little off, the damage verification misses most
        bytes[pick(bytes.size())] ^= static_cast<uint8_t>(1u << pick(8));
        break;
      default:  // several bytes at once
        for (size_t n = 2 + pick(6); n > 0; --n)
          bytes[pick(bytes.size())] = static_cast<uint8_t>(pick(256));
        break;
    }
    Expected<LoadedPlan> plan = LoadedPlan::fromBytes(std::move(bytes), "flipped.fb");
    if (!plan) {
      ++refused;
      ASSERT_EQ(plan.errorMessage().find('\n'), std::string::npos)
          << "trial " << trial << ": " << plan.errorMessage();
      continue;
    }
    // Dumping every loadable plan would take most of the test's time; every 10th still covers
    // each kind of damage that gets through.
    if (loaded++ % 10 == 0) {
      SCOPED_TRACE("trial " + std::to_string(trial));
      dumpAll(plan->plan());
      ++dumped;
    }
  }
  // Both outcomes happen, or the test would check nothing.
  EXPECT_GT(refused, 100);
  EXPECT_GT(dumped, 10);
  RecordProperty("loaded", loaded);
  RecordProperty("refused", refused);
}

}  // namespace
}  // namespace tpc
