// tpexec across nodes: the head (`tpexec PLAN --listen HOST:PORT --workers W`) and the worker
// (`tpexec --join HOST:PORT`). The TPC_MN_* environment variables stand in for the flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"
#include "executor/engine/Generation.h"
#include "ir/Error.h"

namespace tpc::tpexec {

// Which mode the command line (or the environment) asks for.
bool wantsWorkerMode(int argc, char** argv);
bool wantsHeadMode(int argc, char** argv);
int runHeadMode(int argc, char** argv);
int runWorkerMode(int argc, char** argv);

struct NamedRequest {
  std::string id;
  GenerationRequest request;
  int64_t cancelAfterMs = -1;  // the request is cancelled this long after it was sent
  // The same request for the engine, with the fields only it knows (min_p, penalties, stop
  // token ids, logprobs), which `engineOnlyFields` names when the line had them.
  EngineRequest engine;
  std::vector<std::string> engineOnlyFields;
};

// One request per line: {"id", "prompt_ids", "max_new_tokens", "temperature", "top_k",
// "top_p", "min_p", "seed", "ignore_eos", "stop_token_ids", "presence_penalty",
// "frequency_penalty", "repetition_penalty", "logprobs", "cancel_after_ms"}; missing fields
// take `defaults`. Errors name FILE:LINE. Values a request can be refused for (max tokens below
// 1, ids outside the vocab, sampling ranges) are left to whoever runs it.
Expected<std::vector<NamedRequest>> readRequestsFile(const std::string& path,
                                                     const GenerationRequest& defaults,
                                                     const std::vector<int64_t>& planEos);

// The environment variable's value, or "" when unset.
std::string envOr(const char* name);

int printError(const std::string& message, int code = 1);

// CPU milliseconds this process (the node's control plane, its ranks excluded) has used.
double controlPlaneCpuMs();

}  // namespace tpc::tpexec

namespace tpc::tpexec {
// `tpexec --make-curve-keys DIR`: a head key pair and a node key pair for --curve-keys.
bool wantsCurveKeygen(int argc, char** argv);
int runCurveKeygen(int argc, char** argv);
}  // namespace tpc::tpexec
