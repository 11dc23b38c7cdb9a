"""Proxy envs as Ray actors on a local 2-CPU cluster: PPO trains through them, and an actor killed with
SIGKILL is restarted with its episode truncated (reported, never silently lost)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from controller.train import ControllerConfig, PPOConfig, train_controller


@pytest.mark.slow
def test_killed_actor_is_restarted_and_its_episode_truncated(tiny_env):
    from controller.ray_vec_env import RayVecEnv
    venv = RayVecEnv(tiny_env(), n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, venv.observation_space.shape[0]) and np.isfinite(obs).all()
    zeros = np.zeros((2, 5), dtype=np.float32)
    _, _, dones, _ = venv.step(zeros)
    assert not dones.any()
    os.kill(venv.actor_pids()[0], signal.SIGKILL)  # a real fault: the actor's process dies
    obs, rewards, dones, infos = venv.step(zeros)
    assert dones[0] and infos[0]["actor_restarted"] and infos[0]["TimeLimit.truncated"] and rewards[0] == 0
    assert dones[1] and "actor_restarted" not in infos[1]  # the other env finished its 4-step episode normally
    assert venv.restarts == 1 and np.isfinite(obs).all()
    for _ in range(2):  # the restarted actor runs a whole new episode
        obs, _, dones, infos = venv.step(zeros)
    assert dones.all() and not any(i.get("actor_restarted") for i in infos)
    venv.close()


@pytest.mark.slow
def test_ppo_trains_on_ray_actors(tiny_env, tmp_path):
    cfg = ControllerConfig(out_dir=str(tmp_path / "ctl"), total_timesteps=16, n_envs=2, checkpoint_every=8,
                           tensorboard=False, vec_env="ray", env=tiny_env(),
                           ppo=PPOConfig(n_steps=8, batch_size=8, n_epochs=1))
    policy = train_controller(cfg)
    assert (policy / "model.zip").is_file() and (tmp_path / "ctl" / "checkpoints" / "step_16").is_dir()


def test_unknown_vec_env_is_refused():
    with pytest.raises(ValueError, match="vec_env='dask'"):
        ControllerConfig(vec_env="dask")
