import dataclasses
import json

import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from controller.surrogate import (RecordConfig, SurrogateConfig, SurrogateEnv, fit_surrogate, load_transitions,
                                  record_transitions)
from controller.train import ControllerConfig, PPOConfig, train_controller
from env.observations import OBS_NAMES


@pytest.fixture(scope="module")
def transitions(tiny_env, tmp_path_factory):
    env = tiny_env(episode_steps=6)
    path = tmp_path_factory.mktemp("transitions") / "t.pt"
    record_transitions(RecordConfig(out=str(path), n_transitions=12, n_envs=1, env=env))
    return path


def test_recorded_transitions_are_real_episodes(transitions):
    data = load_transitions(transitions)
    assert data["obs"].shape == data["next_obs"].shape == (12, len(OBS_NAMES))
    assert data["actions"].shape == (12, 5) and data["actions"].abs().max() <= 1
    assert data["episode"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3  # 3 decisions per 6-step episode
    log_step = data["next_obs"][:, OBS_NAMES.index("log_step")]
    assert torch.all(log_step[1:3] > log_step[0:2])  # steps 2, 4, 6 of the run
    assert torch.equal(data["obs"][1:3], data["next_obs"][0:2]) and float(data["record_seconds"]) > 0


@pytest.mark.filterwarnings("ignore:.*alternative render modes")  # the surrogate has no gym registry spec
def test_surrogate_env_passes_both_checkers_and_ends_like_the_run(transitions):
    data = load_transitions(transitions)
    surrogate, report = fit_surrogate(data, SurrogateConfig(epochs=50))
    assert report["transitions"] == 12 and report["episodes"] == 4 and report["heldout_episodes"] == 1
    env = SurrogateEnv(surrogate, data, seed=0)
    gym_check_env(env)
    sb3_check_env(env)
    env.reset(seed=1)
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (True, False)]  # the recorded runs' end terminates


def test_fit_recovers_known_dynamics_on_heldout_episodes():
    """Observation change = 0.5 * (first 5 features of the action, tiled), reward = action sum."""
    gen = torch.Generator().manual_seed(0)
    n, n_obs = 400, 8
    obs, actions = torch.randn(n, n_obs, generator=gen), torch.rand(n, 5, generator=gen) * 2 - 1
    change = 0.5 * torch.cat([actions, actions[:, :3]], dim=1)
    data = {"obs": obs, "actions": actions, "next_obs": obs + change, "rewards": actions.sum(1),
            "episode": torch.arange(n) // 10}
    _, report = fit_surrogate(data, SurrogateConfig(epochs=400))
    assert report["heldout_r2_obs_change"] > 0.95 and report["heldout_r2_reward"] > 0.95


def test_ppo_pretrains_on_the_surrogate_then_counts_only_real_steps(tiny_env, transitions, tmp_path):
    env = tiny_env()
    cfg = ControllerConfig(out_dir=str(tmp_path / "ctl"), total_timesteps=16, n_envs=1, checkpoint_every=16,
                           tensorboard=False, ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=2), env=env,
                           surrogate=SurrogateConfig(transitions=str(transitions), pretrain_timesteps=64, epochs=50))
    policy = train_controller(cfg)
    assert PPO.load(policy / "model.zip").num_timesteps == 16
    assert json.loads((tmp_path / "ctl" / "surrogate_fit.json").read_text())["transitions"] == 12
    with pytest.raises(FileNotFoundError, match="record one with"):
        load_transitions(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="needs surrogate.transitions"):
        train_controller(ControllerConfig(**{**vars(cfg), "out_dir": str(tmp_path / "x"),
                                             "surrogate": SurrogateConfig(pretrain_timesteps=8)}))
    fewer = dataclasses.replace(env, observations=OBS_NAMES[:-1])  # transitions recorded with other features
    with pytest.raises(ValueError, match="record them again"):
        train_controller(ControllerConfig(**{**vars(cfg), "out_dir": str(tmp_path / "y"), "env": fewer}))
