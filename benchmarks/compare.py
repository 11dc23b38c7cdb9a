"""The equal-compute comparison (issue #8); the same as `tacotune bench compare`.

    python benchmarks/compare.py quick=true
    python benchmarks/compare.py policy=runs/controller/policy methods=[static,hand,optuna_tpe,policy]
"""
import sys

from controller.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "compare", *sys.argv[1:]]))
