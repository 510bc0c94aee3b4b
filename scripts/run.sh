#!/usr/bin/env bash
# The main job on the default model: set up, then generate from a prompt and score a paragraph.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=.build/release/shadowllm
$BIN info
echo
$BIN generate --chat --prompt "What is contextual sparsity in one sentence?" --max-tokens 48 --verbose
echo
$BIN perplexity --text-file docs/sample.txt --json
