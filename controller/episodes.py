"""Driving one env episode with any knob source: a policy's actions, or a fixed schedule followed
beside the env (``TrainingEnv.follow``), so every method runs exactly the same episode."""
from __future__ import annotations

from typing import Callable

import numpy as np

from controller.support import Support
from env.training_env import TrainingEnv
from tacotron.schedules import Schedule

# One decision: (observation, env) -> what ``env.step`` returns.
Decide = Callable[[np.ndarray, TrainingEnv], tuple]


def schedule_decider(schedule: Schedule) -> Decide:
    """Apply ``schedule`` at every optimiser step, gated on the env's confirmed alignment step."""
    def decide(obs: np.ndarray, env: TrainingEnv) -> tuple:
        return env.follow(lambda step: schedule(step, env.cfg.episode_steps, env.aligned_at))
    return decide


def policy_action(model, vec_normalize=None) -> Callable[[np.ndarray], np.ndarray]:
    """obs -> the policy's deterministic action, on the observation normalised with its frozen training
    statistics (none: as given); no support shrink."""
    if vec_normalize is None:
        return lambda obs: model.predict(obs, deterministic=True)[0]
    return lambda obs: model.predict(vec_normalize.normalize_obs(obs), deterministic=True)[0]


def policy_decider(model, vec_normalize=None) -> Decide:
    """Deterministic PPO actions on observations normalised with frozen training statistics. Outside the
    support those statistics describe, the action shrinks towards 0 (``controller.support``); each
    decision's check is its info's ``support`` and, with TensorBoard, ``policy/support_keep``."""
    act = policy_action(model, vec_normalize)
    if vec_normalize is None:
        return lambda obs, env: env.step(act(obs))

    def decide(obs: np.ndarray, env: TrainingEnv) -> tuple:
        check = Support.of(vec_normalize, env.obs_names).check(obs)
        action = act(obs) * np.float32(check["keep"])
        if env.trainer.logger:
            env.trainer.logger.writer.add_scalar("policy/support_keep", check["keep"], env.trainer.step_count)
        obs, reward, terminated, truncated, info = env.step(action)
        return obs, reward, terminated, truncated, info | {"support": check}
    return decide


# After the reset, may continue a saved episode (``TrainingEnv.resume_episode``) -> (its observation, its curve so
# far), or None to start afresh.
Resume = Callable[[TrainingEnv], "tuple[np.ndarray, list[dict]] | None"]
# After each decision: (decisions so far, its info, the curve so far); for progress, checkpoints and reports.
OnDecision = Callable[[int, dict, list[dict]], None]


def run_episode(env: TrainingEnv, decide: Decide, instance: str, seed: int, *, on_decision: OnDecision | None = None,
                resume: Resume | None = None) -> tuple[dict, list[dict]]:
    """Reset ``env`` on ``instance`` (seeded) and drive one episode with ``decide`` -> (the last decision's
    info, the curve: {"step", "score", "infer_cer", "infer_diagonality"} per decision, the start first).
    Every method's runs, the Optuna trials, PBT's members, ``controller deploy`` and the held-out
    evaluations during PPO training run through here."""
    obs, info = env.reset(seed=seed, options={"instance": instance})
    curve = [{"step": env.trainer.step_count, "score": info["score"]}]
    if resume is not None and (resumed := resume(env)) is not None:
        obs, curve = resumed
    done, n = False, 0
    while not done:
        obs, _, term, trunc, info = decide(obs, env)
        done, n = term or trunc, n + 1
        curve.append({"step": env.trainer.step_count, "score": info["score"],
                      "infer_cer": info["val"]["infer_cer"],
                      "infer_diagonality": info["val"]["infer_diagonality"]})
        if on_decision:
            on_decision(n, info, curve)
    return info, curve
