"""Statistics for the benchmarks: means with intervals, censored medians, paired intervals with p-values
and Holm's correction across baselines."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _t_half_width(values: np.ndarray, level: float) -> float:
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))


def mean_std(values: list[float], groups: list | None = None, level: float = 0.95) -> dict[str, float | None]:
    """Mean, sample standard deviation (ddof = 1) and a Student-t interval of the mean. With ``groups``
    (each value's voice, say) the interval takes each group's mean as one observation, since values of
    one group are not independent; fewer than 2 observations give no interval."""
    if not values:
        return {"mean": None, "std": None, "ci95_low": None, "ci95_high": None}
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    if groups is not None:
        by_group: dict = {}
        for g, v in zip(groups, values):
            by_group.setdefault(g, []).append(v)
        observations = np.array([np.mean(v) for v in by_group.values()])
    else:
        observations = np.asarray(values, dtype=np.float64)
    if len(observations) < 2:
        return {"mean": mean, "std": std, "ci95_low": None, "ci95_high": None}
    half = _t_half_width(observations, level)
    centre = float(observations.mean())
    return {"mean": mean, "std": std, "ci95_low": centre - half, "ci95_high": centre + half}


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


def paired_ci(baseline: list[float], reference: list[float], level: float = 0.95) -> dict[str, float | None]:
    """Mean of the paired differences baseline − reference with a Student-t confidence interval and the
    two-sided paired t-test's p-value (differences that do not vary: p = 1 if all are 0, else 0)."""
    if len(baseline) != len(reference):
        raise ValueError(f"paired samples differ in size: {len(baseline)} and {len(reference)}")
    d = np.asarray(baseline, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if len(d) == 0:
        return {"delta_mean": None, "ci95_low": None, "ci95_high": None, "p": None}
    mean = float(d.mean())
    if len(d) < 2:
        return {"delta_mean": mean, "ci95_low": None, "ci95_high": None, "p": None}
    half = _t_half_width(d, level)
    sd = d.std(ddof=1)
    p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(len(d))), len(d) - 1)) if sd > 0 else float(mean == 0)
    return {"delta_mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "p": p}


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of p-values tested together (one per baseline): the k-th smallest of m
    is multiplied by m − k + 1, kept monotone and capped at 1. None (no test) stays None."""
    tested = sorted((p, name) for name, p in p_values.items() if p is not None)
    adjusted, running = dict.fromkeys(p_values), 0.0
    for k, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * p))
        adjusted[name] = running
    return adjusted
