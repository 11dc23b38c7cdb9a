"""Driving one env episode with any knob source: a policy, a schedule, an Optuna trial."""
from __future__ import annotations

from typing import Callable

import numpy as np

from env.training_env import TrainingEnv
from tacotron.knobs import Knobs
from tacotron.schedules import Schedule

Decide = Callable[[np.ndarray, TrainingEnv], "np.ndarray | Knobs"]


def schedule_decider(schedule: Schedule) -> Decide:
    return lambda obs, env: schedule(env.trainer.step_count, env.cfg.episode_steps)


def policy_decider(model, vec_normalize=None) -> Decide:
    """Deterministic PPO actions on observations normalised with frozen training statistics."""
    def decide(obs: np.ndarray, env: TrainingEnv) -> np.ndarray:
        norm = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
        return model.predict(norm, deterministic=True)[0]
    return decide


def run_episode(env: TrainingEnv, decide: Decide, instance: str, seed: int,
                on_decision: Callable[[int, dict], None] | None = None) -> tuple[dict, list[dict]]:
    """-> (final info, curve of {"step", "score", "val_mel_loss", "infer_diagonality"} per decision)."""
    obs, info = env.reset(seed=seed, options={"instance": instance})
    curve = [{"step": 0, "score": info["score"]}]
    done, n = False, 0
    while not done:
        obs, _, term, trunc, info = env.step(decide(obs, env))
        done, n = term or trunc, n + 1
        curve.append({"step": env.trainer.step_count, "score": info["score"], "val_mel_loss": info["val"]["mel_loss"],
                      "infer_diagonality": info["val"]["infer_diagonality"]})
        if on_decision:
            on_decision(n, info)
    return info, curve
