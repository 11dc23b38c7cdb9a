"""Why the policy acts: knob trajectories over typical episodes, and each action's sensitivity to
each observation feature (mean |∂action/∂observation| of the deterministic policy, on the
normalised observations it met in those episodes)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from controller.deploy import load_policy  # noqa: E402
from controller.episodes import policy_decider, run_episode  # noqa: E402
from controller.plots import plot_knob_trajectories  # noqa: E402
from controller.policy_io import load_env_config  # noqa: E402
from env.instances import load_instance_set  # noqa: E402
from env.training_env import TrainingEnv  # noqa: E402


@dataclass
class ExplainConfig:
    policy: str = "runs/controller/policy"
    instance_set: str = "train"
    episodes: int = 2
    out_dir: str = "runs/explain"

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes={self.episodes} must be >= 1")


def sensitivity(model, observations: np.ndarray) -> np.ndarray:
    """``[n_actions, n_obs]`` mean absolute gradient of the policy's mean action."""
    obs = torch.tensor(observations, dtype=torch.float32, requires_grad=True)
    mean = model.policy.get_distribution(obs).distribution.mean  # [B, n_actions]
    rows = []
    for j in range(mean.shape[1]):
        (grad,) = torch.autograd.grad(mean[:, j].sum(), obs, retain_graph=True)
        rows.append(grad.abs().mean(0).numpy())
    return np.stack(rows)


def explain(cfg: ExplainConfig) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_cfg = load_env_config(Path(cfg.policy))
    instances = load_instance_set(cfg.instance_set)
    env = TrainingEnv(env_cfg, instances=instances)
    model, stats = load_policy(Path(cfg.policy), env)
    seen, trajectories = [], {}

    act = policy_decider(model, stats)

    def decide(obs, env):
        seen.append(obs)  # raw; normalised below with the same frozen statistics
        return act(obs, env)
    for i in range(cfg.episodes):
        instance = instances[i % len(instances)]
        info, _ = run_episode(env, decide, instance, seed=i)
        trajectories[f"{instance} (seed {i})"] = info["knob_trajectory"]
    plot_knob_trajectories(trajectories, out / "trajectories.png", "policy knob trajectories")
    sens = sensitivity(model, stats.normalize_obs(np.stack(seen)))
    actions, features = env_cfg.actions.active, env.obs_names
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.imshow(sens, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(features)), features, rotation=90, fontsize=7)
    ax.set_yticks(range(len(actions)), actions)
    ax.set_title("mean |d action / d observation| (normalised observations)")
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png", dpi=90)
    plt.close(fig)
    top = {a: [features[i] for i in np.argsort(-sens[j])[:5]] for j, a in enumerate(actions)}
    result = {"top_features": top, "sensitivity": {a: dict(zip(features, map(float, sens[j])))
                                                   for j, a in enumerate(actions)}}
    (out / "explain.json").write_text(json.dumps(result, indent=2))
    return result
