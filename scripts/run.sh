#!/usr/bin/env bash
# The main job on the default model: set everything up, then run the whole ShadowLLM pipeline
# (calibrate → train shadow and DejaVu predictors → held-out perplexity and task accuracy →
# benchmark) and print dense vs sparse accuracy and speed side by side: 8½ minutes on
# 2 cores once set up (docs/results.md); --quick is a two-minute smoke run. Extra arguments go to
# `shadowllm pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .build/release/shadowllm pipeline "$@"
