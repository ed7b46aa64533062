#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {

std::string envOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

double controlPlaneCpuMs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);  // every thread of this process, no children
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

int printError(const std::string& message, int code) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

namespace {

// A float field checked for type; ranges are the engine's to judge (it fails that request only).
Error readFloat(const nlohmann::json& value, const std::string& key, float& out) {
  if (!value.is_number()) return makeError("\"", key, "\" must be a number");
  out = value.get<float>();
  return Error::success();
}

Error readIds(const nlohmann::json& value, const std::string& key, std::vector<int32_t>& out) {
  if (!value.is_array()) return makeError("\"", key, "\" must be an array of token ids");
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      return makeError("\"", key, "\" holds ", id.dump(), ", not a token id");
    out.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return Error::success();
}

// The fields only the engine (a single node) knows; the multi-node head refuses them.
Error parseEngineField(const std::string& key, const nlohmann::json& value, NamedRequest& r) {
  EngineRequest& e = r.engine;
  if (key == "min_p") return readFloat(value, key, e.minP);
  if (key == "presence_penalty") return readFloat(value, key, e.presencePenalty);
  if (key == "frequency_penalty") return readFloat(value, key, e.frequencyPenalty);
  if (key == "repetition_penalty") return readFloat(value, key, e.repetitionPenalty);
  if (key == "stop_token_ids") return readIds(value, key, e.stopTokenIds);
  if (key == "logprobs") {
    if (!value.is_number_integer() || value.get<int64_t>() < 0)
      return makeError("\"logprobs\" must be an integer >= 0 (alternatives per token)");
    e.topLogprobs = static_cast<int>(std::min<int64_t>(value.get<int64_t>(), INT32_MAX));
    return Error::success();
  }
  return makeError("unknown field \"", key, "\"");
}

bool isEngineField(const std::string& key) {
  return key == "min_p" || key == "presence_penalty" || key == "frequency_penalty" ||
         key == "repetition_penalty" || key == "stop_token_ids" || key == "logprobs";
}

Expected<NamedRequest> parseLine(const std::string& line, const GenerationRequest& defaults,
                                 const std::vector<int64_t>& planEos) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return makeError("not a JSON object");
  NamedRequest r;
  r.request = defaults;
  bool ignoreEos = defaults.eosIds.empty();
  for (auto& [key, value] : j.items()) {
    if (key == "id") {
      if (!value.is_string() && !value.is_number_integer())
        return makeError("\"id\" must be a string or an integer");
      r.id = value.is_string() ? value.get<std::string>() : value.dump();
    } else if (key == "prompt_ids") {
      if (!value.is_array() || value.empty())
        return makeError("\"prompt_ids\" must be a non-empty array");
      for (const auto& id : value) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
          return makeError("\"prompt_ids\" holds ", id.dump(), ", not a token id");
        r.request.promptIds.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
    } else if (key == "max_new_tokens") {
      // Below 1 is the engine's to refuse (that request fails, the others run).
      if (!value.is_number_integer()) return makeError("\"max_new_tokens\" must be an integer");
      r.request.maxNewTokens = value.get<int64_t>();
    } else if (key == "temperature" || key == "top_p") {
      if (!value.is_number()) return makeError("\"", key, "\" must be a number");
      double v = value.get<double>();
      if (key == "temperature" && v < 0) return makeError("\"temperature\" must not be negative");
      if (key == "top_p" && !(v > 0 && v <= 1)) return makeError("\"top_p\" must be in (0, 1]");
      (key == "temperature" ? r.request.sampling.temperature : r.request.sampling.topP) =
          static_cast<float>(v);
    } else if (key == "top_k") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0)
        return makeError("\"top_k\" must be an integer >= 0");
      r.request.sampling.topK = value.get<int64_t>();
    } else if (key == "seed") {
      if (!value.is_number_integer()) return makeError("\"seed\" must be an integer");
      r.request.seed = value.get<uint64_t>();
    } else if (key == "cancel_after_ms") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0)
        return makeError("\"cancel_after_ms\" must be an integer >= 0");
      r.cancelAfterMs = value.get<int64_t>();
    } else if (key == "ignore_eos") {
      if (!value.is_boolean()) return makeError("\"ignore_eos\" must be true or false");
      ignoreEos = value.get<bool>();
    } else if (isEngineField(key)) {
      if (Error e = parseEngineField(key, value, r)) return e;
      r.engineOnlyFields.push_back(key);
    } else {
      return makeError("unknown field \"", key, "\"");
    }
  }
  if (r.request.promptIds.empty()) return makeError("\"prompt_ids\" is missing");
  r.request.eosIds = ignoreEos ? std::vector<int64_t>{} : planEos;
  EngineRequest& e = r.engine;
  e.promptIds = r.request.promptIds;
  e.maxTokens = r.request.maxNewTokens;
  e.temperature = r.request.sampling.temperature;
  e.topK = r.request.sampling.topK;
  e.topP = r.request.sampling.topP;
  e.seed = r.request.seed;
  e.ignoreEos = ignoreEos;
  return r;
}

}  // namespace

Expected<std::vector<NamedRequest>> readRequestsFile(const std::string& path,
                                                     const GenerationRequest& defaults,
                                                     const std::vector<int64_t>& planEos) {
  std::ifstream in(path);
  if (!in) return makeError(path, ": cannot read the requests file");
  std::vector<NamedRequest> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Expected<NamedRequest> r = parseLine(line, defaults, planEos);
    if (!r) return makeError(path, ":", number, ": ", r.errorMessage());
    if (r->id.empty()) r->id = std::to_string(out.size());
    out.push_back(std::move(*r));
  }
  if (out.empty()) return makeError(path, ": no requests in the file");
  return out;
}

}  // namespace tpc::tpexec

#include "net/Channel.h"
#include "tools/common/Args.h"

namespace tpc::tpexec {

bool wantsCurveKeygen(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--make-curve-keys") return true;
  return false;
}

int runCurveKeygen(int argc, char** argv) {
  std::string dir;
  cli::ArgParser args("tpexec --make-curve-keys",
                      "Writes CURVE keys for --curve-keys into DIR: head.key, head.key_secret,\n"
                      "node.key, node.key_secret and authorized_keys (the node keys the head\n"
                      "admits). Give the head and every node the folder (nodes need no head "
                      "secret).");
  args.option("--make-curve-keys", &dir, "DIR", "an existing folder to write the keys into");
  if (Error e = args.parse(argc, argv)) return printError(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (Error e = net::writeCurveKeys(dir)) return printError(e.message());
  return 0;
}

}  // namespace tpc::tpexec
