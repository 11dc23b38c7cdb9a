"""How much of one episode's return is noise (issue #29): can PPO hear its own choices?

An episode's return is (nearly) its final validation score minus its first. That score is one free-running
decode of the 16-utterance val split, with the prenet's dropout on as Tacotron2 keeps it, after a run whose
batches and dropout are drawn too. This script measures, on dev voices only, the two noises against the
signal a choice makes:

* from one warm-start checkpoint (the policy's bank: a hand-scheduled reference run, aligned), the same
  300 steps (one episode) are trained under constant knobs, one **arm** each: ``static`` (the reference:
  what a residual policy's zero action sets), ``release`` (guided attention 0: the release at alignment)
  and ``lr_up`` (the LR at its 2e-3 bound), each with --train-seeds training seeds;
* every end model (and the checkpoint itself) is validated --val-draws times with other prenet masks.

Per checkpoint it reports the **draw noise** (SD over draws of one model), the **run noise** (SD over
training seeds of the draw-averaged score), the noise of one episode's final score (one seed, one draw:
what PPO sees), each arm's **effect** (arm − static, averaged over seeds and draws) and how many episodes of
each arm a comparison needs to tell the effect from noise at two standard errors. Paired by training
seed (common random numbers: the same batches and masks in both arms) the difference's SD says whether
pairing episodes would quiet the signal. The default weights of the reward's score are used.

    python benchmarks/reward_noise.py [--config controller/reacting_policy] [--workers 2]
Writes ``results/reward_noise.{json,md}``; about 20 CPU-minutes.
"""
from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np

from common import write_results  # noqa: E402
from controller.cli import load_config  # noqa: E402
from env.bank import bank_root, load_bank  # noqa: E402
from tacotron.knobs import Knobs  # noqa: E402
from tacotron.metrics import composite_score  # noqa: E402
from tacotron.pool import run_jobs  # noqa: E402
from tacotron.run import build_trainer, load_data  # noqa: E402

ARMS = {"static": {}, "release": {"ga_weight": 0.0}, "lr_up": {"lr": 2e-3}}
DRAW_SEED = 1000  # val draws use seeds DRAW_SEED + d, apart from any training seed


def _validate_draws(trainer, draws: int) -> list[dict]:
    rows = []
    for d in range(draws):
        stats, _ = trainer.free_run(trainer.corpus.val, seed=DRAW_SEED + d)
        rows.append({"score": composite_score(stats), "intelligibility": stats.intelligibility,
                     "diagonality": stats.diagonality, "stop_score": stats.stop_score})
    return rows


def _job(args: tuple) -> dict:
    """One arm's episode from a checkpoint (arm None: the checkpoint itself) -> its val draws."""
    env_cfg, instance, path, arm, seed, steps, draws = args
    corpus = load_data(instance, env_cfg.proxy, env_cfg.audio, env_cfg.dataset, progress=False)
    trainer = build_trainer(env_cfg, corpus, seed=seed)
    trainer.restore(Path(path))
    if arm is not None:
        trainer.reseed(seed)
        trainer.set_knobs(Knobs(**ARMS[arm]))
        trainer.run(steps)
    return {"instance": instance, "arm": arm, "seed": seed, "draws": _validate_draws(trainer, draws)}


def _sd(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def summarise(results: list[dict], metric: str) -> list[dict]:
    """Per instance: the noises, and each arm's effect with the episodes a comparison needs."""
    rows = []
    for instance in dict.fromkeys(r["instance"] for r in results):
        mine = [r for r in results if r["instance"] == instance]
        ends = {arm: [[d[metric] for d in r["draws"]] for r in mine if r["arm"] == arm] for arm in ARMS}
        means = {arm: np.array([np.mean(m) for m in ends[arm]]) for arm in ARMS}  # per training seed
        models = [[d[metric] for d in r["draws"]] for r in mine]
        draw_sd = math.sqrt(np.mean([_sd(m) ** 2 for m in models]))  # pooled within models
        run_sd = math.sqrt(np.mean([_sd(means[arm]) ** 2 for arm in ARMS]))
        one_sd = math.sqrt(np.mean([_sd(list(itertools.chain(*ends[arm]))) ** 2 for arm in ARMS]))
        static = means["static"]
        for arm in ARMS:
            if arm == "static":
                continue
            mean = means[arm]
            effect = float(np.mean(mean - static))
            # episodes per arm so that the difference of two arms' means is two standard errors
            needed = math.ceil(2 * (2 * one_sd / abs(effect)) ** 2) if effect else math.inf
            rows.append({"instance": instance, "metric": metric, "arm": arm, "effect": effect,
                         "draw_sd": draw_sd, "run_sd": run_sd, "one_episode_sd": one_sd,
                         "effect_over_noise": abs(effect) / one_sd, "episodes_needed": needed,
                         "paired_diff_sd": _sd(mean - static), "unpaired_diff_sd": math.sqrt(2) * run_sd})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="controller/reacting_policy", help="the policy config whose bank to use")
    parser.add_argument("--starts", default="en-us@150:600,en-gb@200:700",
                        help="comma-separated INSTANCE:STEP checkpoints of the bank's hand runs (aligned ones)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps of each episode")
    parser.add_argument("--train-seeds", type=int, default=3, help="training seeds per arm")
    parser.add_argument("--val-draws", type=int, default=4, help="validations of each model with other prenet masks")
    parser.add_argument("--workers", type=int, default=2, help="episodes in parallel, 1 torch thread each")
    args = parser.parse_args()
    cfg = load_config(args.config, ["env.threads=1"]).env
    _, entries = load_bank(bank_root(list(cfg.instances), cfg, cfg.bank))
    jobs = []
    for start in args.starts.split(","):
        instance, step = start.rsplit(":", 1)
        found = [e for e in entries if e["instance"] == instance and e["schedule"] == "hand" and e["step"] == int(step)]
        if not found:
            parser.error(f"the bank of {args.config} has no hand checkpoint of {instance} at step {step}")
        path = found[0]["path"]
        jobs.append((cfg, instance, path, None, 0, 0, args.val_draws))
        jobs += [(cfg, instance, path, arm, seed, args.steps, args.val_draws)
                 for arm in ARMS for seed in range(args.train_seeds)]
    results = run_jobs(_job, jobs, args.workers, "episodes")
    rows = summarise(results, "score") + summarise(results, "intelligibility")
    write_results("reward_noise", {"args": vars(args), "arms": ARMS, "results": results}, rows,
                  "How much of one episode's return is noise",
                  "Dev voices only. draw_sd: SD of one model's val score over prenet masks; run_sd: over training "
                  "seeds (draw-averaged); one_episode_sd: one seed, one draw (what PPO sees); effect: arm − static "
                  "after one episode; episodes_needed: per arm, for the effect to be two standard errors; "
                  "paired_diff_sd: SD of arm − static with the same training seed (common random numbers).")


if __name__ == "__main__":
    main()
