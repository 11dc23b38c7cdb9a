"""Shifted conditions (issue #29): where a schedule fixed in advance cannot know the run, does the policy
react, and does it stay safe?

One comparison per condition (``controller.compare``: every method on the same runs from scratch,
scored on the test splits decoded free-running, search costs counted in full), each paired against
the policy with one pair per voice:

* ``long``: --long-steps (5,000) step runs; the policy's bank runs are 1,500 steps;
* ``longer``: --longer-steps (10,000) step runs of static, the replay and the policy only: does any knob
  drift to a bound (the searches and hand are scored at 5,000 steps; 10,000 costs about 15 CPU-min a run);
* ``small``: the small model; the policy trained on the tiny one;
* ``batch``: batches of --batch-size (64); training drew 16 (or 8, 16 and 32);
* ``late``: voices speaking sentences of 8-12 words, which delay alignment about 2-3x (``--late-set``);
* ``unfamiliar``: voices unlike every training voice: klatt, aged, robotic (``--unfamiliar-set``).

Methods: static, hand, both multi-fidelity searches (within the policy's search cost), the policy's
open-loop replay and the policy. Writes ``results/shift.{json,md,png}`` over every condition finished in
``results/shift/`` (this invocation's and earlier ones'): ``conditions``; per condition
each method's figures as {mean, std, ci95_low, ci95_high}, ``paired_by_instance`` (baseline − policy,
``replay`` among the baselines) and, for ``long`` and ``longer``, ``knob_at_bound_fraction``: per knob
the share of the policy's run steps at a bound of its range, and whether its reference sits there too.
Runs resume from ``results/shift/``. Design on the dev sets; the sealed test sets once, at the end
(benchmarks/README.md: issue #29's scoring run).

    python benchmarks/shift.py --policy runs/reacting_policy/policy [--conditions long,small] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS  # noqa: E402
from controller.baselines import OptunaConfig  # noqa: E402
from controller.compare import CompareConfig, compare  # noqa: E402
from controller.policy_io import load_env_config  # noqa: E402
from controller.report import markdown_report  # noqa: E402
from env.instances import load_instance_set  # noqa: E402
from tacotron.knobs import KNOB_DEFS, KNOB_NAMES, KnobSpace  # noqa: E402

METHODS = ["static", "hand", "tuned_static", "optuna_tpe", "replay", "policy"]
CONDITIONS = ("long", "longer", "small", "batch", "late", "unfamiliar")
LONG = ("long", "longer")  # the conditions whose knob trajectories are checked for drift to a bound


def condition_methods(name: str, methods: list[str]) -> list[str]:
    """Of ``methods``, those condition ``name`` runs: ``longer`` only static, the replay and the policy."""
    return [m for m in methods if m in ("static", "replay", "policy")] if name == "longer" else methods


def knob_at_bound_fraction(trajectories: list[list[dict]], run_steps: int, space: KnobSpace) -> dict:
    """Per knob: the share of the runs' optimiser steps it spent at a bound of ``space`` (each trajectory
    row holds from its step to the next row's, the last to ``run_steps``), and whether its reference sits
    at that bound as well (then sitting there is the static choice, not drift)."""
    shares = {}
    for name in KNOB_NAMES:
        s, at, total = space.spec(name), 0, 0
        bound = lambda value: any(math.isclose(value, b, rel_tol=1e-9) for b in (s.low, s.high))  # noqa: E731
        for rows in trajectories:
            ends = [row["step"] for row in rows[1:]] + [run_steps]
            for row, end in zip(rows, ends):
                total += end - row["step"]
                at += (end - row["step"]) * bound(row[name])
        shares[name] = {"share": at / max(total, 1), "reference_at_bound": bound(KNOB_DEFS[name].reference)}
    return shares


def condition_config(name: str, args: argparse.Namespace, out: Path) -> CompareConfig:
    dev = load_instance_set(args.instance_set)[:args.instances]
    base = CompareConfig(methods=condition_methods(name, args.methods), policy=args.policy, data=dev,
                         seeds=list(range(args.seeds)), episode_steps=args.steps, eval_every=args.eval_every,
                         workers=args.workers,
                         out_dir=str(out), name=f"shift_{name}", search_dir=str(out / "searches"), quick=args.quick,
                         optuna=OptunaConfig(workers=args.workers))
    if name in LONG:
        steps = args.long_steps if name == "long" else args.longer_steps
        return replace(base, episode_steps=steps, eval_every=max(args.eval_every, steps // 25))
    if name == "small":
        return replace(base, model="small")
    if name == "batch":
        return replace(base, batch_size=args.batch_size)
    return replace(base, data=load_instance_set(args.late_set if name == "late" else args.unfamiliar_set))


def combine(out: Path, space: KnobSpace) -> dict:
    """The combined result of every condition finished under ``out``, in ``CONDITIONS`` order, so that
    conditions run by separate invocations (a pass is hours long) report together."""
    combined = {"conditions": [c for c in CONDITIONS if (out / f"shift_{c}.json").exists()]}
    for name in combined["conditions"]:
        summary = json.loads((out / f"shift_{name}.json").read_text())
        combined[name] = {key: summary[key] for key in ("instances", "seeds", "model", "episode_steps", "methods",
                                                         "paired_by_instance", *summary["methods"])}
        combined[name]["machine"] = summary["meta"]["machine"]  # conditions may run on different days
        if name in LONG:
            combined[name]["knob_at_bound_fraction"] = knob_at_bound_fraction(
                [json.loads(p.read_text())["knob_trajectory"] for p in sorted((out / f"shift_{name}_runs").glob(
                    "policy__*.json"))], summary["episode_steps"], space)
    return combined


def plot_conditions(result: dict, path: Path) -> None:
    """Test CER of each method under each condition (mean with its 95 % interval over voices; a method a
    condition does not run has no bar there)."""
    conditions = result["conditions"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(conditions)), 4))
    methods = [m for m in METHODS if any(m in result[c]["methods"] for c in conditions)]
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        at = [i for i, c in enumerate(conditions) if method in result[c]["methods"]]
        stats = [result[conditions[i]][method]["cer"] for i in at]
        means = [s["mean"] for s in stats]
        errors = [[m - (s["ci95_low"] if s["ci95_low"] is not None else m) for m, s in zip(means, stats)],
                  [(s["ci95_high"] if s["ci95_high"] is not None else m) - m for m, s in zip(means, stats)]]
        ax.bar([i + j * width for i in at], means, width, yerr=errors, capsize=2, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(conditions))], conditions)
    ax.set_ylabel("test CER (lower is better)")
    ax.legend(fontsize="small", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="runs/reacting_policy/policy", help="the policy directory")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help=f"comma-separated subset of {CONDITIONS} to run ('': none, only rewrite the report)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {METHODS}; the policy always runs (every pair is against it)")
    parser.add_argument("--instance-set", default="heldout",
                        help="voices of long, small and batch: a dev set while designing; the sealed test set once")
    parser.add_argument("--late-set", default="dev_late",
                        help="voices of the late condition: dev_late while designing; the sealed test_late once")
    parser.add_argument("--unfamiliar-set", default="dev_unfamiliar",
                        help="voices of the unfamiliar one: dev_unfamiliar while designing; test_unfamiliar once")
    parser.add_argument("--instances", type=int, default=3, help="voices of long, small and batch")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per voice")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of each run (long: --long-steps)")
    parser.add_argument("--long-steps", type=int, default=5000, help="optimiser steps of each long run")
    parser.add_argument("--longer-steps", type=int, default=10000, help="optimiser steps of each longer run")
    parser.add_argument("--batch-size", type=int, default=64, help="the batch condition's batch size")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between free-running test checks")
    parser.add_argument("--workers", type=int, default=2, help="runs (and search workers) in parallel, 1 thread each")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 voice, 1 seed, 60 steps, 2 trials")
    args = parser.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    if unknown := set(conditions) - set(CONDITIONS):
        parser.error(f"unknown conditions {sorted(unknown)}; choose from {list(CONDITIONS)}")
    named = set(filter(None, args.methods.split(",")))
    if unknown := named - set(METHODS):
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    args.methods = [m for m in METHODS if m in named or m == "policy"]
    results, out = Path(args.out), Path(args.out) / "shift"
    for name in conditions:
        compare(condition_config(name, args, out))
    combined = combine(out, load_env_config(Path(args.policy)).actions)
    (results / "shift.json").write_text(json.dumps(combined, indent=2))
    (results / "shift.md").write_text("\n".join(markdown_report(json.loads((out / f"shift_{c}.json").read_text()),
                                                                f"Shifted condition: {c}")
                                                for c in combined["conditions"]))
    plot_conditions(combined, results / "shift.png")
    print((results / "shift.md").read_text())


if __name__ == "__main__":
    main()
