#!/usr/bin/env bash
# The CUDA path (device=cuda, AMP) on a machine with a GPU: small and full models, ~50 steps each.
#
#   bash scripts/gpu_check.sh            # here, with network: setup.sh, then a CUDA build of torch in .venv
#                                        #   (e.g. .venv/bin/pip install torch==2.13.0 --index-url
#                                        #    https://download.pytorch.org/whl/cu128), then the check
#   bash scripts/gpu_check.sh --bundle   # on this machine: pack what an offline GPU machine that has its own
#                                        #   CUDA torch (python3) lacks into .gpu/: cp312 wheels of our
#                                        #   non-torch imports and the en-us@170 proxy corpus (no espeak there)
#   bash scripts/gpu_check.sh --offline  # on that GPU machine, over a copy of the tree with .gpu/ in it
# Not run by CI (no GPU there). Results: benchmarks/results/gpu_check.md.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --bundle)
    # Packages the GPU image lacks (numpy, scipy, scikit-learn, numba, tensorboard, tqdm are there).
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .gpu/whl librosa soundfile soxr audioread pooch decorator platformdirs \
      cffi pycparser jiwer rapidfuzz inflect typeguard more_itertools jaraco.functools
    mkdir -p .gpu/cache
    cp -r "${TACOTUNE_CACHE:-$HOME/.cache/tacotune}/asr" .gpu/cache/
    TACOTUNE_CACHE="$PWD/.gpu/cache" .venv/bin/python -c "
from tacotron.run import TrainingSetup, load_data
s = TrainingSetup()
load_data('en-us@170', s.proxy, s.audio, s.dataset, progress=False)"
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    du -sh .gpu ;;
  --offline)
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .gpu/whl/*.whl
    PYTHONPATH="/tmp/site:$PWD" TACOTUNE_CACHE="$PWD/.gpu/cache" python3 scripts/gpu_check.py ;;
  "")
    bash scripts/setup.sh
    .venv/bin/python scripts/gpu_check.py ;;
  *) echo "usage: bash scripts/gpu_check.sh [--bundle|--offline]" >&2; exit 2 ;;
esac
