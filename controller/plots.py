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
