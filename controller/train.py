"""Train a PPO scheduling policy across proxy runs (stable-baselines3).

Proxy episodes are expensive (about half a minute each), so PPO collects few samples per update
(small ``n_steps`` per env). gamma = 1: the reward is potential-based on the validation score, so the
undiscounted return is exactly the score gained over the episode (``env.reward``); a run's end
terminates an episode, and a bank-started episode cut short of it is truncated, where SB3
bootstraps from the value estimate. Runs resume from the newest checkpoint; a killed run loses at
most one checkpoint interval.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecNormalize

from controller.callbacks import (CheckpointCallback, EpisodeLogCallback, HeldOutEvalCallback, ProgressCallback,
                                  TimeBudgetCallback, TrainingClock)
from controller.deploy import deployment_env_config
from controller.methods.policy import training_instances
from controller.policy_io import load_meta, load_policy_files, save_policy
from controller.surrogate import SurrogateConfig, surrogate_vec_env
from controller.vec_env import VEC_ENVS, proxy_vec_env
from env.bank import bank_cost, build_bank
from env.instances import load_instance_set
from env.training_env import EnvConfig
from tacotron import checkpoint

log = logging.getLogger(__name__)


@dataclass
class PPOConfig:
    n_steps: int = 16  # per env, per update
    batch_size: int = 32
    n_epochs: int = 10
    gamma: float = 1.0  # the return telescopes to the score gained (see the module docstring)
    gae_lambda: float = 0.95
    learning_rate: float = 3e-4
    clip_range: float = 0.2
    ent_coef: float = 0.0
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    # A zero-mean action keeps every knob, so the initial policy is the static schedule; a small
    # initial std explores around it instead of random-walking r and lr (std 1 flips r at most
    # decisions and wrecks the proxy runs PPO learns from).
    log_std_init: float = -1.0


@dataclass
class ControllerConfig:
    out_dir: str = "runs/controller"
    total_timesteps: int = 2000  # env steps over all envs
    n_envs: int = 2  # parallel proxy runs
    vec_env: str = "subprocess"  # subprocess: local processes | ray: Ray actors (restarted when they die)
    ray_address: str | None = None  # vec_env=ray: a cluster to join (e.g. ray://head:10001); default local
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 200
    eval_every: int = 0  # env steps between held-out evaluations (and one at the end); 0 = none
    heldout_set: str = "heldout"
    eval_steps: int = 300  # length of each held-out evaluation run, deployed as `controller deploy` runs it
    tensorboard: bool = True
    time_budget_s: float = 0.0  # stop after this much training wall time (0 = run total_timesteps)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    env: EnvConfig = field(default_factory=lambda: EnvConfig(threads=1))

    def __post_init__(self) -> None:
        for key in ("total_timesteps", "n_envs", "checkpoint_every", "eval_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")
        if self.vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env={self.vec_env!r} must be one of {VEC_ENVS}")


def pretrain_on_surrogate(model: PPO, venv: VecNormalize, cfg: ControllerConfig) -> dict:
    """PPO on the learned surrogate, then hand the real env the surrogate's normalisation statistics
    (the policy has learned on inputs scaled by them) -> the surrogate's fit report."""
    sim, report = surrogate_vec_env(cfg.surrogate, cfg.n_envs, cfg.seed)
    if sim.observation_space.shape != venv.observation_space.shape:
        raise ValueError(f"{cfg.surrogate.transitions} holds observations of shape {sim.observation_space.shape}, "
                         f"this env's are {venv.observation_space.shape} (env.observations): record them again")
    sim = VecNormalize(sim, norm_obs=True, norm_reward=True, gamma=cfg.ppo.gamma)
    model.set_env(sim)
    model.learn(cfg.surrogate.pretrain_timesteps, tb_log_name="ppo_surrogate")
    venv.obs_rms, venv.ret_rms = sim.obs_rms.copy(), sim.ret_rms.copy()
    model.set_env(venv)
    model.num_timesteps = 0  # checkpoints, totals and budgets count real env steps
    return report


def _write_policies(model: PPO, cfg: ControllerConfig, meta: dict, heldout: list[str]) -> Path:
    """The final policy, and the best held-out one (where kept) costed as the whole run -> the final's dir."""
    out = Path(cfg.out_dir)
    policy_dir, best_dir = out / "policy", out / "policy_best"
    save_policy(model, policy_dir, cfg.env, meta=meta)
    chosen = [policy_dir]
    if best_dir.is_dir():  # choosing it took the whole training run: it costs what the final policy costs
        checkpoint.atomic_write_text(best_dir / "meta.json", json.dumps(load_meta(best_dir) | meta))
        chosen.append(best_dir)
    instances = {"train": training_instances(cfg.env), "heldout": heldout}
    for directory in chosen:
        (directory / "instances.json").write_text(json.dumps(instances, indent=2))
    return policy_dir


def train_controller(cfg: ControllerConfig) -> Path:
    """Train (or resume) and write the final policy directory ``out_dir/policy``; returns it. With
    bank-started episodes, builds (or finishes) the warm-start bank first; its cost is the policy's too.
    With ``eval_every``, ``out_dir/policy_best`` is the policy that scored best on the held-out (dev)
    voices, costed as the whole training run, since choosing it took all of it."""
    out = Path(cfg.out_dir)
    bank = {}
    if cfg.env.start == "bank":
        started = time.perf_counter()
        root = build_bank(training_instances(cfg.env), cfg.env, cfg.env.bank)
        # The bank's cost travels with the policy (its search cost), and this call's wall time (0 when cached).
        bank = {"bank_cost": bank_cost(root), "bank_wall_seconds": time.perf_counter() - started}
    ckpt_dir = out / "checkpoints"
    heldout = load_instance_set(cfg.heldout_set)
    venv = VecNormalize(proxy_vec_env(cfg.env, cfg.n_envs, cfg.seed, cfg.vec_env, cfg.ray_address),
                        norm_obs=True, norm_reward=True,
                        gamma=cfg.ppo.gamma)
    ppo_kwargs = {k: v for k, v in dataclasses.asdict(cfg.ppo).items() if k not in ("net_arch", "log_std_init")}
    tb = str(out / "tb") if cfg.tensorboard else None
    resumed = checkpoint.restore_newest(ckpt_dir, lambda path: load_policy_files(path, venv.venv), "step_*") \
        if cfg.resume else None
    latest = resumed[0] if resumed else None
    if resumed is not None:
        model, venv = resumed[1]
        model.set_env(venv)
        model.tensorboard_log = tb
        log.info("resumed PPO from %s at %d env steps", latest, model.num_timesteps)
    else:
        model = PPO("MlpPolicy", venv, seed=cfg.seed, verbose=0, tensorboard_log=tb,
                    policy_kwargs={"net_arch": list(cfg.ppo.net_arch), "log_std_init": cfg.ppo.log_std_init},
                    **ppo_kwargs)
    clock = TrainingClock(load_meta(latest).get("train_seconds", 0.0) if latest is not None else 0.0)
    if latest is None and cfg.surrogate.pretrain_timesteps > 0:
        report = pretrain_on_surrogate(model, venv, cfg)  # counted in the training clock
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_text(out / "surrogate_fit.json", json.dumps(report, indent=2))
    cost = {"n_envs": cfg.n_envs, **bank}
    best_dir = out / "policy_best"
    if latest is None:  # a fresh run competes only with its own held-out evaluations
        shutil.rmtree(best_dir, ignore_errors=True)
        (out / "heldout_eval.jsonl").unlink(missing_ok=True)

    def keep_best(score: float) -> None:
        save_policy(model, best_dir, cfg.env, meta={"train_seconds": clock.seconds(), "heldout_score": score, **cost})

    callbacks = [CheckpointCallback(ckpt_dir, cfg.checkpoint_every, cfg.env, clock, cost),
                 EpisodeLogCallback(out / "episodes.jsonl"),
                 ProgressCallback(cfg.total_timesteps, clock, cfg.time_budget_s),
                 TimeBudgetCallback(clock, cfg.time_budget_s)]
    if cfg.eval_every > 0:
        eval_env = deployment_env_config(cfg.env, cfg.eval_steps, instances=heldout, log_dir=None)
        callbacks.append(HeldOutEvalCallback(eval_env, heldout, cfg.eval_every, out / "heldout_eval.jsonl", keep_best))
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=latest is None,
                    tb_log_name="ppo")
    policy_dir = _write_policies(model, cfg, {"train_seconds": clock.seconds(), **cost}, heldout)
    venv.close()
    return policy_dir
