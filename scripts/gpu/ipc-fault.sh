#!/usr/bin/env bash
# The fault test of ranks sharing one GPU: a world-2 engine run decoding (the plan given, e.g. the
# 1B shape), and once both ranks are up and a few seconds into decode, rank 1 gets SIG. Every rank
# must be gone within 5 s of it, the run must fail naming the rank, and none of its processes may
# be left on the GPU. Run it under a fresh MPS daemon (engine-suite.sh starts one per fault).
# Prints one line (ok or FAILED) and exits non-zero on FAILED.
#   scripts/gpu/ipc-fault.sh BIN_DIR PLAN SIG OUT_FILE
set -uo pipefail
bin=$1 plan=$2 sig=$3 out=$4
"$bin/tpexec" bench "$plan" --synthetic-weights --requests 8 --input-len 64 \
  --output-len 4000 --concurrency 8 --json > "$out" 2>&1 &
parent=$! ranks="" start=$SECONDS
while [ $((SECONDS - start)) -lt 60 ]; do
  ranks=$(pgrep -P "$parent" | sort -n | tr '\n' ' ')
  [ "$(echo $ranks | wc -w)" -ge 2 ] && break
  sleep 0.2
done
sleep 6  # weights made, graphs captured: decoding
victim=$(echo $ranks | awk '{print $NF}')
if ! kill -0 "$parent" 2> /dev/null; then
  echo "fault-$sig: FAILED: the run ended before the signal: $(tail -c 300 "$out")"
  exit 1
fi
t0=$(date +%s.%N)
kill -"$sig" "$victim"
waited=0
while kill -0 "$parent" 2> /dev/null && [ $waited -lt 200 ]; do sleep 0.05; waited=$((waited + 1)); done
t1=$(date +%s.%N)
left=""
for p in $parent $ranks; do kill -0 "$p" 2> /dev/null && left="$left $p"; done
held=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader | grep -wE "$(echo $parent $ranks | tr ' ' '|')")
seconds=$(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")
verdict=ok
if [ -n "$left" ] || [ -n "$held" ] || awk "BEGIN{exit !($seconds > 5)}"; then verdict=FAILED; fi
wait "$parent" 2> /dev/null
echo "fault-$sig: $verdict: SIG$sig to rank 1 (pid $victim); all ranks gone after ${seconds} s; left: ${left:-none}; on the GPU: ${held:-none}; the run said: $(grep -m1 error "$out")"
[ -n "$left" ] && kill -9 $left 2> /dev/null
[ "$verdict" = ok ]
