"""The full-run benchmark: does a policy learned on 300-step proxies improve longer runs?

Every method schedules runs from scratch on the instances of --instance-set (dev2 while designing;
the sealed ``test`` set once, at the end: benchmarks/README.md), far longer than the proxy episodes
the policy (and every search) learned on, and is scored on their test splits decoded free-running
(``controller.compare``: same model, data, seeds and validation for every method; search costs
counted in full). Three parts, each its own comparison:

* ``tiny``: the tiny model for --steps (1,500) optimiser steps: static, tuned static, hand, Optuna TPE,
  the policy's open-loop replay, the policy deployed with a stretched decision interval, the policy
  (K fixed in steps, as ``controller deploy`` runs it) and PBT (a population of 4, on the first seed only);
* ``small``: the small model for --steps steps on the first instance: static against the policy,
  which learned on the tiny model only (a transfer check; a tuned-static search on the small model would
  take roughly an hour on 2 cores, estimated from the tiny model's trial times and the small model's speed);
* ``long``: one --long-steps (5,000) step run each of static, the stretched-interval policy and the policy,
  on the first --long-instances instances and the first seed: where the two cadences differ (the
  policy's bank runs are 1,500 steps).

Writes ``results/full_run.{json,md,png}`` (the tiny part at the top level, the others under
``small`` and ``long``) and keeps every finished run under ``results/full_run/``, so a killed
benchmark resumes from the runs already done. 2 processes × 1 thread; progress bars throughout.

    tacotune controller train --config controller/full_run_policy   # the policy (about 45 min)
    python benchmarks/full_run.py --policy runs/full_run_policy/policy [--parts tiny,small,long]
        [--instances 3] [--seeds 2] [--quick]
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

PARTS = {
    "tiny": ["static", "tuned_static", "hand", "optuna_tpe", "replay", "policy_stretched", "policy", "pbt"],
    "small": ["static", "policy"],
    "long": ["static", "policy_stretched", "policy"],
}


def part_config(part: str, args: argparse.Namespace, out: Path) -> CompareConfig:
    evaluated = load_instance_set(args.instance_set)
    seeds = list(range(args.seeds))
    base = CompareConfig(methods=PARTS[part], policy=args.policy, data=evaluated[:args.instances], seeds=seeds,
                         model="tiny", episode_steps=args.steps, eval_every=args.eval_every, workers=args.workers,
                         out_dir=str(out), name=f"full_run_{part}", search_dir=str(out / "searches"),
                         quick=args.quick, population_instances=args.pbt_instances,
                         optuna=OptunaConfig(workers=args.search_workers))
    if part == "small":
        return replace(base, model="small", data=evaluated[:1])
    if part == "long":
        return replace(base, episode_steps=args.long_steps, data=evaluated[:args.long_instances], seeds=seeds[:1],
                       eval_every=max(args.eval_every, args.long_steps // 25))
    if args.methods:
        return replace(base, methods=[m for m in base.methods if m in args.methods.split(",")])
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="runs/full_run_policy/policy",
                        help="policy dir (from `tacotune controller train --config controller/full_run_policy`)")
    parser.add_argument("--parts", default="tiny,small,long", help="comma-separated subset of tiny,small,long")
    parser.add_argument("--instance-set", default="dev2",
                        help="the instances scored: dev2 while designing; the sealed `test` once, at the end, with the "
                             "design frozen (benchmarks/README.md)")
    parser.add_argument("--instances", type=int, default=3, help="instances in the tiny part")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per instance")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of each run")
    parser.add_argument("--long-steps", type=int, default=5000, help="optimiser steps of each long run")
    parser.add_argument("--long-instances", type=int, default=1, help="instances in the long part (seed 0)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between free-running test checks")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--pbt-instances", type=int, default=0, help="PBT on the first N instances only (0 = all)")
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
    top = summaries.get("tiny") or summaries[parts[0]]
    combined = {**top, **{part: summaries[part] for part in parts if summaries[part] is not top},
                "parts": parts, "machine": machine()}
    (results / "full_run.json").write_text(json.dumps(combined, indent=2))
    (results / "full_run.md").write_text("\n".join(markdown_report(summaries[p], f"Full runs: {p}") for p in parts))
    first = "tiny" if "tiny" in parts else parts[0]
    shutil.copyfile(out / f"full_run_{first}_curves.png", results / "full_run.png")
    print((results / "full_run.md").read_text())


if __name__ == "__main__":
    main()
