"""Statistics for the benchmarks: censored medians and paired confidence intervals."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_std(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def censored_median(steps: list[int | None], budget: int) -> dict:
    """Median steps to align with runs that never aligned (None) counted at ``budget``.

    ``censored`` is true when at least half the runs never aligned: then the median is one of the
    filled-in values and the true median is only known to lie beyond the budget.
    """
    if not steps:
        return {"median": None, "censored": False, "never_aligned": 0}
    never = sum(s is None for s in steps)
    median = float(np.median([budget if s is None else s for s in steps]))
    return {"median": median, "censored": 2 * never >= len(steps), "never_aligned": never}


def paired_ci(baseline: list[float], policy: list[float], level: float = 0.95) -> dict[str, float | None]:
    """Mean of the paired differences baseline − policy with a Student-t confidence interval."""
    if len(baseline) != len(policy):
        raise ValueError(f"paired samples differ in size: {len(baseline)} and {len(policy)}")
    d = np.asarray(baseline, dtype=np.float64) - np.asarray(policy, dtype=np.float64)
    if len(d) == 0:
        return {"delta_mean": None, "ci95_low": None, "ci95_high": None}
    mean = float(d.mean())
    if len(d) < 2:
        return {"delta_mean": mean, "ci95_low": None, "ci95_high": None}
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return {"delta_mean": mean, "ci95_low": mean - half, "ci95_high": mean + half}
