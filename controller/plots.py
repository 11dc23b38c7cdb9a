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


def plot_curves(curves: dict[str, list[list[dict]]], path: Path) -> None:
    """Composite score and validation mel loss against optimiser steps, mean over runs per method."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    for label, runs in curves.items():
        steps = [p["step"] for p in runs[0]]
        for ax, key in zip(axes, ("score", "val_mel_loss", "infer_diagonality")):
            values = [[p.get(key, float("nan")) for p in run] for run in runs]
            ax.plot(steps, [sum(v[i] for v in values) / len(values) for i in range(len(steps))], label=label)
            ax.set_title(key)
            ax.set_xlabel("optimiser step")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_alignments(alignments: dict, path: Path) -> None:
    """Final free-running alignments side by side; each value is ``[T_dec, N]``."""
    fig, axes = plt.subplots(1, len(alignments), figsize=(4 * len(alignments), 3.5), squeeze=False)
    for ax, (label, a) in zip(axes[0], alignments.items()):
        ax.imshow(a.T, origin="lower", aspect="auto", interpolation="none")
        ax.set_title(label)
        ax.set_xlabel("decoder step")
        ax.set_ylabel("token")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_budget(result: dict, path: Path) -> None:
    """The total-budget view: held-out final score against the optimiser steps spent to obtain each
    schedule (PPO's training episodes, Optuna's trials), with Optuna's best-so-far training score."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for method in result["methods"]:
        r = result[method]
        ax.errorbar(r["search_steps"], r["final_score"]["mean"], yerr=r["final_score"]["std"], marker="o",
                    capsize=3, linestyle="none", label=f"{method} (held-out)")
        if r.get("search_curve"):
            curve = r["search_curve"]
            ax.plot([p["steps"] for p in curve], [p["best_train_score"] for p in curve], linestyle="--",
                    label=f"{method} best so far (training instances)")
    ax.set(xlabel="optimiser steps spent to obtain the schedule", ylabel="final composite score")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
