"""Reactions against PPO compute (issue #29): does more PPO teach a policy to react as practitioners do?

Every PPO checkpoint a ``controller train`` run saved (``checkpoints/step_*``, then ``policy``) is asked the
counterfactual questions of ``controller explain`` on one fixed set of saved dev-run states
(``explain/counterfactual_states.npz``, the same states for every checkpoint, so the changes are paired):
its LR action with a 30x loss spike against none, and its guided-attention action with alignment confirmed
against not. A checkpoint's cost is everything spent to obtain it (``controller.methods.policy.policy_cost``:
the warm-start bank plus its PPO CPU time). Nothing is trained or run here; it takes about a minute.

Several ``--run`` (for example one recipe trained with several PPO seeds) are asked the same questions, one
line each, so their spread shows what is the recipe and what is the seed. Writes
``results/<name>.{json,md,png}`` (``--name``, default ``reaction_curve``).

    python benchmarks/reaction_curve.py --run runs/reacting_policy_v3b [--run runs/reacting_policy_v3_s1 ...] \
        --states benchmarks/results/reacting_policy_v3/explain/counterfactual_states.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, write_results  # noqa: E402
from controller.explain import policy_reactions  # noqa: E402
from controller.methods.policy import policy_cost  # noqa: E402
from controller.policy_io import load_meta  # noqa: E402

# (question, knob, the direction practitioners move it): a spike cuts the LR; alignment releases guided attention
REACTIONS = (("spike_minus_calm", "lr"), ("aligned_minus_unaligned", "ga_weight"))


def reactions(policy: Path, states: dict[str, np.ndarray]) -> dict:
    """The mean change of each reaction's knob action over the states, and the share of states that move it down."""
    changes = policy_reactions(policy, states)
    row = {}
    for question, knob in REACTIONS:
        change = changes[question][knob]
        row |= {f"{question}_{knob}": float(change.mean()), f"{question}_{knob}_share_down": float((change < 0).mean())}
    return row


def plot(rows: list[dict], path: Path) -> None:
    """One panel per reaction, one line per training run."""
    fig, axes = plt.subplots(1, len(REACTIONS), figsize=(11, 3.5), sharey=True)
    for ax, (question, knob) in zip(axes, REACTIONS):
        for run in dict.fromkeys(row["run"] for row in rows):
            mine = [row for row in rows if row["run"] == run]
            ax.plot([row["search_cpu_min"] for row in mine], [row[f"{question}_{knob}"] for row in mine],
                    marker="o", label=Path(run).name)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"{knob}: {question}", fontsize="medium")
        ax.set_xlabel("search CPU-minutes (bank + PPO)")
    axes[0].set_ylabel("action change (< 0: as practitioners)")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, action="append",
                        help="a controller train out_dir (checkpoints/ and policy/); repeat for several runs")
    parser.add_argument("--states", required=True, help="counterfactual_states.npz written by controller explain")
    parser.add_argument("--name", default="reaction_curve", help="results/<name>.{json,md,png}")
    args = parser.parse_args()
    runs, states = [Path(run) for run in args.run], dict(np.load(args.states))
    rows = []
    for run in runs:
        saved = sorted((run / "checkpoints").glob("step_*"), key=lambda p: load_meta(p)["num_timesteps"])
        for policy in [*saved, run / "policy"]:
            meta = load_meta(policy)
            rows.append({"run": str(run), "checkpoint": policy.name, "env_steps": meta["num_timesteps"],
                         "ppo_wall_min": meta.get("train_seconds", 0.0) / 60,
                         "search_cpu_min": policy_cost(policy)["search_cpu_s"] / 60, **reactions(policy, states)})
    plot(rows, RESULTS / f"{args.name}.png")
    names = ", ".join(f"`{run}`" for run in runs)
    write_results(args.name, {"runs": [str(run) for run in runs], "states": args.states,
                              "n_states": len(states["spike"])}, rows,
                  "Reactions against PPO compute",
                  f"{names}, asked on the {len(states['spike'])} saved dev states of `{args.states}`. Each change is "
                  "the policy's action with the fact minus without it, in action units (< 0 lowers the knob, as "
                  "practitioners do); share_down: the share of states where it does.")


if __name__ == "__main__":
    main()
