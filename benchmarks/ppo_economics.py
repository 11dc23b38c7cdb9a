"""PPO economics of the full-run policy: what each CPU-minute of training buys on the dev set.

Trains the policy as ``tacotune controller train --config controller/full_run_policy`` does (the
warm-start bank of 1,500-step reference runs first, cached, then --budget-min wall minutes of PPO on
2 proxy runs), saving a policy every --every env steps. Each saved policy then schedules one run from
scratch of --steps optimiser steps on each development held-out voice (never a test voice), next to
static and hand on the same runs (``controller.compare.run_cells``: same model, data, seeds and
free-running checks as the full-run benchmark). A policy's CPU-minutes are everything spent to
obtain it: the bank's CPU time plus 2 x its PPO wall time (2 processes); evaluation is not counted.

Writes ``results/ppo_economics.{json,md,png}``; every run and the training live under --out, so a
killed benchmark resumes (training from its newest checkpoint, evaluation from the runs done).

    python benchmarks/ppo_economics.py [--budget-min 25] [--every 128] [--out /tmp/ppo_economics]
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, write_results  # noqa: E402
from controller.baselines import OptunaConfig  # noqa: E402
from controller.cli import load_config  # noqa: E402
from controller.compare import run_cells  # noqa: E402
from controller.deploy import deployment_env_config  # noqa: E402
from controller.methods import METHODS, PrepareContext  # noqa: E402
from controller.policy_io import load_env_config, load_meta  # noqa: E402
from controller.report import summarise  # noqa: E402
from controller.train import train_controller  # noqa: E402
from env.instances import load_instance_set  # noqa: E402

BASELINES = ("static", "hand")


def _row(label: str, summary: dict) -> dict:
    return {"schedule": label, "cpu_minutes": summary["search_cpu_s"] / 60, "cer": summary["cer"]["mean"],
            "aligned": f"{round(summary['aligned_fraction']['mean'] * summary['runs'])}/{summary['runs']}",
            "steps_to_align_median": summary["steps_to_align_median"]}


def _ci(d: dict) -> str:
    return f"{d['delta_mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]"


def trained_policies(args: argparse.Namespace, out: Path) -> list[Path]:
    """Train (or resume, or reuse) the full-run policy -> its saved policies, oldest first, the final one last."""
    cfg = load_config("controller/full_run_policy", [f"out_dir={out / 'training'}", f"checkpoint_every={args.every}",
                                                     f"time_budget_s={args.budget_min * 60}", "resume=true"])
    final = Path(cfg.out_dir) / "policy"
    if not (final / "model.zip").is_file():
        train_controller(cfg)
    saved = sorted((Path(cfg.out_dir) / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    final_steps = load_meta(final)["num_timesteps"]
    return [p for p in saved if int(p.name.split("_")[1]) < final_steps] + [final]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=25.0, help="PPO wall minutes (the documented policy's)")
    parser.add_argument("--every", type=int, default=128, help="env steps between saved policies")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of each dev run")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between free-running checks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="dev runs in parallel (1 torch thread each)")
    parser.add_argument("--out", default="/tmp/ppo_economics")
    args = parser.parse_args()
    out = Path(args.out)
    policies = trained_policies(args, out)
    dev = load_instance_set("heldout")
    run_env = deployment_env_config(load_env_config(policies[-1]), args.steps, model="tiny", log_dir=None, threads=1)

    def spec(method: str, policy: Path | None = None):
        return METHODS[method].obtain(PrepareContext(run_env=run_env, search_env=run_env, policy=policy,
                                                     optuna=OptunaConfig(), dev_instances=dev, cache_dir=out / "specs"))
    specs = {m: spec(m) for m in BASELINES}
    labels = [f"policy@{load_meta(policy)['num_timesteps']}" for policy in policies]
    specs |= {label: spec("policy", policy) for label, policy in zip(labels, policies)}
    cells = [(label, s, instance, args.seed) for label, s in specs.items() for instance in dev]
    records = run_cells(cells, run_env, args.eval_every, out / "runs", args.workers)
    meta = {"instances": dev, "seeds": [args.seed], "model": "tiny", "episode_steps": args.steps,
            "eval_every": args.eval_every, "steps_per_action": run_env.steps_per_action, "quick": False}
    paired_cols = [f"{m} − policy CER" for m in BASELINES]
    rows = []
    for label in labels:
        result = summarise({m: records[m] for m in (*BASELINES, label)},
                           {m: dataclasses.asdict(specs[m]) for m in (*BASELINES, label)}, label, meta)
        if not rows:
            rows += [_row(m, result[m]) | dict.fromkeys(paired_cols, "–") for m in BASELINES]
        rows.append(_row(label, result[label]) | {col: _ci(result["paired_by_instance"][m]["cer"])
                                                   for col, m in zip(paired_cols, BASELINES)})
    curve = rows[len(BASELINES):]
    bank_cpu_min = load_meta(policies[-1])["bank_cost"]["cpu_seconds"] / 60
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["cpu_minutes"] for r in curve], [r["cer"] for r in curve], marker="o",
            label="policy (bank + PPO)")
    for row, style in zip(rows, ("--", ":")):
        ax.axhline(row["cer"], color="grey", linestyle=style, label=f"{row['schedule']} (no search)")
    ax.axvline(bank_cpu_min, color="tab:red", alpha=0.3, label="bank built")
    ax.set(xlabel="CPU-minutes to obtain the policy (bank + PPO)",
           ylabel=f"mean dev CER, {args.steps}-step runs (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "ppo_economics.png", dpi=90)
    write_results("ppo_economics", {"dev_instances": dev, "seed": args.seed, "run_steps": args.steps,
                                    "ppo_budget_minutes_wall": args.budget_min, "bank_cpu_minutes": bank_cpu_min,
                                    "runs": records}, rows,
                  "PPO economics: dev-set CER of the full-run policy against the CPU-minutes spent on it",
                  f"Policy trained as `--config controller/full_run_policy` ({args.budget_min:g} wall minutes of "
                  f"PPO on 2 processes after a {bank_cpu_min:.1f} CPU-minute bank), saved every {args.every} env "
                  f"steps. Each schedule ran {args.steps} optimiser steps from scratch on the dev voices "
                  f"{', '.join(dev)} (seed {args.seed}); CER is the final free-running figure on each voice's test split, "
                  f"mean over voices. Paired differences over the {len(dev)} voices, mean [95 % CI]; positive "
                  f"favours the policy. CPU-minutes count the bank and the PPO processes, not evaluation.")


if __name__ == "__main__":
    main()
