"""Driving one env episode with any knob source: a policy, a schedule, an Optuna trial, a replay."""
from __future__ import annotations

from typing import Callable

import numpy as np

from env.training_env import KnobFn, TrainingEnv
from tacotron.knobs import Knobs
from tacotron.schedules import Schedule

Decide = Callable[[np.ndarray, TrainingEnv], "np.ndarray | Knobs | KnobFn"]


def schedule_decider(schedule: Schedule) -> Decide:
    """Apply ``schedule`` at every optimiser step, gated on the env's confirmed alignment step."""
    def decide(obs: np.ndarray, env: TrainingEnv) -> KnobFn:
        return lambda step: schedule(step, env.cfg.episode_steps, env.aligned_at)
    return decide


def policy_decider(model, vec_normalize=None) -> Decide:
    """Deterministic PPO actions on observations normalised with frozen training statistics."""
    def decide(obs: np.ndarray, env: TrainingEnv) -> np.ndarray:
        norm = vec_normalize.normalize_obs(obs) if vec_normalize is not None else obs
        return model.predict(norm, deterministic=True)[0]
    return decide


def run_episode(env: TrainingEnv, decide: Decide, instance: str, seed: int,
                on_decision: Callable[[int, dict], None] | None = None) -> tuple[dict, list[dict]]:
    """-> (final info, curve of {"step", "score", "infer_cer", "infer_diagonality"} per decision)."""
    obs, info = env.reset(seed=seed, options={"instance": instance})
    curve = [{"step": env.trainer.step_count, "score": info["score"]}]
    done, n = False, 0
    while not done:
        obs, _, term, trunc, info = env.step(decide(obs, env))
        done, n = term or trunc, n + 1
        curve.append({"step": env.trainer.step_count, "score": info["score"],
                      "infer_cer": info["val"]["infer_cer"],
                      "infer_diagonality": info["val"]["infer_diagonality"]})
        if on_decision:
            on_decision(n, info)
    return info, curve
