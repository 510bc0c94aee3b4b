#!/usr/bin/env bash
# Sets up (OpenBLAS, the default model for the integration tests) and runs the whole test suite
# against a release build: numerical tests that touch the real model are far too slow in debug.
set -euo pipefail
cd "$(dirname "$0")/.."
SHADOWLLM_SKIP_BUILD=1 SHADOWLLM_SKIP_CORPUS=1 scripts/setup.sh
swift test -c release -Xswiftc -enable-testing "$@"
