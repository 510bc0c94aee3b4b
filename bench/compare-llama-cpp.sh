#!/usr/bin/env bash
# Runs llama.cpp's llama-bench and `shadowllm bench` on the same GGUF at the same precisions, in one
# run, and prints the ratio table. llama.cpp's source comes from the PyPI source archive of
# llama-cpp-python==0.3.36 (vendor/llama.cpp) and is built with cmake from PyPI in a temporary
# directory; none of its code enters this repository.
#
#   bench/compare-llama-cpp.sh [--model PATH] [--precisions f32,bf16,f16,bf16-dot,q8] [-p 512] [-n 128] [-r 5] [-t 2]
#
# bf16-dot (bf16 weights, inputs rounded to bf16, vdpbf16ps) is compared with llama.cpp's BF16 GGUF,
# whose CPU kernels also round the activations to bf16; bf16 (widened to fp32 here) against the same.
# q8 is compared with llama.cpp's Q8_0 (8-bit blocks of 32; llama.cpp also quantizes the activations
# to 8 bits for its integer dot products, where ours widen the weights to fp32 in registers).
# Set LLAMA_CPP_DIR to reuse a build directory between runs (it is kept when given).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${SHADOWLLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shadowllm}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PRECISIONS="f32,bf16,f16,q8"; P=512; N=128; R=5; T=2
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --precisions) PRECISIONS="$2"; shift 2 ;;
        -p) P="$2"; shift 2 ;;
        -n) N="$2"; shift 2 ;;
        -r) R="$2"; shift 2 ;;
        -t) T="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -s "$MODEL" ] || { echo "error: $MODEL: no such model (run scripts/setup.sh)" >&2; exit 1; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
WORK="${LLAMA_CPP_DIR:-$(mktemp -d)}"
[ -n "${LLAMA_CPP_DIR:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

if [ ! -x "$WORK/build/bin/llama-bench" ]; then
    log "fetching llama-cpp-python==0.3.36 source from PyPI"
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$WORK/dl" llama-cpp-python==0.3.36
    tar -xzf "$WORK"/dl/llama_cpp_python-0.3.36.tar.gz -C "$WORK"
    SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
    command -v cmake >/dev/null || python3 -m pip install --quiet cmake
    log "building llama-bench and llama-quantize (a few minutes on 2 cores)"
    cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
          -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
    cmake --build "$WORK/build" --target llama-bench llama-quantize -j 2 >/dev/null
fi

swift build -c release --product shadowllm 2>&1 | grep -E "error|warning: unre" || true
BIN=.build/release/shadowllm

# llama.cpp's GGUF type for a --weights value: bf16-dot is llama.cpp's BF16 (both round activations),
# q8 its Q8_0 (the same blocks; ours add a factor per column).
llama_type() { case "$1" in bf16-dot) echo bf16 ;; q8) echo q8_0 ;; *) echo "$1" ;; esac; }

mkdir -p "$WORK/results"
rm -f "$WORK"/results/llama-*.json
for precision in ${PRECISIONS//,/ }; do
    lp=$(llama_type "$precision")
    upper=$(echo "$lp" | tr a-z A-Z)
    gguf="$WORK/model-$lp.gguf"
    if [ ! -s "$gguf" ]; then
        log "converting the model to $upper for llama.cpp"
        "$WORK/build/bin/llama-quantize" --allow-requantize "$MODEL" "$gguf" "$upper" >/dev/null 2>&1
    fi
    if [ ! -s "$WORK/results/llama-$lp.json" ]; then   # once per GGUF type in a run
        log "llama-bench $upper"
        "$WORK/build/bin/llama-bench" -m "$gguf" -p "$P" -n "$N" -r "$R" -t "$T" -o json > "$WORK/results/llama-$lp.json"
    fi
    log "shadowllm bench $precision"
    $BIN bench -m "$MODEL" -p "$P" -n "$N" -r "$R" -t "$T" --weights "$precision" -o json --no-progress \
        > "$WORK/results/shadow-$precision.json"
done

python3 - "$WORK/results" "$PRECISIONS" "$P" "$N" "$T" <<'PY'
import json, os, sys, platform, datetime
results, precisions, p, n, t = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4], sys.argv[5]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"\n{datetime.date.today()} — {cpu}, {os.cpu_count()} cores, {t} threads\n")
print("| precision | test | llama.cpp t/s | shadowllm t/s | ratio |")
print("| --- | --- | ---: | ---: | ---: |")
for precision in precisions:
    llama_type = {"bf16-dot": "bf16", "q8": "q8_0"}.get(precision, precision)   # as llama_type() above
    llama = json.load(open(os.path.join(results, f"llama-{llama_type}.json")))
    shadow = json.load(open(os.path.join(results, f"shadow-{precision}.json")))["results"]
    for test, (pp, tg) in ((f"pp{p}", (int(p), 0)), (f"tg{n}", (0, int(n)))):
        ref = next((r for r in llama if r["n_prompt"] == pp and r["n_gen"] == tg), None)
        ours = next((r for r in shadow if r["test"] == test), None)
        if ref is None or ours is None:
            continue
        a, b = ref["avg_ts"], ours["tokens_per_second"]
        print(f"| {precision} | {test} | {a:.1f} ± {ref['stddev_ts']:.1f} | {b:.1f} ± {ours['stddev']:.1f} | {b / a:.2f}× |")
PY
