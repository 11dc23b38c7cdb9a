"""Deploy a trained policy on a normal (possibly long, full-size) training run.

Mapping a proxy-trained policy onto a longer run: in training the policy decided every K steps
over a run of H steps (H = episode_steps, or the bank's reference-run length for warm-started
episodes, over which progress was measured). Deploy keeps H / K decisions per run, so K scales
with the run (K' = max_steps · K / H), validation runs once per decision, and the observation
carries progress fractions and normalised knobs, never raw step counts.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from tqdm import tqdm

from controller.plots import plot_knob_trajectories
from controller.policy_io import load_env_config
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
    resume: bool = False
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.ckpt_every < 1:
            raise ValueError(f"max_steps={self.max_steps} and ckpt_every={self.ckpt_every} must be >= 1")


def deployment_env_config(trained: EnvConfig, max_steps: int, **overrides) -> EnvConfig:
    """The trained env config, rescaled to a from-scratch run of ``max_steps`` (see module docstring)."""
    horizon = trained.bank.run_steps if trained.start == "bank" else trained.episode_steps
    k = max(1, round(max_steps * trained.steps_per_action / horizon))
    return dataclasses.replace(trained, start="scratch", episode_steps=max_steps, steps_per_action=k, val_every=1,
                               **overrides)


def load_policy(policy_dir: Path, env: TrainingEnv) -> tuple[PPO, VecNormalize]:
    """The PPO model and frozen observation statistics; refuses a policy that does not fit ``env``."""
    policy_dir = Path(policy_dir)
    if not (policy_dir / "model.zip").is_file():
        raise FileNotFoundError(f"{policy_dir} has no model.zip; pass policy=<dir written by controller train>")
    model = PPO.load(policy_dir / "model.zip", device="cpu")
    for kind in ("observation", "action"):
        want, got = getattr(model, f"{kind}_space").shape, getattr(env, f"{kind}_space").shape
        if want != got:
            raise ValueError(f"policy {policy_dir} expects {kind} shape {want} but this env has {got}; "
                             f"it was trained with another observation or action configuration")
    stats = VecNormalize.load(str(policy_dir / "vecnormalize.pkl"), DummyVecEnv([lambda: env]))
    stats.training, stats.norm_reward = False, False
    return model, stats


def deploy(cfg: DeployConfig, progress: bool = True) -> dict:
    out = Path(cfg.out_dir)
    env_cfg = deployment_env_config(load_env_config(Path(cfg.policy)), cfg.max_steps, instances=[cfg.data],
                                    model=cfg.model, seed=cfg.seed, threads=cfg.threads,
                                    log_dir=str(out / "tb") if cfg.tensorboard else None)
    env = TrainingEnv(env_cfg)
    model, stats = load_policy(Path(cfg.policy), env)
    obs, _ = env.reset(seed=cfg.seed)
    rows, history = [], []
    latest = checkpoint.latest(out / "checkpoints") if cfg.resume else None
    if latest is not None:
        obs = env.resume_trainer(latest)
        saved = json.loads((out / "progress.json").read_text())
        rows, history = saved["knobs"], saved["history"]
    bar = tqdm(total=cfg.max_steps, initial=env.trainer.step_count, desc=f"deploy on {cfg.data}", disable=not progress)
    done, info, n = False, {}, 0
    while not done:
        action, _ = model.predict(stats.normalize_obs(obs), deterministic=True)
        step = env.trainer.step_count
        obs, _, term, trunc, info = env.step(action)
        done, n = term or trunc, n + 1
        rows.append({"step": step, **info["knobs"]})
        history.append({"step": env.trainer.step_count, "score": info["score"]})
        bar.update(env.trainer.step_count - step)
        if n % cfg.ckpt_every == 0 or done:
            env.trainer.save(out / "checkpoints" / f"step_{env.trainer.step_count}.pt")
            checkpoint.atomic_write_text(out / "progress.json", json.dumps({"knobs": rows, "history": history}))
    bar.close()
    env.close()
    summary = {"data": cfg.data, "model": cfg.model, "max_steps": cfg.max_steps,
               "steps_per_action": env_cfg.steps_per_action,
               "final_score": info["final_score"], "steps_to_align": info["steps_to_align"],
               "rollbacks": env.trainer.rollbacks, "diverged": bool(term), "final_val": info["val"],
               "score_history": history, "config": asdict(cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_knob_csv(rows, out / "knobs.csv")
    plot_knob_trajectories({"policy": rows}, out / "knobs.png", f"policy on {cfg.data}")
    return summary
