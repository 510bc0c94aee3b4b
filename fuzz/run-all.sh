#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after another for a fixed number of executions and
# prints one Markdown table row each, as docs/hardening.md records them.
#   fuzz/run-all.sh [-runs=N] [TARGET…]        (default -runs=1000000, every target)
# Logs go to fuzz/.build/logs/TARGET.log; a crash input to fuzz/.build/crashes/TARGET/.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="-runs=1000000"
if [[ "${1:-}" == -runs=* ]]; then runs="$1"; shift; fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then mapfile -t targets < <("$root/fuzz/run.sh" list); fi
"$root/fuzz/run.sh" "${targets[0]}" -runs=0 > /dev/null 2>&1  # builds once, before the clock starts
mkdir -p "$root/fuzz/.build/logs"
echo "| target | executions | seconds | exec/s | peak RSS MB | corpus | result |"
echo "|---|---:|---:|---:|---:|---:|---|"
for target in "${targets[@]}"; do
    log="$root/fuzz/.build/logs/$target.log"
    "$root/fuzz/run.sh" "$target" "$runs" > "$log" 2>&1
    status=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    # libFuzzer's own clock, which leaves out a rebuild that run.sh may have done first.
    seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(ls "$root/fuzz/.build/corpus/$target" | wc -l)
    if [[ $status -eq 0 ]]; then result="no crash, hang or OOM"; else
        result="FAILED: $(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|Fatal error: .*|ERROR: AddressSanitizer: [a-z-]+' "$log")"
    fi
    echo "| $target | $(stat number_of_executed_units) | $seconds | $(stat average_exec_per_sec) | $(stat peak_rss_mb) | $corpus | $result |"
done
