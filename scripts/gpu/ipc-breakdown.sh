#!/usr/bin/env bash
# Batch-1 decode of one shape on one GPU (run under MPS): world 1, world 2 with the ranks sharing
# the GPU over the IPC communicator, and world 2 again with every device collective replaced by a
# local copy (TPC_IPC_SKIP_EXCHANGE=1: wrong tokens, timing only). One JSON line per run, then
# world 2's overhead over world 1 per decode step, split into the collectives (world 2 less the
# same without them) and the rest (two ranks' half-size kernels sharing the GPU, the ranks'
# per-step hand-off). Prints every line; exits non-zero if a run failed.
#   scripts/gpu/ipc-breakdown.sh BIN_DIR PLAN_W1 PLAN_W2 OUT_DIR [SECONDS]
set -uo pipefail
bin=$1 w1=$2 w2=$3 out=$4 seconds=${5:-90}
status=0
run() {  # name plan [env...]
  local name=$1 plan=$2; shift 2
  env "$@" timeout "$seconds" "$bin/tpexec" bench "$plan" --synthetic-weights --json \
    --requests 1 --input-len 512 --output-len 256 --concurrency 1 > "$out/$name.json" 2> "$out/$name.err" ||
    { status=1; echo "$name: failed: $(tail -c 400 "$out/$name.err")"; }
  echo "$name: $(cat "$out/$name.json" 2> /dev/null)"
}
run w1 "$w1"
run w2 "$w2"
run w2-no-collectives "$w2" TPC_IPC_SKIP_EXCHANGE=1
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def step(name):
    try:
        return json.load(open(os.path.join(out, name + ".json")))["mean_decode_iteration_ms"]
    except Exception:
        return None
w1, w2, skip = step("w1"), step("w2"), step("w2-no-collectives")
print(f"decode ms/step: world 1 {w1}, world 2 {w2}, world 2 without collectives {skip}")
if None not in (w1, w2, skip):
    print(f"world 2 over world 1: {w2 - w1:+.3f} ms/step = collectives {w2 - skip:+.3f} "
          f"+ the rest {skip - w1:+.3f}")
PY
exit "$status"
