"""The full-run benchmark: does a policy learned on 300-step proxies improve longer runs?

Every method schedules runs from scratch on the instances of --instance-set (dev2 while designing;
the sealed ``test`` set once, at the end: benchmarks/README.md), far longer than the proxy episodes
the policy (and every search) learned on, and is scored on their test splits decoded free-running
(``controller.compare``: same model, data, seeds and validation for every method; search costs
counted in full). Three parts, each its own comparison:

* ``tiny``: the tiny model for --steps (1,500) optimiser steps on --instances instances × --seeds seeds:
  static, hand, the multi-fidelity Optuna searches (tuned static and the parametric schedule, each
  within the policy's search cost in CPU-seconds), PBT and PB2 (populations of 4), the policy (K fixed in
  steps, as ``controller deploy`` runs it) and its open-loop replay. With --budget-fractions, the
  anytime curves: each search's best schedule so far and the policy's PPO checkpoints at those
  fractions of the policy's cost, on the first --budget-seeds seeds (``full_run_budget.png``);
* ``small``: the small model for --steps steps on the first --long-instances instances, seed 0: static,
  hand, both searches and the policy, all found on the tiny model (a transfer check);
* ``long``: --long-steps (5,000) step runs of the same methods and the stretched-interval policy on the
  same instances, seed 0 (the policy and the searches learned on 300-step proxies).

Writes ``results/full_run.{json,md,png}`` (the tiny part at the top level, the others under
``small`` and ``long``, with the parts earlier calls finished) and keeps every finished run and search
under ``results/full_run/`` (one grid), so a killed benchmark resumes from the runs already done.
2 processes × 1 thread; progress bars throughout.

    tacotune controller train --config controller/full_run_policy   # the policy (about 45 min)
    python benchmarks/full_run.py --policy runs/full_run_policy/policy [--parts tiny,small,long]
        [--instance-set test --instances 8] [--seeds 2] [--budget-fractions ''] [--quick]
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

from common import RESULTS  # noqa: E402
from controller.baselines import OptunaConfig  # noqa: E402
from controller.compare import CompareConfig, compare  # noqa: E402
from controller.report import machine, markdown_report  # noqa: E402
from env.instances import load_instance_set  # noqa: E402
from yardstick import degradation_rows  # noqa: E402

SEARCHES = ["tuned_static", "optuna_tpe"]
PARTS = {
    "tiny": ["static", "hand", *SEARCHES, "pbt", "pb2", "replay", "policy"],
    "small": ["static", "hand", *SEARCHES, "policy"],
    "long": ["static", "hand", *SEARCHES, "policy_stretched", "policy"],
}


def part_config(part: str, args: argparse.Namespace, out: Path) -> CompareConfig:
    evaluated = load_instance_set(args.instance_set)
    seeds = list(range(args.seeds))
    fractions = [float(f) for f in args.budget_fractions.split(",") if f]
    base = CompareConfig(methods=PARTS[part], policy=args.policy, data=evaluated[:args.instances or None], seeds=seeds,
                         model="tiny", episode_steps=args.steps, eval_every=args.eval_every, workers=args.workers,
                         out_dir=str(out), name=f"full_run_{part}", search_dir=str(out / "searches"),
                         quick=args.quick, population_seeds=0, optuna=OptunaConfig(workers=args.search_workers),
                         budget_fractions=fractions, budget_seeds=args.budget_seeds)
    if part == "tiny":
        methods = args.methods.split(",") if args.methods else base.methods
        return replace(base, methods=[m for m in base.methods if m in methods],
                       budget_fractions=fractions if "policy" in methods else [])
    rest = replace(base, data=evaluated[:args.long_instances], seeds=seeds[:1], budget_fractions=[])
    if part == "small":
        return replace(rest, model="small")
    return replace(rest, episode_steps=args.long_steps, eval_every=max(args.eval_every, args.long_steps // 25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="runs/full_run_policy/policy",
                        help="policy dir (from `tacotune controller train --config controller/full_run_policy`)")
    parser.add_argument("--parts", default="tiny,small,long", help="comma-separated subset of tiny,small,long")
    parser.add_argument("--instance-set", default="dev2",
                        help="the instances scored: dev2 while designing; the sealed `test` once, at the end, with the "
                             "design frozen (benchmarks/README.md)")
    parser.add_argument("--instances", type=int, default=0, help="instances in the tiny part (0 = the whole set)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per instance")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of each run")
    parser.add_argument("--long-steps", type=int, default=5000, help="optimiser steps of each long run")
    parser.add_argument("--long-instances", type=int, default=3, help="instances in the small and long parts (seed 0)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between free-running test checks")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--budget-fractions", default="0.125,0.25,0.5,1,2",
                        help="anytime curves of the tiny part at these fractions of the policy's search cost "
                             "('' = none)")
    parser.add_argument("--budget-seeds", type=int, default=1, help="seeds of each anytime point")
    parser.add_argument("--methods", default="",
                        help="comma-separated subset of the tiny part's methods (a cut grid); small and long run whole")
    parser.add_argument("--workers", type=int, default=2, help="compared runs in parallel (1 torch thread each)")
    parser.add_argument("--search-workers", type=int, default=2,
                        help="processes per Optuna search; 1 lets two searches share the 2 cores without an idle one")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 instance, 1 seed, 60 steps")
    args = parser.parse_args()
    results = Path(args.out)
    out = results / "full_run"
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {sorted(PARTS)}")
    summaries = {part: compare(part_config(part, args, out)) for part in parts}
    # The grid runs over several sessions: parts finished by earlier calls stay in the combined result.
    summaries |= {part: json.loads((out / f"full_run_{part}.json").read_text()) for part in PARTS
                  if part not in summaries and (out / f"full_run_{part}.json").is_file()}
    done = [part for part in PARTS if part in summaries]
    top = summaries[done[0]]
    # what a perfect run would score: the recogniser's CER on the ground-truth test split of each voice
    floor = {row["corpus"]: row["cer"] for row in degradation_rows(top["instances"])
             if row["degradation"] == "ground_truth"}
    combined = {**top, **{part: summaries[part] for part in done if summaries[part] is not top},
                "parts": done, "instance_set": args.instance_set, "recogniser_floor": floor, "machine": machine()}
    (results / "full_run.json").write_text(json.dumps(combined, indent=2))
    floor_line = ("\nRecogniser floor (its CER on each voice's ground-truth test split): "
                  + ", ".join(f"{voice} {cer:.3f}" for voice, cer in floor.items()) + ".\n")
    (results / "full_run.md").write_text("\n".join(markdown_report(summaries[p], f"Full runs: {p}") for p in done)
                                         + floor_line)
    shutil.copyfile(out / f"full_run_{done[0]}_curves.png", results / "full_run.png")
    if "budget_curve" in summaries[done[0]]:
        shutil.copyfile(out / f"full_run_{done[0]}_budget.png", results / "full_run_budget.png")
    print((results / "full_run.md").read_text())


if __name__ == "__main__":
    main()
