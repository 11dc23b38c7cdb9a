"""Does the reward's score rank schedules the way the headline CER does (issue #29)?

The env's reward is the change of a potential, by default the composite score 0.4·intelligibility +
0.3·diagonality + 0.3·stop_score of the free-running figures (``env.reward``); the headline figure is
CER (intelligibility = 1 − CER). This reads finished compared runs (``controller.compare`` records,
no new training), pairs every two methods run on the same instance and seed, and asks how each part
of the score moves with CER between them: the correlation of each part's difference with the CER
difference, and the share of pairs a part orders as CER does (lower CER = better). Only dev records
are read; the sealed test grid (``results/full_run/``) never is.

    python benchmarks/score_vs_cer.py
"""
from __future__ import annotations

import itertools
import json
from collections import defaultdict

import numpy as np

from common import RESULTS, write_results
from tacotron.metrics import COMPOSITE_WEIGHTS

# compared runs on dev sets, scored with today's figures (earlier records have no stop_score)
DEV_RUNS = ["demo_policy_cer_runs", "ga_release_runs", "full_run_80d87e5/full_run_tiny_runs"]
FIGURES = ("cer", "intelligibility", "score")  # score: the composite each record already holds


def method_pairs(runs_dir: str) -> np.ndarray:
    """One row per pair of methods on the same (instance, seed): the first's figures minus the second's."""
    cells: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for path in sorted((RESULTS / runs_dir).glob("*__*.json")):
        record = json.loads(path.read_text())
        cells[(record["instance"], record["seed"])][path.name.split("__")[0]] = record["final"]
    return np.array([[a[f] - b[f] for f in FIGURES] for methods in cells.values()
                     for (_, a), (_, b) in itertools.combinations(sorted(methods.items()), 2)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def agreement(cer: np.ndarray, part: np.ndarray) -> tuple[float, float]:
    """(correlation of the part's difference with CER's, share of pairs it orders as CER does); a part
    that pays for what CER measures has both near −1 and 1 (it rises as CER falls). The correlation is
    taken about 0, not the mean: which method of a pair comes first is arbitrary."""
    return (float(np.sum(cer * part) / np.sqrt(np.sum(cer ** 2) * np.sum(part ** 2))),
            float(np.mean(np.sign(part) == -np.sign(cer))))


def main() -> None:
    w_speech = COMPOSITE_WEIGHTS[0] / sum(COMPOSITE_WEIGHTS)
    rows = []
    pooled = np.concatenate([method_pairs(d) for d in DEV_RUNS])
    for name, pairs in [*((d, method_pairs(d)) for d in DEV_RUNS), ("all", pooled)]:
        cer, intel, score = pairs.T
        parts = {"score": score, "diag_stop": score - w_speech * intel}
        row = {"runs": name, "pairs": len(pairs), "rms_cer": rms(cer), "rms_score_speech_part": rms(w_speech * intel),
               "rms_score_diag_stop_part": rms(parts["diag_stop"])}
        for part, values in parts.items():
            row[f"corr_{part}"], row[f"agree_{part}"] = agreement(cer, values)
        rows.append(row)
    write_results("score_vs_cer", {"dev_runs": DEV_RUNS, "weights": list(COMPOSITE_WEIGHTS)}, rows,
                  "The reward's score against the headline CER, between methods on the same run",
                  "Pairs of methods on the same dev instance and seed. `corr_*`: correlation of the part's "
                  "difference with the CER difference (−1: the part pays for exactly what CER measures); "
                  "`agree_*`: share of pairs the part orders as CER does (0.5: a coin). `diag_stop` is the "
                  "score's diagonality and stop share, the part not made of CER. rms: the root mean square of "
                  "each difference across the pairs.")


if __name__ == "__main__":
    main()
