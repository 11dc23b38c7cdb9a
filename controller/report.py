"""Summaries of compared runs: per-method figures, censored steps to align, paired differences.

``summarise`` returns the comparison JSON: ``episode_steps``, ``model``, ``instances``, ``seeds``,
``methods`` (the names), one entry per method with ``cer`` (the headline), ``mcd_dtw_sl``,
``gv_ratio``, ``infer_diagonality``, ``stop_rate`` and ``aligned_fraction`` as ``{mean, std, ci95_low,
ci95_high}`` (std with ddof = 1; the interval over instance means), ``steps_to_align_median`` (runs that
never aligned count at the run length; ``steps_to_align_censored`` says when the median sits there),
``diverged``, ``search_steps`` and ``search_cpu_s``; ``reference`` (the method every other one is
paired against, usually the policy); ``paired_by_instance`` (the headline): for each baseline,
``{metric: {delta_mean, ci95_low, ci95_high, p, holm_p}}`` of baseline − reference with each
instance's mean over its seeds as one pair, ``holm_p`` Holm-corrected across the baselines;
``paired``: the same over instance × seed runs (secondary: seeds of one instance are not
independent); ``meta``: the run settings and ``machine`` (CPU model, torch, date), since run
figures reproduce on one machine but not across machines.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import torch

from controller.methods.base import Spec
from controller.statistics import censored_median, holm, mean_std, paired_ci

PAIRED_METRICS = ("cer", "mcd_dtw_sl", "gv_ratio", "infer_diagonality", "stop_rate", "aligned", "steps_to_align",
                  "score")


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {"cpu": cpu_model(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": "cuda" if torch.cuda.is_available() else "cpu",
            "date": time.strftime("%Y-%m-%d %H:%M")}


def _figures(record: dict, budget: int) -> dict[str, float]:
    final = record["final"]
    return {"cer": final["cer"], "mcd_dtw_sl": final["mcd_dtw_sl"], "gv_ratio": final["gv_ratio"],
            "infer_diagonality": final["diagonality"], "stop_rate": final["stop_rate"],
            "stop_error_rel": final["stop_error_rel"], "score": final["score"],
            "aligned": float(record["steps_to_align"] is not None),
            "steps_to_align": float(record["steps_to_align"] if record["steps_to_align"] is not None else budget)}


def _method_summary(records: list[dict], spec: dict, budget: int) -> dict:
    figs = [_figures(r, budget) for r in records]
    voices = [r["instance"] for r in records]
    col = lambda key: mean_std([f[key] for f in figs], voices)  # noqa: E731  (one interval observation per voice)
    median = censored_median([r["steps_to_align"] for r in records], budget)
    return {"cer": col("cer"), "mcd_dtw_sl": col("mcd_dtw_sl"), "gv_ratio": col("gv_ratio"),
            "infer_diagonality": col("infer_diagonality"), "stop_rate": col("stop_rate"),
            "aligned_fraction": col("aligned"), "stop_error_rel": col("stop_error_rel"), "score": col("score"),
            "steps_to_align_median": median["median"], "steps_to_align_censored": median["censored"],
            "never_aligned": median["never_aligned"], "diverged": sum(r["diverged"] for r in records),
            "runs": len(records), "run_steps": max(r["run_steps"] for r in records),
            "search_steps": spec["search_steps"], "search_cpu_s": _search_cpu_s(spec, records),
            "wall_s_per_run": mean_std([r["wall_s"] for r in records])}


def _search_cpu_s(spec: dict, records: list[dict]) -> float:
    # a population method also pays, in every run, for the members it does not deliver
    return spec["search_cpu_s"] + float(np.mean([r.get("search_cpu_s", 0.0) for r in records]))


def budget_curve(points: dict[str, list[tuple[str, float | None, Spec]]], records: dict[str, list[dict]],
                 seeds: list[int]) -> dict:
    """Anytime curves from ``points`` ({method: [(run label, budget fraction, spec)]}) -> {method: [{"label",
    "budget_fraction", "search_cpu_s", "cer": {mean, std, ci95_low, ci95_high}, "runs"}]} by rising search
    cost, each point scored on its runs of ``seeds`` (the interval over voice means); points whose schedule
    did not change share their runs."""
    curve = {}
    for method, labelled in points.items():
        rows = []
        for label, fraction, spec in labelled:
            runs = [r for r in records.get(label, []) if r["seed"] in seeds]
            if runs:
                rows.append({"label": label, "budget_fraction": fraction,
                             "search_cpu_s": _search_cpu_s(dataclasses.asdict(spec), runs),
                             "cer": mean_std([r["final"]["cer"] for r in runs], [r["instance"] for r in runs]),
                             "runs": len(runs)})
        if rows:
            curve[method] = sorted(rows, key=lambda row: row["search_cpu_s"])
    return curve


def _paired(baseline: dict, reference: dict) -> dict:
    """{pair: figures} of a baseline and the reference over the same pairs -> {metric: paired CI}."""
    return {m: paired_ci([baseline[k][m] for k in baseline], [reference[k][m] for k in baseline])
            for m in PAIRED_METRICS}


def _instance_means(figures: dict, keys: list[tuple[str, int]]) -> dict[str, dict[str, float]]:
    """{(instance, seed): figures} -> {instance: figures averaged over its seeds among ``keys``}."""
    by_instance: dict[str, list[dict]] = {}
    for instance, seed in keys:
        by_instance.setdefault(instance, []).append(figures[instance, seed])
    return {i: {m: sum(f[m] for f in figs) / len(figs) for m in PAIRED_METRICS} for i, figs in by_instance.items()}


def summarise(runs: dict[str, list[dict]], specs: dict[str, dict], reference: str, meta: dict) -> dict:
    """``runs`` and ``specs`` by method label; every other method is paired against ``reference`` (when
    it is among them)."""
    budget = meta["episode_steps"]
    result = {"episode_steps": budget, "model": meta["model"], "instances": meta["instances"], "seeds": meta["seeds"],
              "methods": list(runs), "reference": reference, "meta": meta}
    for method, records in runs.items():
        result[method] = _method_summary(records, specs[method], budget)
    result["paired"], result["paired_by_instance"] = {}, {}
    key = lambda r: (r["instance"], r["seed"])  # noqa: E731
    ref = {key(r): _figures(r, budget) for r in runs.get(reference, [])}
    for method, records in runs.items():
        if method == reference or not ref:
            continue
        mine = {key(r): _figures(r, budget) for r in records}
        shared = sorted(set(mine) & set(ref))
        result["paired"][method] = _paired({k: mine[k] for k in shared}, {k: ref[k] for k in shared})
        # Seeds of one instance are not independent pairs: the headline interval has one pair per instance.
        result["paired_by_instance"][method] = _paired(_instance_means(mine, shared), _instance_means(ref, shared))
    for table in (result["paired"], result["paired_by_instance"]):  # the baselines are tested together
        for metric in PAIRED_METRICS:
            adjusted = holm({method: paired[metric]["p"] for method, paired in table.items()})
            for method, paired in table.items():
                paired[metric]["holm_p"] = adjusted[method]
    result["verdict"] = {method: verdict(paired["cer"]) for method, paired in result["paired_by_instance"].items()}
    result["runs"] = {m: [{k: v for k, v in r.items() if k not in ("curve", "knob_trajectory")} for r in rs]
                      for m, rs in runs.items()}
    return result


def verdict(cer: dict, alpha: float = 0.05) -> str:
    """The reference against one baseline on the CER pairs given (baseline − reference; the headline and
    ``result["verdict"]`` use one pair per voice, the secondary table every run): ``ahead`` or ``behind``
    where the Holm-corrected p is below ``alpha``, ``tied`` otherwise (too few pairs to test is ``tied``
    too: nothing shows a difference)."""
    if cer["holm_p"] is None or cer["holm_p"] >= alpha:
        return "tied"
    return "ahead" if cer["delta_mean"] > 0 else "behind"


def _run_hours(result: dict) -> float:
    return sum(r["wall_s"] for runs in result["runs"].values() for r in runs) / 3600


def _interval(value: float | None, low: float | None, high: float | None, spec: str) -> str:
    """``value [low, high]`` in the format ``spec``; the value alone where there is no interval."""
    if value is None:
        return "–"
    if low is None:
        return f"{value:{spec}}"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def _ms(stat: dict, digits: int = 3) -> str:
    """A mean with its 95 % interval (over voices) where there is one."""
    return _interval(stat["mean"], stat["ci95_low"], stat["ci95_high"], f".{digits}f")


def _ci(d: dict, digits: int = 3) -> str:
    """A paired difference, signed, with its 95 % interval."""
    return _interval(d["delta_mean"], d["ci95_low"], d["ci95_high"], f"+.{digits}f")


def _budget(fraction: float | None) -> str:
    return "compared" if fraction is None else f"{fraction:g}x"


PAIRED_HEADER = ("| baseline | CER | CER p (Holm) | verdict | MCD (dB) | GV | diagonality | stop rate | aligned "
                 "| steps to align | score |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _p(d: dict) -> str:
    return "–" if d["holm_p"] is None else f"{d['holm_p']:.3f}"


def _paired_rows(paired: dict) -> list[str]:
    return [f"| {m} | {_ci(d['cer'])} | {_p(d['cer'])} | {verdict(d['cer'])} | {_ci(d['mcd_dtw_sl'], 2)} | "
            f"{_ci(d['gv_ratio'], 2)} | "
            f"{_ci(d['infer_diagonality'])} | {_ci(d['stop_rate'], 2)} | "
            f"{_ci(d['aligned'], 2)} | {_ci(d['steps_to_align'], 0)} | {_ci(d['score'])} |" for m, d in paired.items()]


def markdown_report(result: dict, title: str) -> str:
    meta = result["meta"]
    lines = [f"# {title} ({'quick' if meta['quick'] else 'full'})", "",
             f"Test instances {', '.join(result['instances'])}; seeds {result['seeds']}; model {result['model']}; "
             f"{result['episode_steps']} optimiser steps per run from scratch, a decision every "
             f"{meta['steps_per_action']}; test split decoded free-running every {meta['eval_every']} steps; "
             f"{_run_hours(result):.2f} h of run wall time (summed over runs; searches excluded). Mean over runs with a 95 % "
             "interval that takes each instance's mean as one observation (none with one instance). CER = the "
             "recogniser's character error rate on the free-running test split (the headline; lower is better); "
             "MCD = MCD-DTW-SL in dB (lower is better); GV = global-variance ratio (1 is right, below is "
             "over-smoothed). Steps to align: median with never-aligned runs counted at "
             "the run length (≥ marks a censored median). Search cost = everything spent to obtain the schedule."
             + (f" Measured on {meta['machine']['cpu']}, {meta['machine']['date']}." if "machine" in meta else ""),
             "", "| method | CER | MCD (dB) | GV | free-running diagonality | stop rate | aligned | steps to align "
             "(median) | diverged | score | search steps | search CPU-s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in result["methods"]:
        r = result[m]
        median = f"{'≥' if r['steps_to_align_censored'] else ''}{r['steps_to_align_median']:.0f}"
        lines.append(f"| {m} | {_ms(r['cer'])} | {_ms(r['mcd_dtw_sl'], 2)} | {_ms(r['gv_ratio'], 2)} | "
                     f"{_ms(r['infer_diagonality'])} | {_ms(r['stop_rate'], 2)} | "
                     f"{r['runs'] - r['never_aligned']}/{r['runs']} | {median} | {r['diverged']} | {_ms(r['score'])} | "
                     f"{r['search_steps']} | {r['search_cpu_s']:.0f} |")
    if result.get("paired"):
        ref = result["reference"]
        lines += ["", f"Paired differences baseline − {ref}, mean [95 % CI], with each instance's mean over seeds as "
                  "one pair (seeds of one instance are not independent); p: paired t-test, Holm-corrected across the "
                  f"baselines. Positive CER / MCD / steps to align, or negative diagonality / aligned / score, favour {ref}. "
                  f"Verdict: {ref} ahead or behind where the CER's Holm-corrected p < 0.05, tied otherwise.",
                  "", PAIRED_HEADER]
        lines += _paired_rows(result["paired_by_instance"])
        if len(result["seeds"]) > 1:
            lines += ["", "Secondary: the same over every instance × seed run as a pair (narrower, and too narrow: "
                      "seeds of one instance share its voice).", "", PAIRED_HEADER]
            lines += _paired_rows(result["paired"])
    if result.get("budget_curve"):
        seeds = result["meta"]["budget_seeds"]
        lines += ["", f"Anytime: each method's schedule at fractions of {result['reference']}'s search cost (Optuna's "
                  "best trial so far, the policy's PPO checkpoints), its CPU-seconds spent and its test CER on seeds "
                  f"{seeds} of every instance, mean [95 % CI over voices]; fixed-cost methods are one point; a "
                  "budget whose schedule did not change shares the runs named under schedule.", "",
                  "| method | budget | schedule | search CPU-s | CER | runs |", "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {_budget(p['budget_fraction'])} | {p['label']} | {p['search_cpu_s']:.0f} | "
                  f"{_ms(p['cer'])} | {p['runs']} |" for m, curve in result["budget_curve"].items() for p in curve]
    return "\n".join(lines) + "\n"
