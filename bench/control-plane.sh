#!/usr/bin/env bash
# Control-plane cost of a multi-node run on loopback, CPU backend, world 2 as a head with one
# rank and a worker with one rank. During decoding the ranks only compute and run their Gloo
# collectives; the control plane (the head's and the worker's own processes: heartbeats,
# keep-alives, forwarding) runs beside them. Its cost per decode step is the CPU time those
# two processes use while serving (they print it), divided by the steps, as a fraction of the
# step time measured in the same run. As a cross-check, the same plan run by one tpexec with
# both ranks on this host gives the wall-clock difference (noisy on a busy machine).
# Also reports the time from `tpexec --join` to ready, with the checkpoint on the worker and
# with the weights streamed from the head.
#   bench/control-plane.sh [--preset small] [--arch llama] [--tokens 128] [--repeats 5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=llama; preset=small; tokens=128; repeats=5
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift ;;
    --preset) preset=$2; shift ;;
    --tokens) tokens=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
bin="$root/build/bin"
work="$root/build/bench-models"
# Both set-ups run the same two ranks on this host: one BLAS thread per rank in both, so the
# "nodes" of the simulated run do not each claim every core.
export TPC_KERNEL_THREADS=1
model="$work/$arch-$preset"
mkdir -p "$work"
[ -f "$model/config.json" ] || "$bin/tpc" make-model --arch "$arch" --preset "$preset" --quiet -o "$model"
plan="$work/$arch-$preset.w2.fb"
"$bin/tpc" compile "$model" --world 2 --max-context 1024 --quiet -o "$plan"
tmp=$(mktemp -d)
head_pid=""
# A head whose worker never came must not outlive the script.
trap '[ -n "$head_pid" ] && kill "$head_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
prompt=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16
run_args=(--prompt-ids "$prompt" --max-new-tokens "$tokens" --ignore-eos --json)

# Starts a head with one local rank, joins one worker (extra worker flags in $1), waits for
# both; leaves the head's JSON in $tmp/head.out and the worker's log in $tmp/worker.log.
multi_node() {
  "$bin/tpexec" "$plan" --listen 127.0.0.1:0 --workers 1 --local-world 1 "${run_args[@]}" \
    >"$tmp/head.out" 2>"$tmp/head.err" &
  head_pid=$!
  local port=""
  for _ in $(seq 200); do
    port=$(grep -o 'tcp://127.0.0.1:[0-9]*' "$tmp/head.err" 2>/dev/null | sed 's/.*://') || true
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "error: the head did not start: $(cat "$tmp/head.err")"; exit 1; }
  # shellcheck disable=SC2086
  "$bin/tpexec" --join "127.0.0.1:$port" --local-world 1 $1 2>"$tmp/worker.log"
  wait "$head_pid"
  head_pid=""
}

decode_ms() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["timings"]["decode_ms_per_token"])'; }

mkdir -p "$tmp/empty"
local_ms=(); mn_ms=(); join_ms=(); stream_ms=(); cpu_ms=()
for _ in $(seq "$repeats"); do
  local_ms+=("$("$bin/tpexec" "$plan" "${run_args[@]}" | decode_ms)")
  multi_node ""
  mn_ms+=("$(decode_ms <"$tmp/head.out")")
  cpu_ms+=("$(cat "$tmp/head.err" "$tmp/worker.log" | grep -o 'control plane: [0-9.]* ms' | awk '{s += $3} END {print s}')")
  join_ms+=("$(grep -o '[0-9]* ms after joining' "$tmp/worker.log" | cut -d' ' -f1)")
  multi_node "--model-dir $tmp/empty"
  stream_ms+=("$(grep -o '[0-9]* ms after joining' "$tmp/worker.log" | cut -d' ' -f1)")
done
python3 - "$arch $preset" "$tokens" "$(nproc)" "${local_ms[*]}" "${mn_ms[*]}" "${join_ms[*]}" \
  "${stream_ms[*]}" "${cpu_ms[*]}" "$(cat "$model"/*.safetensors | wc -c)" <<'PY'
import statistics, sys
name, tokens, cores = sys.argv[1:4]
local, mn, join, stream, cpu = ([float(x) for x in a.split()] for a in sys.argv[4:9])
size = int(sys.argv[9])
steps = int(tokens)  # the prefill and tokens - 1 decode steps
per_step = [c / steps for c in cpu]
fractions = [100 * c / m for c, m in zip(per_step, mn)]
l, m = statistics.median(local), statistics.median(mn)
print(f"model {name} ({size / 2**20:.1f} MiB checkpoint), world 2, {cores} cores, {tokens} new tokens, {len(local)} runs each")
print(f"decode ms/step, one host (local ranks): median {l:.3f}  runs {' '.join(f'{x:.2f}' for x in local)}")
print(f"decode ms/step, head + worker (ZeroMQ): median {m:.3f}  runs {' '.join(f'{x:.2f}' for x in mn)}")
print(f"control-plane CPU per step (head + worker processes): median {statistics.median(per_step):.4f} ms"
      f" = {statistics.median(fractions):.3f}% of the step (runs: {' '.join(f'{f:.3f}%' for f in fractions)})")
print(f"wall-clock cross-check, head + worker minus one host: {m - l:+.3f} ms = {100 * (m - l) / l:+.2f}% of the step")
print(f"--join to ready, checkpoint on the worker: median {statistics.median(join):.0f} ms")
print(f"--join to ready, slices streamed from the head: median {statistics.median(stream):.0f} ms")
PY
