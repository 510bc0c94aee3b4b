#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and ThreadSanitizer (issue #9), each in its own build
# folder so the instrumented objects never mix with the normal build. The tests on the real
# SmolLM2 model are skipped (SHADOWLLM_SKIP_MODEL_TESTS=1): instrumented, they would take hours.
# Release configuration: debug code under a sanitizer is too slow for the tiny-model tests, and
# the sanitizers instrument optimised code just as well.
#
#   scripts/sanitize.sh            both sanitizers
#   scripts/sanitize.sh address    one of them (address | thread)
#   extra arguments after it go to `swift test` (e.g. --filter ShadowKernelsTests)
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizers=("${1:-address}")
[ $# -eq 0 ] && sanitizers=(address thread)
[ $# -gt 0 ] && shift

export SHADOWLLM_SKIP_MODEL_TESTS=1
# Stop at the first report, with full stacks; leak checking stays on for ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

status=0
for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
        address) path=.build/asan ;;
        thread) path=.build/tsan ;;
        *) echo "unknown sanitizer '$sanitizer' (address | thread)" >&2; exit 2 ;;
    esac
    log="$path-test.log"
    mkdir -p "$path"
    export SHADOWLLM_SANITIZER="$sanitizer"
    echo "==> swift test --sanitize=$sanitizer (build path $path, log $log)" >&2
    start=$(date +%s)
    # The interruption test runs the shadowllm executable of the same build path.
    # pipefail: the test's status, not tee's, decides.
    if swift build -c release --sanitize="$sanitizer" --build-path "$path" -Xswiftc -enable-testing --build-tests \
        && swift test -c release --sanitize="$sanitizer" --build-path "$path" -Xswiftc -enable-testing --skip-build "$@" 2>&1 | tee "$log"; then
        result=clean
    else
        result=FAILED
        status=1
    fi
    echo "==> $sanitizer: $result in $(( $(date +%s) - start )) s; $(grep -Eo 'Test run with [0-9]+ tests? (in [0-9]+ suites? )?passed' "$log" | tail -1)" >&2
done
exit $status
