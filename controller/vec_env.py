"""Parallel proxy envs for SB3: one process per env (spawn), each with its own seed."""
from __future__ import annotations

import dataclasses

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from env.training_env import EnvConfig, TrainingEnv


def _make_env(env_cfg: EnvConfig, seed: int):
    def build():
        return Monitor(TrainingEnv(dataclasses.replace(env_cfg, seed=seed)))
    return build


def proxy_vec_env(env_cfg: EnvConfig, n_envs: int, seed: int) -> DummyVecEnv | SubprocVecEnv:
    """``n_envs`` proxy training envs, in subprocesses when more than one (a proxy run is CPU-bound)."""
    builders = [_make_env(env_cfg, seed + 1000 * i) for i in range(n_envs)]
    return SubprocVecEnv(builders, start_method="spawn") if n_envs > 1 else DummyVecEnv(builders)
