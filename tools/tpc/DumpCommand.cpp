#include <cstdio>

#include "codegen/PlanDump.h"
#include "codegen/PlanReader.h"
#include "tools/common/Args.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {

int runDump(int argc, char** argv) {
  std::string path, format = "text";
  int64_t rank = -1;
  ArgParser args("tpc dump",
                 "Shows what each rank of a plan does: steps and their sharding, weight slices,\n"
                 "collectives and the bytes they move per token, arena and KV-cache sizes.");
  args.positional("PLAN", &path, "a plan written by tpc compile");
  args.option("--rank", &rank, "R", "only this rank (default: every rank)");
  args.choice("--format", &format, {"text", "json", "dot"},
              "output format (default text; dot shows one rank)");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  Expected<LoadedPlan> loaded = LoadedPlan::readFile(path);
  if (!loaded) return fail(loaded.errorMessage());
  const plan::Plan& p = loaded->plan();
  std::optional<uint32_t> only;
  if (args.seen("--rank")) {
    if (rank < 0 || rank >= static_cast<int64_t>(p.world()))
      return fail("--rank " + std::to_string(rank) + " is outside the plan's world of " +
                      std::to_string(p.world()),
                  2);
    only = static_cast<uint32_t>(rank);
  }
  std::string out = format == "json"  ? dumpPlanJson(p, only)
                    : format == "dot" ? dumpPlanDot(p, only)
                                      : dumpPlanText(p, only);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace tpc::cli
