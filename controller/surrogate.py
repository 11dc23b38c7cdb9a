"""A learned surrogate of proxy training dynamics, for pre-training PPO before the real env.

1. ``record_transitions`` runs real proxy episodes with random actions around "keep every knob"
   and saves (observation, action, reward, next observation).
2. ``fit_surrogate`` fits an MLP from (observation, action) to (observation change, reward) and
   measures it on held-out episodes.
3. ``SurrogateEnv`` is a Gymnasium env with the real env's spaces that steps the MLP, with noise
   as large as the held-out residuals, in microseconds instead of seconds.

``controller.train`` pre-trains on it when ``surrogate.pretrain_timesteps`` > 0, then fine-tunes on
the real env. It has not paid so far: on 300-step proxies (``ppo_economics`` before issue #13, in
the git history), bank-started PPO first beat static after 2.9 CPU-minutes, PPO pre-trained on the
surrogate after 9.7 (its reward fit had a held-out R² of −1.6). The full-run policy does not use it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from tqdm import tqdm

from controller.vec_env import proxy_vec_env
from env.observations import OBS_LIMIT
from env.training_env import EnvConfig
from tacotron import checkpoint

log = logging.getLogger(__name__)

FIELDS = ("obs", "actions", "rewards", "next_obs", "episode")


@dataclass
class SurrogateConfig:
    transitions: str | None = None  # file written by record_transitions
    pretrain_timesteps: int = 0  # PPO env steps on the surrogate before the real env; 0 = none
    hidden: int = 128
    epochs: int = 400
    heldout_fraction: float = 0.2  # episodes kept out of the fit to measure it
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pretrain_timesteps < 0 or self.hidden < 1 or self.epochs < 1:
            raise ValueError("surrogate.pretrain_timesteps must be >= 0, hidden and epochs >= 1")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"surrogate.heldout_fraction={self.heldout_fraction} must be in (0, 1)")


@dataclass
class RecordConfig:
    """``tacotune env record-transitions``: real episodes with random actions, saved for the surrogate."""

    out: str = "runs/transitions.pt"
    n_transitions: int = 200
    n_envs: int = 2
    action_std: float = 0.5  # Gaussian actions around 0 (= keep every knob), clipped to [-1, 1]
    seed: int = 0
    env: EnvConfig = field(default_factory=lambda: EnvConfig(threads=1))

    def __post_init__(self) -> None:
        if self.n_transitions < 1 or self.n_envs < 1 or self.action_std <= 0:
            raise ValueError("n_transitions and n_envs must be >= 1 and action_std > 0")


def record_transitions(cfg: RecordConfig) -> Path:
    """Run real episodes in ``n_envs`` processes and save their transitions (atomically) to ``cfg.out``."""
    venv = proxy_vec_env(cfg.env, cfg.n_envs, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rows = {name: [] for name in FIELDS}
    episode_of_env = np.arange(cfg.n_envs)
    next_episode = cfg.n_envs
    start = time.perf_counter()
    obs = venv.reset()
    with tqdm(total=cfg.n_transitions, desc="recording transitions") as bar:
        while len(rows["obs"]) < cfg.n_transitions:
            actions = np.clip(rng.normal(0.0, cfg.action_std, (cfg.n_envs,) + venv.action_space.shape), -1, 1)
            next_obs, rewards, dones, infos = venv.step(actions.astype(np.float32))
            for i in range(cfg.n_envs):
                final = infos[i]["terminal_observation"] if dones[i] else next_obs[i]
                for name, value in zip(FIELDS, (obs[i], actions[i], rewards[i], final, episode_of_env[i])):
                    rows[name].append(value)
                if dones[i]:
                    episode_of_env[i], next_episode = next_episode, next_episode + 1
            obs = next_obs
            bar.update(cfg.n_envs)
    venv.close()
    data = {name: torch.as_tensor(np.asarray(values), dtype=torch.long if name == "episode" else torch.float32)
            for name, values in rows.items()}
    data["record_seconds"] = torch.tensor(time.perf_counter() - start)
    checkpoint.atomic_save(data, Path(cfg.out))
    return Path(cfg.out)


def load_transitions(path: str | Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"transitions file {path} does not exist; record one with "
                                f"`tacotune env record-transitions out={path}`")
    data = checkpoint.load(Path(path))
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise ValueError(f"{path} is not a transitions file (missing {missing}); write one with "
                         f"`tacotune env record-transitions`")
    return data


class Surrogate(nn.Module):
    """MLP (observation, action) -> (observation change, reward), on standardised inputs and targets."""

    def __init__(self, n_obs: int, n_actions: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_obs + n_actions, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, n_obs + 1))
        n_in, n_out = n_obs + n_actions, n_obs + 1
        self.register_buffer("x_mean", torch.zeros(n_in))
        self.register_buffer("x_std", torch.ones(n_in))
        self.register_buffer("y_mean", torch.zeros(n_out))
        self.register_buffer("y_std", torch.ones(n_out))
        self.register_buffer("noise_std", torch.zeros(n_out))  # per-output noise of SurrogateEnv

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean prediction ``[B, n_obs + 1]`` in original units: observation change, then reward."""
        x = (torch.cat([obs, actions], dim=1) - self.x_mean) / self.x_std
        return self.net(x) * self.y_std + self.y_mean


def _targets(data: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([data["next_obs"] - data["obs"], data["rewards"][:, None]], dim=1)


def _std(t: torch.Tensor) -> torch.Tensor:
    """Per-column std; a column constant in the data (a frozen knob, say) gets 1 instead of 0."""
    std = t.std(0)
    return torch.where(std > 1e-6, std, torch.ones_like(std))


def fit_surrogate(data: dict[str, torch.Tensor], cfg: SurrogateConfig) -> tuple[Surrogate, dict]:
    """Fit on all but ``heldout_fraction`` of the episodes -> (surrogate, report).

    The report gives the held-out R² of the observation change and of the reward against predicting
    their training means; the held-out residual std becomes the surrogate's noise.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    episodes = data["episode"].unique()
    episodes = episodes[torch.randperm(len(episodes), generator=gen)]
    n_held = max(1, round(cfg.heldout_fraction * len(episodes)))
    if len(episodes) - n_held < 1:
        raise ValueError(f"the transitions hold {len(episodes)} episode(s); the surrogate needs at least 2")
    held = torch.isin(data["episode"], episodes[:n_held])
    x_obs, x_act, y = data["obs"], data["actions"], _targets(data)
    model = Surrogate(x_obs.shape[1], x_act.shape[1], cfg.hidden)
    x_train = torch.cat([x_obs, x_act], dim=1)[~held]
    model.x_mean, model.x_std = x_train.mean(0), _std(x_train)
    model.y_mean, model.y_std = y[~held].mean(0), _std(y[~held])
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(cfg.epochs):  # full batch: a few hundred transitions
        loss = (((model(x_obs[~held], x_act[~held]) - y[~held]) / model.y_std) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        residual = model(x_obs[held], x_act[held]) - y[held]
        model.noise_std = residual.std(0).nan_to_num(0.0) if held.sum() > 1 else residual.abs()[0]
        # R² against predicting the training mean, pooled over standardised columns, so a column
        # that barely varies in the held-out episodes cannot dominate
        unexplained = (residual / model.y_std).square().sum(0)
        total = ((y[held] - model.y_mean) / model.y_std).square().sum(0)
    report = {"transitions": int(len(y)), "episodes": int(len(episodes)), "heldout_episodes": n_held,
              "train_loss": loss.item(),
              "heldout_r2_obs_change": float(1 - unexplained[:-1].sum() / total[:-1].sum().clamp_min(1e-12)),
              "heldout_r2_reward": float(1 - unexplained[-1] / total[-1].clamp_min(1e-12))}
    log.info("surrogate fit: %s", report)
    return model.eval(), report


class SurrogateEnv(gym.Env):
    """The real env's spaces, dynamics from a ``Surrogate``.

    An episode starts at a recorded first observation and lasts as many decisions as the longest
    recorded episode; each step adds the predicted change plus Gaussian noise of the held-out
    residual size, so PPO cannot exploit a falsely certain model.
    """

    metadata = {"render_modes": []}

    def __init__(self, surrogate: Surrogate, data: dict[str, torch.Tensor], seed: int = 0):
        n_obs, n_act = data["obs"].shape[1], data["actions"].shape[1]
        self.observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (n_obs,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n_act,), np.float32)
        self.surrogate = surrogate
        episode = data["episode"].numpy()
        # rows of parallel envs interleave, so an episode's start is its first row, wherever it lies
        self.starts = data["obs"].numpy()[np.unique(episode, return_index=True)[1]]
        self.horizon = int(np.bincount(episode).max())
        self.reset(seed=seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs = self.starts[int(self.np_random.integers(len(self.starts)))].copy()
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action):
        with torch.no_grad():
            mean = self.surrogate(torch.as_tensor(self._obs)[None], torch.as_tensor(action, dtype=torch.float32)[None])
        noise = self.np_random.normal(size=mean.shape[1]) * self.surrogate.noise_std.numpy()
        out = mean[0].numpy() + noise
        self._obs = np.clip(self._obs + out[:-1], -OBS_LIMIT, OBS_LIMIT).astype(np.float32)
        self._t += 1
        return self._obs.copy(), float(out[-1]), self._t >= self.horizon, False, {}  # the run's end


def surrogate_vec_env(cfg: SurrogateConfig, n_envs: int, seed: int) -> tuple[DummyVecEnv, dict]:
    """``n_envs`` surrogate envs (one process: they are cheap) fitted to ``cfg.transitions`` -> (venv, fit report)."""
    if not cfg.transitions:
        raise ValueError("surrogate.pretrain_timesteps > 0 needs surrogate.transitions (a recorded file)")
    data = load_transitions(cfg.transitions)
    surrogate, report = fit_surrogate(data, cfg)
    venv = DummyVecEnv([lambda i=i: Monitor(SurrogateEnv(surrogate, data, seed + 1000 * i)) for i in range(n_envs)])
    return venv, report
