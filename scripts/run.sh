#!/usr/bin/env bash
# The main job on the default model: set everything up, then run the whole ShadowLLM pipeline
# (calibrate → train shadow and DejaVu predictors → held-out perplexity and task accuracy →
# benchmark) and print dense vs sparse accuracy and speed side by side. Calibration and training
# take about ten minutes on 2 cores and the PIQA/HellaSwag slices (200 items × 3 models) most of
# the rest: expect well over half an hour with the data present; --quick is a two-minute smoke run. Extra arguments go to `shadowllm pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .build/release/shadowllm pipeline "$@"
