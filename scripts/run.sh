#!/usr/bin/env bash
# The main job on the default model: set everything up, then run the whole ShadowLLM pipeline
# (calibrate → train shadow and DejaVu predictors → held-out perplexity and task accuracy →
# benchmark at f16 and q8 → each method's reply to one question) and print dense vs sparse
# accuracy and speed side by side: 5 to 9 minutes on
# 2 cores of a Zen 4 or 5 once set up, about 8 on a Zen 3, 16 on a Zen 1 (docs/results.md); --quick is a two-minute smoke run. Extra arguments go to
# `shadowllm pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .build/release/shadowllm pipeline "$@"
