#!/usr/bin/env bash
# Opens gpu-bundle/payload.tar.xz (made by scripts/gpu/bundle.sh) on the GPU machine, once.
set -euo pipefail
bundle="$(cd "$(dirname "$0")/../.." && pwd)/gpu-bundle"
[ -d "$bundle/bin" ] || tar -C "$bundle" -xJf "$bundle/payload.tar.xz"
