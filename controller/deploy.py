"""Deploy a trained policy on a normal (possibly long, full-size) training run.

The policy decides every K optimiser steps, K as in training (``cadence=fixed``, the default):
training dynamics are measured in steps (the tiny model aligns near step 200 however long the
run), so a decision interval in steps keeps the states the policy sees like the ones it learned
on, and its observations carry no fraction of the run. ``cadence=stretched`` is the older mapping,
kept for the comparison: H / K decisions per run whatever its length (K' = max_steps · K / H, H the
proxy horizon), which replays the proxy's clock over a longer run. Validation runs once per
decision. A killed deploy resumes (``resume=true``) from its last checkpoint with what it had
measured: the aligned step, the initial score and the knob trajectory. Decisions outside the policy's
training support are shrunk (``controller.support``); the summary says how often (``shrunk_share``,
over the decisions since a resume) and where the run went furthest outside (``furthest_outside``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tqdm import tqdm

from controller.episodes import policy_decider, run_episode
from controller.plots import plot_knob_trajectories
from controller.policy_io import load_env_config, load_policy_files
from env.training_env import EnvConfig, TrainingEnv
from tacotron import checkpoint
from tacotron.knobs import write_knob_csv


@dataclass
class DeployConfig:
    policy: str = "runs/controller/policy"
    data: str = "en-gb-x-rp@175"  # proxy instance or LJSpeech folder
    model: str = "tiny"
    max_steps: int = 300
    seed: int = 0
    threads: int = 2
    out_dir: str = "runs/deploy"
    ckpt_every: int = 5  # decisions between trainer checkpoints
    cadence: str = "fixed"  # fixed: K as in training | stretched: K scaled with the run (see above)
    hold_ga_until_aligned: bool = False  # also hold guided attention at its reference until alignment (env.actions)
    resume: bool = False
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.ckpt_every < 1:
            raise ValueError(f"max_steps={self.max_steps} and ckpt_every={self.ckpt_every} must be >= 1")
        check_cadence(self.cadence)


def check_cadence(cadence: str) -> None:
    if cadence not in ("fixed", "stretched"):
        raise ValueError(f"cadence={cadence!r} must be fixed or stretched")


def proxy_horizon(env_cfg: EnvConfig) -> int:
    """The proxy run length a policy was trained on: the bank's reference runs, or its episodes."""
    return env_cfg.bank.run_steps if env_cfg.start == "bank" else env_cfg.episode_steps


def deployment_env_config(trained: EnvConfig, max_steps: int, cadence: str = "fixed", **overrides) -> EnvConfig:
    """The trained env config for a from-scratch run of ``max_steps`` (see module docstring)."""
    check_cadence(cadence)
    k = trained.steps_per_action
    if cadence == "stretched":
        k = max(1, round(max_steps * k / proxy_horizon(trained)))
    # A deployed run is one ordinary run: none of training's per-episode variation (batch sizes, spikes).
    return dataclasses.replace(trained, start="scratch", episode_steps=max_steps, steps_per_action=k, val_every=1,
                               batch_sizes=[], spike_share=0.0, **overrides)


def holding_ga_until_aligned(env_cfg: EnvConfig) -> EnvConfig:
    """``env_cfg`` with guided attention held at its reference until alignment (``env.actions``)."""
    return dataclasses.replace(env_cfg, actions=dataclasses.replace(env_cfg.actions, hold_ga_until_aligned=True))


def load_policy(policy_dir: Path, env: TrainingEnv) -> tuple[PPO, VecNormalize]:
    """The PPO model and frozen observation statistics; refuses a policy that does not fit ``env``."""
    model, stats = load_policy_files(Path(policy_dir), DummyVecEnv([lambda: env]), device="cpu")
    stats.training, stats.norm_reward = False, False
    return model, stats


def deploy(cfg: DeployConfig, progress: bool = True) -> dict:
    out = Path(cfg.out_dir)
    trained = load_env_config(Path(cfg.policy))
    if cfg.hold_ga_until_aligned:
        trained = holding_ga_until_aligned(trained)
    env_cfg = deployment_env_config(trained, cfg.max_steps, cfg.cadence, instances=[cfg.data],
                                    model=cfg.model, seed=cfg.seed, threads=cfg.threads,
                                    log_dir=str(out / "tb") if cfg.tensorboard else None)
    env = TrainingEnv(env_cfg)
    ckpt_dir = out / "checkpoints"
    bar = tqdm(total=cfg.max_steps, desc=f"deploy on {cfg.data}", disable=not progress)

    def resume(env: TrainingEnv):
        restored = checkpoint.restore_newest(ckpt_dir, env.resume_episode)
        if restored is None:
            return None
        _, (obs, saved) = restored
        return obs, saved["curve"]

    checks = []  # where each decision stood against the policy's training support

    def after_decision(n: int, info: dict, curve: list[dict]) -> None:
        bar.update(env.trainer.step_count - bar.n)
        checks.append(info["support"])
        if n % cfg.ckpt_every == 0 or "final_score" in info:  # the last decision's info carries the final figures
            env.save_episode(ckpt_dir / f"step_{env.trainer.step_count}.pt", {"curve": curve})

    info, curve = run_episode(env, policy_decider(*load_policy(Path(cfg.policy), env)), cfg.data, cfg.seed,
                              on_decision=after_decision, resume=resume if cfg.resume else None)
    bar.close()
    env.close()
    rows = info["knob_trajectory"][1:]  # the knobs of each decision (the first row is the run's start)
    summary = {"data": cfg.data, "model": cfg.model, "max_steps": cfg.max_steps,
               "steps_per_action": env_cfg.steps_per_action,
               "final_score": info["final_score"], "steps_to_align": info["steps_to_align"],
               "rollbacks": env.trainer.rollbacks, "diverged": bool(info["diverged"]), "final_val": info["val"],
               "shrunk_share": float(np.mean([c["keep"] < 1 for c in checks])) if checks else None,
               "furthest_outside": max(checks, key=lambda c: c["z"]) if checks else None,
               "score_history": curve, "config": asdict(cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_knob_csv(rows, out / "knobs.csv")
    plot_knob_trajectories({"policy": rows}, out / "knobs.png", f"policy on {cfg.data}")
    return summary
