// The CUDA backend's paged steps against the CPU backend running each sequence alone in the
// slot form (the truth): three prompts over shuffled blocks of the pool, a step mixing whole
// prompts with the first chunk of another, then that prompt's second chunk beside decode
// tokens (its prefix read from the pool), then decode-only steps (a CUDA Graph of a padded
// bucket). Only the sampling rows come back; greedy and sampled picks on the device agree with
// the host's on the same logits. Inputs are the reference's greedy tokens, so the
// two sides see the same sequences. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

#include "codegen/Lowering.h"
#include "codegen/PlanFormat.h"
#include "executor/Backend.h"
#include "frontends/GraphBuilder.h"
#include "kernels/cpu/Kernels.h"
#include "passes/Pass.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

bool haveGpu() { return haveCudaBackend() && cudaDeviceCount() > 0; }

// Random weights scaled like an initialiser; norm weights near 1.
std::function<Expected<std::vector<float>>(uint32_t)> weightsFor(const LoadedPlan& plan) {
  return [&plan](uint32_t w) -> Expected<std::vector<float>> {
    const plan::Weight& weight = *plan.plan().ranks()->Get(0)->weights()->Get(w);
    int64_t count = 1, fanIn = 1;
    for (uint32_t d = 0; d < weight.shape()->size(); ++d) {
      count *= weight.shape()->Get(d);
      if (d > 0) fanIn *= weight.shape()->Get(d);
    }
    std::mt19937 rng(1000 + w);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> values(static_cast<size_t>(count));
    const bool vector = weight.shape()->size() == 1;
    const float scale = 1.0f / std::sqrt(static_cast<float>(fanIn));
    for (float& v : values) v = vector ? 1.0f + 0.1f * u(rng) : scale * u(rng);
    return values;
  };
}

// As test::compileSpec at world 1, with activations in `compute` (compileSpec's are bf16).
Expected<LoadedPlan> compileWithCompute(const ModelSpec& spec, DType compute) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ExpectedTensor& t : expectedTensors(spec)) shapes[t.name] = t.shape;
  TensorLookup lookup = [&](const std::string& name) -> std::optional<TensorMeta> {
    auto it = shapes.find(name);
    if (it == shapes.end()) return std::nullopt;
    return TensorMeta{spec.dtype, it->second};
  };
  Expected<Graph> g = buildGraph(spec, lookup, BuildOptions{compute});
  if (!g) return g.takeError();
  if (Error e = runPipeline(*g, PassOptions{1})) return e;
  PlanSource source;
  source.modelDir = "model";
  source.files.push_back({"model.safetensors", 1234, 0x5eed});
  source.fileOf = [](const std::string&) -> std::optional<size_t> { return 0; };
  // Max context 256, max batch 4: three sequences decode in a graph bucket of 4.
  Expected<std::vector<uint8_t>> bytes = lowerToPlan(*g, source, PlanLimits{256, 4});
  if (!bytes) return bytes.takeError();
  return LoadedPlan::fromBytes(std::move(*bytes), "test-plan.fb");
}

// Largest difference over the row, relative to the row's largest reference magnitude.
double rowError(const float* ours, const float* ref, int64_t vocab) {
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    worst = std::max(worst, std::fabs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return worst / std::max(scale, 1e-30);
}

struct Reference {
  std::vector<std::vector<int32_t>> tokens;  // prompt then greedy tokens, per sequence
  std::vector<std::vector<float>> logits;    // per sequence: the logits of each sampled position
  std::vector<int64_t> promptLengths;
};

// Each sequence alone on the CPU in slot s: the prompt, then `steps` greedy decode steps.
Reference runAlone(Backend& cpu, const std::vector<std::vector<int32_t>>& prompts, int64_t steps,
                   int64_t vocab) {
  Reference r;
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> tokens = prompts[s];
    std::vector<float> logits;
    for (int64_t step = 0; step <= steps; ++step) {
      const int64_t first = step == 0 ? 0 : static_cast<int64_t>(tokens.size()) - 1;
      const int64_t count = static_cast<int64_t>(tokens.size()) - first;
      std::vector<int32_t> positions(static_cast<size_t>(count)), slots(positions.size(), int(s));
      std::iota(positions.begin(), positions.end(), static_cast<int32_t>(first));
      StepInput in;
      in.tokenIds = tokens.data() + first;
      in.positions = positions.data();
      in.slots = slots.data();
      in.tokens = count;
      Expected<const float*> out = cpu.forward(in);
      EXPECT_TRUE(out) << out.errorMessage();
      if (!out) return r;
      const float* last = *out + (count - 1) * vocab;
      logits.insert(logits.end(), last, last + vocab);
      tokens.push_back(static_cast<int32_t>(std::max_element(last, last + vocab) - last));
    }
    r.tokens.push_back(tokens);
    r.logits.push_back(logits);
    r.promptLengths.push_back(static_cast<int64_t>(prompts[s].size()));
  }
  return r;
}

// One paged step: pieces of (sequence, first position, count); the last token of a piece
// samples when `samples` says so.
struct Piece {
  int sequence;
  int32_t first, count;
  bool samples;
};

class PagedRun {
 public:
  PagedRun(Backend& cuda, const Reference& ref, int64_t blockSize, int64_t vocab)
      : cuda_(cuda), ref_(ref), blockSize_(blockSize), vocab_(vocab) {
    // Each sequence gets 8 blocks drawn from a shuffled pool.
    std::vector<int32_t> blocks(static_cast<size_t>(std::min<int64_t>(cuda.kvBlocks(), 64)));
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), std::mt19937(7));
    tables_.assign(blocks.begin(), blocks.begin() + 8 * ref.tokens.size());
  }

  // Runs the step and checks every sampling row against the reference's logits at that position.
  void step(const std::vector<Piece>& pieces, double tolerance) {
    StepInput in;
    std::vector<int32_t> ids, positions, kvSlots, starts = {0}, logitRows, tables;
    std::vector<std::pair<int, int32_t>> sampled;  // sequence, position
    for (const Piece& p : pieces) {
      for (int32_t i = 0; i < p.count; ++i) {
        const int32_t position = p.first + i;
        ids.push_back(ref_.tokens[static_cast<size_t>(p.sequence)][static_cast<size_t>(position)]);
        positions.push_back(position);
        const int32_t block = tables_[static_cast<size_t>(p.sequence * 8 + position / blockSize_)];
        kvSlots.push_back(static_cast<int32_t>(block * blockSize_ + position % blockSize_));
      }
      starts.push_back(static_cast<int32_t>(ids.size()));
      tables.insert(tables.end(), tables_.begin() + p.sequence * 8,
                    tables_.begin() + (p.sequence + 1) * 8);
      if (p.samples) {
        logitRows.push_back(static_cast<int32_t>(ids.size()) - 1);
        sampled.emplace_back(p.sequence, p.first + p.count - 1);
      }
    }
    in.tokenIds = ids.data();
    in.positions = positions.data();
    in.tokens = static_cast<int64_t>(ids.size());
    in.kvSlots = kvSlots.data();
    in.sequences = static_cast<int64_t>(pieces.size());
    in.seqStarts = starts.data();
    in.blockTables = tables.data();
    in.blockTableStride = 8;
    in.logitRows = logitRows.data();
    in.logitRowCount = static_cast<int64_t>(logitRows.size());
    Expected<const float*> out = cuda_.forward(in);
    ASSERT_TRUE(out) << out.errorMessage();
    for (size_t i = 0; i < sampled.size(); ++i) {
      const auto [sequence, position] = sampled[i];
      // The reference sampled its prompt's last position first, then one per decode step.
      const int64_t index = position - (ref_.promptLengths[static_cast<size_t>(sequence)] - 1);
      ASSERT_GE(index, 0);
      const float* want = ref_.logits[static_cast<size_t>(sequence)].data() + index * vocab_;
      EXPECT_LE(rowError(*out + static_cast<int64_t>(i) * vocab_, want, vocab_), tolerance)
          << "sequence " << sequence << " position " << position;
    }
    // A greedy pick of the same step (a graph replay for decode-only steps) agrees with the
    // logits just returned: the step is rerun, rewriting the same KV rows with the same values.
    std::vector<float> logits(*out, *out + static_cast<int64_t>(sampled.size()) * vocab_);
    Expected<std::vector<int32_t>> picked = cuda_.forwardArgmax(in);
    ASSERT_TRUE(picked) << picked.errorMessage();
    ASSERT_EQ(picked->size(), sampled.size());
    for (size_t i = 0; i < sampled.size(); ++i) {
      const float* row = logits.data() + static_cast<int64_t>(i) * vocab_;
      EXPECT_EQ((*picked)[i], std::max_element(row, row + vocab_) - row);
    }
    // Device sampling, each row with its own parameters and draw, against the CPU sampler on
    // the same logits.
    std::vector<RowSampling> sampling(sampled.size());
    for (size_t i = 0; i < sampling.size(); ++i)
      sampling[i] = {0.8f, i % 2 ? 20 : 0, i % 3 ? 0.9f : 1.0f, 0.0f, 0.13 + 0.29 * double(i)};
    Expected<std::vector<int32_t>> drawn = cuda_.forwardSample(in, sampling.data(), vocab_);
    ASSERT_TRUE(drawn) << drawn.errorMessage();
    ASSERT_EQ(drawn->size(), sampled.size());
    for (size_t i = 0; i < sampled.size(); ++i) {
      cpu::SamplingParams p;
      p.temperature = sampling[i].temperature;
      p.topK = sampling[i].topK;
      p.topP = sampling[i].topP;
      EXPECT_EQ((*drawn)[i], cpu::sampleWithDraw(logits.data() + static_cast<int64_t>(i) * vocab_,
                                                 vocab_, p, sampling[i].uniform));
    }
  }

 private:
  Backend& cuda_;
  const Reference& ref_;
  int64_t blockSize_, vocab_;
  std::vector<int32_t> tables_;
};

struct Backends {
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Backend> cpu, cuda;
};

// The CPU and CUDA backends of one plan, on the same random weights.
void makeBackends(const LoadedPlan& plan, int64_t blockSize, Backends* out) {
  out->comm = createLocalCommunicator();
  BackendOptions cpuOptions;
  cpuOptions.weightSource = weightsFor(plan);
  BackendOptions cudaOptions = cpuOptions;
  cudaOptions.kind = "cuda";
  cudaOptions.kvBlockSize = blockSize;
  cudaOptions.gpuMemoryUtilization = 0.1;
  Expected<std::unique_ptr<Backend>> cpu = createBackend(plan, 0, *out->comm, cpuOptions);
  ASSERT_TRUE(cpu) << cpu.errorMessage();
  Expected<std::unique_ptr<Backend>> cuda = createBackend(plan, 0, *out->comm, cudaOptions);
  ASSERT_TRUE(cuda) << cuda.errorMessage();
  ASSERT_GE((*cuda)->kvBlocks(), 64);
  out->cpu = std::move(*cpu);
  out->cuda = std::move(*cuda);
}

void runCase(DType dtype, const std::string& preset, int64_t blockSize, double tolerance) {
  SCOPED_TRACE(preset + " block " + std::to_string(blockSize));
  ModelSpec spec = test::presetSpec(Family::Llama, preset, dtype);
  Expected<LoadedPlan> plan = compileWithCompute(spec, dtype);
  ASSERT_TRUE(plan) << plan.errorMessage();
  ASSERT_EQ(static_cast<DType>(plan->plan().compute_dtype()), dtype);
  Backends backends;
  ASSERT_NO_FATAL_FAILURE(makeBackends(*plan, blockSize, &backends));
  Backend* cpu = backends.cpu.get();
  Backend* cuda = backends.cuda.get();

  const int64_t vocab = spec.vocabSize;
  std::vector<std::vector<int32_t>> prompts;
  std::mt19937 rng(3);
  for (int length : {5, 40, 23}) {
    std::vector<int32_t> p(static_cast<size_t>(length));
    for (int32_t& id : p) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    prompts.push_back(p);
  }
  const int64_t decodeSteps = 3;
  const Reference ref = runAlone(*cpu, prompts, decodeSteps, vocab);
  ASSERT_EQ(ref.tokens.size(), 3u);

  PagedRun run(*cuda, ref, blockSize, vocab);
  // Prompts 0 and 2 whole, the first 17 tokens of prompt 1 (no sampling row).
  run.step({{0, 0, 5, true}, {1, 0, 17, false}, {2, 0, 23, true}}, tolerance);
  // Prompt 1's rest beside the first decode tokens of 0 and 2.
  run.step({{0, 5, 1, true}, {1, 17, 23, true}, {2, 23, 1, true}}, tolerance);
  // Decode only: 3 sequences in a bucket of 4.
  run.step({{0, 6, 1, true}, {1, 40, 1, true}, {2, 24, 1, true}}, tolerance);
  run.step({{2, 25, 1, true}, {0, 7, 1, true}, {1, 41, 1, true}}, tolerance);
}

TEST(CudaPagedSteps, F32GenericKernelsMatchTheCpuAlone) {
  if (!haveGpu()) GTEST_SKIP() << "skipped: no GPU";
  // f32: summation order only (1e-4 as the f32 golden tests).
  runCase(DType::F32, "tiny", 16, 1e-4);
  runCase(DType::F32, "tiny", 32, 1e-4);
}

TEST(CudaPagedSteps, Bf16DecodeAndPrefillKernelsMatchTheCpuAlone) {
  if (!haveGpu()) GTEST_SKIP() << "skipped: no GPU";
  // Llama small: head_dim 64, GQA 8/4, so the one-launch decode and tensor-core prefill kernels
  // run. bf16 rounds every activation (2^-9 relative) over 4 layers: 3e-2 of the row's scale,
  // as the bf16 golden tests.
  runCase(DType::BF16, "small", 16, 3e-2);
  runCase(DType::BF16, "small", 32, 3e-2);
}

// One sequence decoding alone: steps of one token, where the backend's one-row fusions run
// (OneRowFusion: the gate/up pair writing the swiglu, folded norms and ropes, split views). The
// MLP is wide enough (16384 rows a half) that the pair's blocks cannot all be resident at once,
// so a fused result written over bytes that later blocks still read shows up in the logits.
TEST(CudaPagedSteps, OneSequenceDecodeWithAWideMlpMatchesTheCpuAlone) {
  if (!haveGpu()) GTEST_SKIP() << "skipped: no GPU";
  ModelSpec spec = test::presetSpec(Family::Llama, "small", DType::BF16);
  spec.intermediateSize = 16384;
  Expected<LoadedPlan> plan = compileWithCompute(spec, DType::BF16);
  ASSERT_TRUE(plan) << plan.errorMessage();
  Backends backends;
  ASSERT_NO_FATAL_FAILURE(makeBackends(*plan, 16, &backends));
  std::vector<int32_t> prompt(9);
  std::mt19937 rng(5);
  for (int32_t& id : prompt)
    id = static_cast<int32_t>(rng() % static_cast<uint32_t>(spec.vocabSize));
  const int64_t decodeSteps = 4;
  const Reference ref = runAlone(*backends.cpu, {prompt}, decodeSteps, spec.vocabSize);
  ASSERT_EQ(ref.tokens.size(), 1u);
  PagedRun run(*backends.cuda, ref, 16, spec.vocabSize);
  // bf16 over 4 layers, as Bf16DecodeAndPrefillKernelsMatchTheCpuAlone.
  run.step({{0, 0, 9, true}}, 3e-2);
  for (int32_t step = 0; step < decodeSteps; ++step) run.step({{0, 9 + step, 1, true}}, 3e-2);
}

TEST(CudaPagedSteps, APoolTooSmallForOneSequenceNamesTheNumbers) {
  if (!haveGpu()) GTEST_SKIP() << "skipped: no GPU";
  ModelSpec spec = test::presetSpec(Family::Llama, "tiny", DType::BF16);
  Expected<LoadedPlan> plan = test::compileSpec(spec, 1);
  ASSERT_TRUE(plan) << plan.errorMessage();
  std::unique_ptr<Communicator> comm = createLocalCommunicator();
  BackendOptions options;
  options.kind = "cuda";
  options.weightSource = weightsFor(*plan);
  options.gpuMemoryUtilization = 0.0001;
  Expected<std::unique_ptr<Backend>> cuda = createBackend(*plan, 0, *comm, options);
  ASSERT_FALSE(cuda);
  EXPECT_NE(cuda.errorMessage().find("blocks; raise --gpu-memory-utilization"), std::string::npos)
      << cuda.errorMessage();
}

}  // namespace
}  // namespace tpc
