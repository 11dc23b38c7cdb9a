"""Proxy runs as Ray actors: a stable-baselines3 ``VecEnv`` whose every sub-env is one ``TrainingEnv``
held by a Ray actor, on the local machine or a cluster (``ray_address``).

An actor that dies (its node lost, its process killed) is restarted by Ray; the episode it was running
is ended as *truncated* (SB3 bootstraps from the value estimate there, as for any cut-short episode),
with ``info["actor_restarted"] = True`` and a warning, and the new actor starts a fresh episode. Nothing
is silently lost: the transition that died is never reported as a real one.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from env.training_env import EnvConfig

log = logging.getLogger(__name__)
MAX_RESTARTS = 3  # per actor
RESTART_TIMEOUT_S = 300  # how long a restarting actor may take to answer again


def init_ray(num_cpus: int | None, address: str | None = None) -> None:
    """Start (or join) Ray once per process: ``address`` (or $RAY_ADDRESS) joins a cluster, otherwise a
    local one with ``num_cpus`` CPUs starts. Workers find proxy corpora through $TACOTUNE_CACHE."""
    import ray
    if ray.is_initialized():
        return
    from tacotron.proxy import cache_root
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"TACOTUNE_CACHE": str(cache_root().resolve())}})


class _EnvActor:
    """One ``TrainingEnv`` (with SB3's Monitor, for episode statistics) inside a Ray actor."""

    def __init__(self, env_values: dict):
        import torch
        from stable_baselines3.common.monitor import Monitor

        from controller.policy_io import env_config_from_dict
        from env.training_env import TrainingEnv
        torch.set_num_threads(1)
        self.env = Monitor(TrainingEnv(env_config_from_dict(env_values)))

    def reset(self, seed: int | None):
        return self.env.reset(seed=seed)

    def step(self, action):
        """SB3's auto-reset: a finished episode's last observation goes into info, the next one starts."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["terminal_observation"] = obs
            info["TimeLimit.truncated"] = truncated and not terminated
            obs, reset_info = self.env.reset()
            info["reset_info"] = reset_info
        return obs, reward, terminated or truncated, info

    def pid(self) -> int:
        return os.getpid()

    def get_attr(self, name: str):
        return getattr(self.env, name)

    def set_attr(self, name: str, value) -> None:
        setattr(self.env, name, value)

    def call(self, name: str, args: tuple, kwargs: dict):
        return getattr(self.env, name)(*args, **kwargs)

    def close(self) -> None:
        self.env.close()


class RayVecEnv(VecEnv):
    """``n_envs`` proxy envs, one per Ray actor; see the module docstring for failures."""

    def __init__(self, env_cfg: EnvConfig, n_envs: int, seed: int, address: str | None = None):
        import ray
        init_ray(n_envs, address)
        self._ray = ray
        remote = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)(_EnvActor)
        self.seeds = [seed + 1000 * i for i in range(n_envs)]
        self.actors = [remote.remote(dataclasses.asdict(dataclasses.replace(env_cfg, seed=s, threads=1)))
                       for s in self.seeds]
        self.restarts = 0
        spaces = ray.get([self.actors[0].get_attr.remote(name) for name in ("observation_space", "action_space")])
        super().__init__(n_envs, *spaces)
        self._last_obs = [np.zeros(spaces[0].shape, np.float32) for _ in range(n_envs)]
        self._actions = None

    def reset(self) -> np.ndarray:
        results = self._ray.get([a.reset.remote(s) for a, s in zip(self.actors, self.seeds)])
        self.seeds = [None] * self.num_envs  # seeded once, like SB3's own vec envs
        self.reset_infos = [info for _, info in results]
        self._last_obs = [obs for obs, _ in results]
        return np.stack(self._last_obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = [a.step.remote(action) for a, action in zip(self.actors, actions)]

    def step_wait(self):
        obs, rewards, dones, infos = [], [], [], []
        for i, ref in enumerate(self._actions):
            try:
                o, r, d, info = self._ray.get(ref)
            except self._ray.exceptions.RayActorError as err:
                o, r, d, info = self._restarted(i, err)
            self._last_obs[i] = o
            obs.append(o)
            rewards.append(r)
            dones.append(d)
            infos.append(info)
        return np.stack(obs), np.array(rewards, dtype=np.float32), np.array(dones), infos

    def _restarted(self, i: int, err: Exception) -> tuple:
        """Actor i died mid-step: Ray restarts it; its episode ends truncated and a fresh one starts."""
        self.restarts += 1
        log.warning("proxy env actor %d died (%s); restarted, its episode is truncated", i, type(err).__name__)
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:  # calls fail while Ray brings the actor back
            try:
                obs, _ = self._ray.get(self.actors[i].reset.remote(None))
                break
            except self._ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        return obs, 0.0, True, {"terminal_observation": self._last_obs[i], "TimeLimit.truncated": True,
                                "actor_restarted": True}

    def actor_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            try:
                self._ray.get(actor.close.remote())
            except self._ray.exceptions.RayActorError:
                pass
            self._ray.kill(actor)

    def _on(self, indices) -> list:
        return [self.actors[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name, indices=None):
        return self._ray.get([a.get_attr.remote(attr_name) for a in self._on(indices)])

    def set_attr(self, attr_name, value, indices=None):
        self._ray.get([a.set_attr.remote(attr_name, value) for a in self._on(indices)])

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return self._ray.get([a.call.remote(method_name, method_args, method_kwargs) for a in self._on(indices)])

    def env_is_wrapped(self, wrapper_class, indices=None):
        from stable_baselines3.common.monitor import Monitor
        return [wrapper_class is Monitor] * len(self._get_indices(indices))

