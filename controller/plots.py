"""Plots shared by deploy, explain and the benchmarks."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tacotron.knobs import KNOB_NAMES  # noqa: E402


def plot_knob_trajectories(trajectories: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """One axis per knob; each entry of ``trajectories`` is a label -> rows {"step", knob...}."""
    fig, axes = plt.subplots(len(KNOB_NAMES), 1, figsize=(8, 2 * len(KNOB_NAMES)), sharex=True)
    for label, rows in trajectories.items():
        steps = [row["step"] for row in rows]
        for ax, name in zip(axes, KNOB_NAMES):
            ax.step(steps, [row[name] for row in rows], where="post", label=label)
    for ax, name in zip(axes, KNOB_NAMES):
        ax.set_ylabel(name)
        if name == "lr":
            ax.set_yscale("log")
    axes[0].legend(fontsize="small")
    axes[-1].set_xlabel("optimiser step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_test_curves(curves: dict[str, list[list[dict]]], path: Path) -> None:
    """Test-split CER and free-running diagonality against optimiser steps, mean over runs."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for label, runs in curves.items():
        n = min(len(run) for run in runs)
        steps = [p["step"] for p in runs[0][:n]]
        for ax, key in zip(axes, ("cer", "diagonality")):
            ax.plot(steps, [sum(run[i][key] for run in runs) / len(runs) for i in range(n)], label=label)
            ax.set_title(f"test {key} (mean over runs)")
            ax.set_xlabel("optimiser step")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_budget_curve(curve: dict[str, list[dict]], path: Path, reference: str) -> None:
    """Anytime curves: test CER (mean with its 95 % interval over voices) against search CPU-seconds, one
    line per method; a method that costs nothing (static, hand) is a dashed level across the plot."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, points) in enumerate(curve.items()):
        cer, color = [p["cer"] for p in points], colors[i % len(colors)]
        if all(p["search_cpu_s"] == 0 for p in points):
            ax.axhline(cer[0]["mean"], linestyle="--", linewidth=1, color=color, label=f"{method} (no search)")
            continue
        low = [c["mean"] - (c["ci95_low"] if c["ci95_low"] is not None else c["mean"]) for c in cer]
        high = [(c["ci95_high"] if c["ci95_high"] is not None else c["mean"]) - c["mean"] for c in cer]
        ax.errorbar([p["search_cpu_s"] for p in points], [c["mean"] for c in cer], yerr=[low, high], marker="o",
                    capsize=3, color=color, linewidth=2 if method == reference else 1, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("search CPU-seconds (everything spent to obtain the schedule)")
    ax.set_ylabel("test CER (lower is better)")
    ax.set_title("Anytime: quality against search cost")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
