#include "executor/engine/Bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include "codegen/PlanFormat.h"
#include "executor/StepAttrs.h"
#include "executor/engine/Traffic.h"
#include "ir/DType.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;

double millisSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// llava: encodes the image once untimed (GEMM algorithm choice) and then kImageRuns times, and
// writes its tokens into the prompt after the first; returns the prompt's image_embeds rows.
constexpr int kImageRuns = 5;
Expected<std::vector<float>> encodeBenchImage(Backend& backend, const PromptImage& image,
                                              std::vector<int32_t>& ids, BenchReport& report) {
  Expected<const float*> features = backend.encodeImage(image.patches.data(), image.rows);
  if (!features) return features.takeError();
  auto start = Clock::now();
  for (int run = 0; run < kImageRuns; ++run) {
    features = backend.encodeImage(image.patches.data(), image.rows);
    if (!features) return features.takeError();
  }
  report.imageEncodeMs = millisSince(start) / kImageRuns;
  report.imageTokens = image.rows - image.firstRow;
  std::vector<float> embeds(ids.size() * static_cast<size_t>(image.hidden), 0.0f);
  for (int64_t i = 0; i < report.imageTokens; ++i) {
    ids[static_cast<size_t>(1 + i)] = image.tokenIndex;
    std::copy_n(*features + (image.firstRow + i) * image.hidden, image.hidden,
                embeds.begin() + (1 + i) * image.hidden);
  }
  return embeds;
}

}  // namespace

Expected<BenchReport> runBench(const LoadedPlan& plan, const BenchOptions& o) {
  const plan::Plan& p = plan.plan();
  if (p.world() != 1)
    return makeError("tpexec bench runs world-1 plans (this one is for world ", p.world(), ")");
  const int64_t maxBatch = p.limits()->max_batch(), maxContext = p.limits()->max_context();
  const int64_t warmupSteps = 3;
  if (o.batch < 1 || o.batch > maxBatch)
    return makeError("--batch ", o.batch, " is outside 1..", maxBatch, " (the plan's max batch)");
  if (o.promptLength < 1 || o.generate < 1)
    return makeError("--prompt-len and --gen must be at least 1");
  if (o.promptLength + warmupSteps + o.generate > maxContext)
    return makeError("--prompt-len ", o.promptLength, " + --gen ", o.generate, " (+", warmupSteps,
                     " warm-up steps) does not fit the plan's max context of ", maxContext);
  const PromptImage& image = o.image;
  const int64_t imageTokens = image.patches.empty() ? 0 : image.rows - image.firstRow;
  if (imageTokens > 0 && o.promptLength < imageTokens + 1)
    return makeError("--prompt-len ", o.promptLength, " cannot hold the image's ", imageTokens,
                     " tokens after the first token");
  auto stage = [&](const std::string& what) {
    if (o.onStage) o.onStage(what);
  };

  std::unique_ptr<Communicator> comm = createLocalCommunicator();
  if (o.backend.kind == "cuda") {
    if (cudaDeviceCount() == 0) return makeError("--backend cuda: no CUDA device is visible");
    Expected<std::string> id = newNcclUniqueId();
    if (!id) return id.takeError();
    Expected<std::unique_ptr<Communicator>> nccl =
        createNcclCommunicator(0, 1, *id, o.backend.device, std::chrono::seconds(60));
    if (!nccl) return nccl.takeError();
    comm = std::move(*nccl);
  }
  stage(o.backend.syntheticWeights ? "making synthetic weights" : "loading weights");
  Expected<std::unique_ptr<Backend>> made = createBackend(plan, 0, *comm, o.backend);
  if (!made) return made.takeError();
  Backend& backend = **made;
  const int64_t vocab = planIntAttr(p.model(), "vocab_size");

  BenchReport report;
  report.backend = backend.name();
  report.batch = o.batch;
  report.promptLength = o.promptLength;
  report.generate = o.generate;
  report.weightBytes = backend.residentWeightBytes();

  // Prefill every sequence's prompt twice: the first pass settles one-time work (GEMM algorithm
  // choice, page faults), the second is timed.
  std::vector<int32_t> ids(static_cast<size_t>(o.promptLength)), positions(ids.size()),
      slots(ids.size());
  for (int64_t t = 0; t < o.promptLength; ++t) {
    ids[static_cast<size_t>(t)] = static_cast<int32_t>((t * 7919 + 11) % vocab);
    positions[static_cast<size_t>(t)] = static_cast<int32_t>(t);
  }
  std::vector<float> imageEmbeds;
  if (imageTokens > 0) {
    stage("encoding the image");
    Expected<std::vector<float>> embeds = encodeBenchImage(backend, image, ids, report);
    if (!embeds) return embeds.takeError();
    imageEmbeds = std::move(*embeds);
  }
  std::vector<int32_t> next(static_cast<size_t>(o.batch));
  for (int pass = 0; pass < 2; ++pass) {
    stage(pass == 0 ? "prefill (warm-up)" : "prefill");
    auto start = Clock::now();
    for (int64_t b = 0; b < o.batch; ++b) {
      std::fill(slots.begin(), slots.end(), static_cast<int32_t>(b));
      StepInput prompt{ids.data(), positions.data(), slots.data(), o.promptLength};
      prompt.imageEmbeds = imageEmbeds.empty() ? nullptr : imageEmbeds.data();
      Expected<std::vector<int32_t>> picked = backend.forwardArgmax(prompt);
      if (!picked) return picked.takeError();
      next[static_cast<size_t>(b)] = picked->back();
    }
    report.prefillMs = millisSince(start);
  }
  const double prefillTokens = static_cast<double>(o.batch * o.promptLength);
  report.prefillTokensPerSecond = prefillTokens / (report.prefillMs / 1e3);
  StepTraffic traffic = trafficOf(p, o.batch);
  report.expertsReadPerLayer = traffic.expertsReadPerLayer;
  report.prefillTflops = 2.0 * static_cast<double>(traffic.linearMacsPerToken) * prefillTokens /
                         (report.prefillMs / 1e3) / 1e12;

  // Decode: every sequence advances one token per step, greedy, ids fed back.
  std::vector<int32_t> stepSlots(static_cast<size_t>(o.batch)), stepPositions(stepSlots.size());
  for (int64_t b = 0; b < o.batch; ++b) stepSlots[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  int64_t position = o.promptLength;
  Clock::time_point start;
  for (int64_t step = 0; step < warmupSteps + o.generate; ++step) {
    if (step == 0) stage("decode (warm-up and graph capture)");
    if (step == warmupSteps) {
      stage("decode");
      deviceProfilerRange(true);  // a profiler's window: the timed steps only
      start = Clock::now();
    }
    std::fill(stepPositions.begin(), stepPositions.end(), static_cast<int32_t>(position++));
    Expected<std::vector<int32_t>> picked =
        backend.forwardArgmax({next.data(), stepPositions.data(), stepSlots.data(), o.batch});
    if (!picked) return picked.takeError();
    next = *picked;
  }
  report.decodeMsPerStep = millisSince(start) / static_cast<double>(o.generate);
  deviceProfilerRange(false);
  report.decodeTokensPerSecond = static_cast<double>(o.batch) * 1e3 / report.decodeMsPerStep;
  // The mean context of a timed step: its KV reads grow linearly over the run.
  const double meanContext =
      static_cast<double>(o.promptLength + warmupSteps) + static_cast<double>(o.generate) / 2.0;
  report.bytesReadPerStep =
      traffic.weightBytes + static_cast<uint64_t>(static_cast<double>(o.batch) * meanContext *
                                                  static_cast<double>(traffic.kvBytesPerPosition));
  report.achievedBytesPerSecond =
      static_cast<double>(report.bytesReadPerStep) / (report.decodeMsPerStep / 1e3);
  made->reset();  // frees the GPU before the roofline measurements allocate
  if (o.backend.kind == "cuda") {
    stage("measuring the device's copy and read bandwidth and GEMM ceiling");
    int device = o.backend.device >= 0 ? o.backend.device : 0;
    Expected<double> copy = deviceCopyBandwidth(device);
    if (!copy) return copy.takeError();
    report.copyBytesPerSecond = *copy;
    Expected<double> read = deviceReadBandwidth(device);
    if (!read) return read.takeError();
    report.readBytesPerSecond = *read;
    Expected<double> gemm = deviceGemmFlops(device);
    if (!gemm) return gemm.takeError();
    report.gemmFlopsPerSecond = *gemm;
  }
  return report;
}

}  // namespace tpc
