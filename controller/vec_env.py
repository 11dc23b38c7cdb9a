"""Parallel proxy envs for SB3, each with its own seed: one local process per env (``subprocess``,
spawn), or one Ray actor per env on a local or remote Ray cluster (``ray``; see ``controller.ray_vec_env``)."""
from __future__ import annotations

import dataclasses

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from env.training_env import EnvConfig, TrainingEnv


def _make_env(env_cfg: EnvConfig, seed: int):
    def build():
        return Monitor(TrainingEnv(dataclasses.replace(env_cfg, seed=seed)))
    return build


VEC_ENVS = ("subprocess", "ray")


def proxy_vec_env(env_cfg: EnvConfig, n_envs: int, seed: int, backend: str = "subprocess",
                  ray_address: str | None = None) -> VecEnv:
    """``n_envs`` proxy training envs: Ray actors, or subprocesses when more than one (a proxy run is
    CPU-bound)."""
    if backend not in VEC_ENVS:
        raise ValueError(f"vec_env={backend!r} must be one of {VEC_ENVS}")
    if backend == "ray":
        from controller.ray_vec_env import RayVecEnv  # Ray is imported only where it is used
        return RayVecEnv(env_cfg, n_envs, seed, ray_address)
    builders = [_make_env(env_cfg, seed + 1000 * i) for i in range(n_envs)]
    return SubprocVecEnv(builders, start_method="spawn") if n_envs > 1 else DummyVecEnv(builders)
