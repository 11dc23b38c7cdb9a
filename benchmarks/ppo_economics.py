"""Held-out final score against the CPU-minutes spent training PPO, with the same seeds and budget:

* scratch: episodes are whole 300-step proxy runs from a new model;
* bank: episodes start from a warm-start bank checkpoint and last a third of the run;
* surrogate: bank episodes, after recording --record-transitions real transitions under random
  actions, fitting the learned surrogate and pre-training PPO on it (--pretrain-steps). Recording
  and pre-training count against its budget.

Each variant runs 2 parallel proxy runs for --budget-min minutes of wall time (so CPU-minutes =
2 x wall minutes on this 2-core machine), saving a policy every --every real env steps. Each saved
policy is then scored by one deterministic 300-step run from scratch on each of --heldout-voices held-out
voices (mean final score), next to the static defaults on the same runs. Evaluation time is not counted as training time.

    python benchmarks/ppo_economics.py [--budget-min 8] [--every 64] [--out /tmp/ppo_economics]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, write_results  # noqa: E402
from controller.deploy import load_policy  # noqa: E402
from controller.episodes import policy_decider, run_episode, schedule_decider  # noqa: E402
from controller.policy_io import load_meta  # noqa: E402
from controller.surrogate import RecordConfig, SurrogateConfig, load_transitions, record_transitions  # noqa: E402
from controller.train import ControllerConfig, train_controller  # noqa: E402
from env.bank import BankConfig, build_bank  # noqa: E402
from env.instances import load_instance_set  # noqa: E402
from env.training_env import EnvConfig, TrainingEnv  # noqa: E402
from tacotron import checkpoint  # noqa: E402
from tacotron.schedules import static  # noqa: E402

HORIZON = 300  # optimiser steps of a full proxy run; bank episodes cover a third of it


def variant_config(variant: str, out: Path, budget_s: float, every: int, instances: list[str],
                   surrogate: SurrogateConfig | None = None) -> ControllerConfig:
    start = "scratch" if variant == "scratch" else "bank"
    env = EnvConfig(instances=instances, threads=1, start=start, steps_per_action=20,
                    episode_steps=HORIZON if start == "scratch" else HORIZON // 3,
                    bank=BankConfig(run_steps=HORIZON, save_every=50, schedules=["static", "hand"], perturbed_runs=1))
    return ControllerConfig(out_dir=str(out / variant), total_timesteps=100_000, n_envs=2, checkpoint_every=every,
                            time_budget_s=budget_s, tensorboard=False, env=env,
                            surrogate=surrogate or SurrogateConfig())


def surrogate_variant(out: Path, args, instances: list[str]) -> tuple[ControllerConfig, float]:
    """Record real bank-episode transitions (cached in ``out``) -> (config that pre-trains on them,
    recording wall seconds, charged to this variant's budget)."""
    bank_env = variant_config("bank", out, 0, args.every, instances).env
    path = out / "transitions.pt"
    if not path.is_file():
        record_transitions(RecordConfig(out=str(path), n_transitions=args.record_transitions, n_envs=2,
                                        seed=args.seed, env=bank_env))
    record_s = float(load_transitions(path)["record_seconds"])
    surrogate = SurrogateConfig(transitions=str(path), pretrain_timesteps=args.pretrain_steps, seed=args.seed)
    return variant_config("surrogate", out, args.budget_min * 60 - record_s, args.every, instances, surrogate), record_s


def held_out_score(env: TrainingEnv, decider, heldouts: list[str], seed: int) -> dict:
    """Mean final score (and runs aligned) of one deterministic 300-step run per held-out voice."""
    infos = [run_episode(env, decider, voice, seed)[0] for voice in heldouts]
    return {"final_score": sum(i["final_score"] for i in infos) / len(infos),
            "aligned": sum(i["steps_to_align"] is not None for i in infos),
            "per_voice": [round(i["final_score"], 4) for i in infos]}


def score_policies(env: TrainingEnv, run_dir: Path, heldouts: list[str], seed: int,
                   offset_s: float = 0.0) -> list[dict]:
    points = []
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1])):
        meta = load_meta(ckpt)
        points.append({"env_steps": meta["num_timesteps"], "cpu_minutes": 2 * (meta["train_seconds"] + offset_s) / 60,
                       **held_out_score(env, policy_decider(*load_policy(ckpt, env)), heldouts, seed)})
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=8.0)
    parser.add_argument("--every", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-voices", type=int, default=3, help="score on the first N held-out voices")
    parser.add_argument("--record-transitions", type=int, default=120)
    parser.add_argument("--pretrain-steps", type=int, default=20_000)
    parser.add_argument("--out", default="/tmp/ppo_economics")
    args = parser.parse_args()
    out = Path(args.out)
    instances = load_instance_set("train")[:3]
    heldouts = load_instance_set("heldout")[:args.heldout_voices]
    eval_env = TrainingEnv(EnvConfig(instances=heldouts, episode_steps=HORIZON, steps_per_action=20))
    bank_cfg = variant_config("bank", out, 0, args.every, instances).env
    build_bank(instances, bank_cfg, bank_cfg.bank)
    curves, fits = {}, {}
    for variant in ("scratch", "bank", "surrogate"):
        if variant == "surrogate":
            cfg, offset_s = surrogate_variant(out, args, instances)
        else:
            cfg, offset_s = variant_config(variant, out, args.budget_min * 60, args.every, instances), 0.0
        if checkpoint.latest(Path(cfg.out_dir) / "checkpoints", "step_*") is None:
            train_controller(cfg)
        curves[variant] = score_policies(eval_env, Path(cfg.out_dir), heldouts, args.seed, offset_s)
        if variant == "surrogate":
            fits = json.loads((Path(cfg.out_dir) / "surrogate_fit.json").read_text()) | {"record_seconds": offset_s}
    static_result = held_out_score(eval_env, schedule_decider(static), heldouts, args.seed)
    static_score = static_result["final_score"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, points in curves.items():
        ax.plot([p["cpu_minutes"] for p in points], [p["final_score"] for p in points], marker="o", label=variant)
    ax.axhline(static_score, color="grey", linestyle="--", label="static defaults")
    ax.set(xlabel="CPU-minutes of PPO training", ylabel=f"mean held-out final score ({len(heldouts)} voices)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ppo_economics.png", dpi=90)
    rows = [{"variant": s, **p} for s, points in curves.items() for p in points]
    first_win = {s: next((p["cpu_minutes"] for p in points if p["final_score"] > static_score), None)
                 for s, points in curves.items()}
    # single points are noisy (a few held-out runs): "stays above" asks every later policy to beat static too
    stays_above = {s: next((p["cpu_minutes"] for i, p in enumerate(points)
                            if all(q["final_score"] > static_score for q in points[i:])), None)
                   for s, points in curves.items()}
    write_results("ppo_economics", {"heldout": heldouts, "seed": args.seed, "static": static_result,
                                    "budget_minutes_wall": args.budget_min, "first_cpu_minutes_beating_static":
                                    first_win, "cpu_minutes_from_which_all_beat_static": stays_above,
                                    "surrogate_fit": fits, "pretrain_steps": args.pretrain_steps,
                                    "curves": curves}, rows,
                  "PPO economics: held-out final score vs CPU-minutes of training",
                  f"Static defaults score {static_score:.3f} (mean over {', '.join(heldouts)}; seed {args.seed}; "
                  f"{static_result['aligned']} aligned). "
                  f"First CPU-minute beating it: {json.dumps(first_win)}; from which every later policy "
                  f"beats it: {json.dumps(stays_above)}. Surrogate: {args.pretrain_steps} "
                  f"pre-training steps on a fit to {fits.get('transitions')} real transitions (held-out R² of "
                  f"the observation change {fits.get('heldout_r2_obs_change', float('nan')):.2f}, of the reward "
                  f"{fits.get('heldout_r2_reward', float('nan')):.2f}); recording counted in its CPU-minutes.")


if __name__ == "__main__":
    main()
