#!/usr/bin/env bash
# The CUDA path (device=cuda, AMP) on a machine with a GPU: small and full models, ~50 steps each.
# Needs a CUDA build of torch in .venv (setup.sh installs the CPU wheel; replace it, e.g.
#   .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128).
# Not run by CI (no GPU there). Usage: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/gpu_check.py
