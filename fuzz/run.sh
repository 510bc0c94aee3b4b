#!/usr/bin/env bash
# Builds the libFuzzer harness (fuzz/Targets.swift) against the package's library modules and runs
# one target.   fuzz/run.sh TARGET [SECONDS | -runs=N] [extra libFuzzer flags…]
#               fuzz/run.sh TARGET FILE…  (run the inputs once each, e.g. to reproduce a crash)
#               fuzz/run.sh build         (only compile)       fuzz/run.sh list   (target names)
#
# SwiftPM cannot link a libFuzzer binary (its executable already has a `main`), so this compiles
# ShadowKernels, ShadowFormats, ShadowTokenizers, ShadowTasks, ShadowModels and ShadowSparsity straight with swiftc,
# instrumented for coverage (-sanitize=fuzzer) and checked with AddressSanitizer, at -O: unlike the
# release build's -Ounchecked, overflow and bounds checks stay in, so a trap shows as a crash.
# Package.swift is untouched; `swift build` and `swift test` build as before.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/fuzz/.build"
binary="$build/shadow-fuzz"
mkdir -p "$build"

targets() { sed -n 's/^ *case "\([a-z0-9_]*\)":.*/\1/p' "$root/fuzz/Targets.swift"; }

compile() {
    local sanitize=(-sanitize=fuzzer,address)
    # CBLAS is a system-library module: its module map sits in its source directory.
    local common=(-O -g -parse-as-library -enable-testing -swift-version 6 -I "$build" -I "$root/Sources/CBLAS"
                  -Xcc -fmodule-map-file="$build/CHalf.modulemap" -Xcc -I"$root/Sources/CHalf/include")
    local x86=()
    if [[ "$(uname -m)" == x86_64 ]]; then x86=(-target-cpu haswell -Xcc -march=haswell); fi
    # CHalf: a module map for its headers (SwiftPM writes one itself) and its C files.
    printf 'module CHalf {\n    umbrella "%s"\n    export *\n}\n' "$root/Sources/CHalf/include" > "$build/CHalf.modulemap"
    local c_file
    for c_file in "$root"/Sources/CHalf/*.c; do
        clang -O1 -g -fsanitize=fuzzer-no-link,address ${x86:+-march=haswell} -I "$root/Sources/CHalf/include" \
            -c "$c_file" -o "$build/$(basename "$c_file" .c).o"
    done
    local module stale=""
    for module in ShadowKernels ShadowFormats ShadowTokenizers ShadowTasks ShadowModels ShadowSparsity; do
        local sources=()
        while IFS= read -r -d '' file; do sources+=("$file"); done \
            < <(find "$root/Sources/$module" -name '*.swift' -print0 | sort -z)
        # A module is rebuilt when one of its sources changed, or a module before it was rebuilt.
        if [[ -z "$stale" && -f "$build/$module.o" && -z "$(find "${sources[@]}" -newer "$build/$module.o" -print -quit)" ]]; then
            continue
        fi
        stale=1
        echo "fuzz: compiling $module" >&2
        swiftc "${common[@]}" "${sanitize[@]}" "${x86[@]}" -wmo -module-name "$module" \
            -emit-module -emit-module-path "$build/$module.swiftmodule" -c -o "$build/$module.o" "${sources[@]}"
    done
    echo "fuzz: linking $binary" >&2
    swiftc "${common[@]}" "${sanitize[@]}" "${x86[@]}" -module-name ShadowFuzz \
        "$root/fuzz/Targets.swift" "$build"/Shadow{Kernels,Formats,Tokenizers,Tasks,Models,Sparsity}.o "$build"/CHalf*.o \
        -lopenblas -o "$binary" 2> >(grep -v "Cannot export local symbol" >&2)
}

# Rebuilds when a source or the harness is newer than the binary (`fuzz/run.sh build` forces it).
needs_build() {
    [[ ! -x "$binary" ]] && return 0
    [[ -n "$(find "$root/Sources" "$root/fuzz/Targets.swift" -newer "$binary" -type f -print -quit)" ]]
}

target="${1:-}"
case "$target" in
    "" | -h | --help) sed -n '2,5p' "$0"; exit 2 ;;
    list) targets; exit 0 ;;
    build) rm -f "$build"/*.o; compile; exit 0 ;;
esac
targets | grep -qx "$target" || { echo "fuzz: unknown target \"$target\"; known: $(targets | tr '\n' ' ')" >&2; exit 2; }
shift
if needs_build; then compile; fi

# LeakSanitizer reports Swift objects held in enum payloads as leaked (the pointer is stored with
# tag bits it cannot see through), so leak checking stays off.
# Allocation stack traces are cut to 4 frames: recording them was a tenth of the run time.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:malloc_context_size=4}"
export SHADOW_FUZZ_TARGET="$target"

if [[ $# -gt 0 && -f "$1" ]]; then exec "$binary" -detect_leaks=0 "$@"; fi

limit=()
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then limit=(-max_total_time="$1"); shift; fi

# New inputs go to a scratch directory; the committed seeds in fuzz/corpus/TARGET stay as they are
# (libFuzzer writes new units to the first corpus directory only).
work="$build/corpus/$target"
mkdir -p "$work" "$build/crashes/$target"
seeds="$root/fuzz/corpus/$target"
[[ -d "$seeds" ]] || seeds=""
# Predictor files carry a few KB of metadata before their first weight.
max_len=4096
[[ "$target" == predictor ]] && max_len=16384
cd "$build"
exec "$binary" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$build/crashes/$target/" -print_final_stats=1 -detect_leaks=0 "${limit[@]}" "$@" "$work" ${seeds:+"$seeds"}
