"""Why the policy acts: its knobs against alignment over full deployed runs (each run's, and every run's
against the steps since its own alignment), each action's sensitivity to each observation feature
(mean |∂action/∂observation| of the deterministic policy, on the normalised observations it met), its
mean action before and after alignment was confirmed, and its counterfactuals: how its action moves in
the same run state when alignment is confirmed or a loss spike hits (``counterfactuals``; the states are
saved in ``counterfactual_states.npz``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from controller.deploy import deployment_env_config, load_policy  # noqa: E402
from controller.episodes import policy_action, policy_decider, run_episode  # noqa: E402
from controller.policy_io import load_env_config  # noqa: E402
from env.instances import load_instance_set  # noqa: E402
from env.observations import run_features  # noqa: E402
from env.training_env import TrainingEnv  # noqa: E402
from tacotron.knobs import KNOB_NAMES  # noqa: E402


@dataclass
class ExplainConfig:
    policy: str = "runs/controller/policy"
    instance_set: str = "heldout"  # development voices: never the test set
    # Overrides instance_set: instance names or LJSpeech paths, e.g. voices that align early and late.
    data: list[str] = field(default_factory=list)
    episodes: int = 1
    max_steps: int = 1500  # each episode is a full run from scratch, deployed as `controller deploy` runs it
    out_dir: str = "runs/explain"
    counterfactual_every: int = 5  # decisions between counterfactuals (each costs two extra windows)
    spike_factor: float = 30.0  # the counterfactual loss spike: one step at this times the learning rate

    def __post_init__(self) -> None:
        if min(self.episodes, self.max_steps, self.counterfactual_every) < 1:
            raise ValueError(f"episodes={self.episodes}, max_steps={self.max_steps} and counterfactual_every="
                             f"{self.counterfactual_every} must be >= 1")


def sensitivity(model, observations: np.ndarray) -> np.ndarray:
    """``[n_actions, n_obs]`` mean absolute gradient of the policy's mean action."""
    obs = torch.tensor(observations, dtype=torch.float32, requires_grad=True)
    mean = model.policy.get_distribution(obs).distribution.mean  # [B, n_actions]
    rows = []
    for j in range(mean.shape[1]):
        (grad,) = torch.autograd.grad(mean[:, j].sum(), obs, retain_graph=True)
        rows.append(grad.abs().mean(0).numpy())
    return np.stack(rows)


def plot_knobs_against_alignment(rows: list[dict], aligned_at: int | None, path: Path, title: str) -> None:
    """Each knob and the free-running val diagonality per decision, with the confirmed aligned step."""
    names = (*KNOB_NAMES, "val_infer_diagonality")
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.8 * len(names)), sharex=True)
    steps = [row["step"] for row in rows]
    for ax, name in zip(axes, names):
        ax.step(steps, [row[name] for row in rows], where="post")
        ax.set_ylabel(name if name in KNOB_NAMES else "val diag.")
        if aligned_at is not None:
            ax.axvline(aligned_at, color="tab:red", linestyle="--", linewidth=1)
    axes[0].set_yscale("log")
    axes[-1].set_xlabel("optimiser step" + ("" if aligned_at is None else f" (red: aligned at {aligned_at})"))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def counterfactual_states(obs: np.ndarray, env: TrainingEnv, spike_factor: float) -> dict[str, np.ndarray]:
    """Pairs of observations that differ in one fact about the run and nothing else: alignment confirmed
    100 steps ago against not yet confirmed, in the same state; and a loss spike now against none, over
    the next window at the current knobs (``env.peek``)."""
    def with_alignment(aligned: bool) -> np.ndarray:
        flipped = obs.copy()
        flipped[env.obs_names.index("aligned")] = float(aligned)
        flipped[env.obs_names.index("log_steps_since_aligned")] = run_features(100, 0 if aligned else None)[
            "log_steps_since_aligned"]
        return flipped
    return {"aligned": with_alignment(True), "unaligned": with_alignment(False), "spike": env.peek(spike_factor),
            "calm": env.peek()}


def counterfactuals(act: Callable[[np.ndarray], np.ndarray], states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The policy's action (per active knob, in action units: > 0 raises the knob) in each pair of
    ``counterfactual_states`` (one pair, or a stack of them), one state minus the other."""
    return {"aligned_minus_unaligned": act(states["aligned"]) - act(states["unaligned"]),
            "spike_minus_calm": act(states["spike"]) - act(states["calm"])}


def policy_reactions(policy: Path, states: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """A saved policy's ``counterfactuals`` on saved ``counterfactual_states``, as {question: {knob: its
    action's change in each state}} (> 0 raises the knob)."""
    # the env gives the policy its spaces and features; nothing is reset or run, so no corpus is read
    env = TrainingEnv(deployment_env_config(load_env_config(policy), 100, log_dir=None))
    deltas = counterfactuals(policy_action(*load_policy(policy, env)), states)
    return {question: dict(zip(env.cfg.actions.active, delta.T)) for question, delta in deltas.items()}


def plot_knobs_since_alignment(runs: list[dict], path: Path) -> None:
    """Each knob of every run against the optimiser step (left) and against the steps since that run's
    alignment (right): a policy that reacts to alignment gives curves that line up on the right, one
    that follows a clock gives curves that line up on the left. Runs that never aligned are left out."""
    aligned = [run for run in runs if run["steps_to_align"] is not None]
    fig, axes = plt.subplots(len(KNOB_NAMES), 2, figsize=(11, 1.8 * len(KNOB_NAMES)), sharey="row")
    for run in aligned:
        steps = np.array([row["step"] for row in run["knobs"]])
        for (left, right), name in zip(axes, KNOB_NAMES):
            values = [row[name] for row in run["knobs"]]
            left.step(steps, values, where="post", label=f"aligned at {run['steps_to_align']}")
            right.step(steps - run["steps_to_align"], values, where="post")
    for (left, right), name in zip(axes, KNOB_NAMES):
        left.set_ylabel(name)
        right.axvline(0, color="tab:red", linestyle="--", linewidth=1)
        if name == "lr":
            left.set_yscale("log")
    if aligned:
        axes[0][0].legend(fontsize="x-small")
    axes[-1][0].set_xlabel("optimiser step" + ("" if aligned else " (no run aligned)"))
    axes[-1][1].set_xlabel("steps since alignment")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def explain(cfg: ExplainConfig) -> dict:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    instances = cfg.data or load_instance_set(cfg.instance_set)
    env = TrainingEnv(deployment_env_config(load_env_config(Path(cfg.policy)), cfg.max_steps, instances=instances,
                                            log_dir=None))
    model, stats = load_policy(Path(cfg.policy), env)
    act = policy_decider(model, stats)
    raw_action = policy_action(model, stats)  # the policy's own action, before any support shrink
    seen, phases, runs, states = [], [], [], []

    def decide(obs, env):
        if len(seen) % cfg.counterfactual_every == 0:
            states.append(counterfactual_states(obs, env, cfg.spike_factor))
        seen.append(obs)  # raw; normalised below with the same frozen statistics
        phases.append(env.aligned_at is not None)
        rows.append({"step": env.trainer.step_count, **env.trainer.knobs.as_dict(),
                     "val_infer_diagonality": env.last_val.infer.diagonality})
        return act(obs, env)
    for i in range(cfg.episodes):
        instance, rows = instances[i % len(instances)], []
        info, _ = run_episode(env, decide, instance, seed=i)
        plot_knobs_against_alignment(rows, info["steps_to_align"], out / f"alignment_{i}.png",
                                     f"policy on {instance} (seed {i}), {cfg.max_steps} steps")
        runs.append({"instance": instance, "seed": i, "steps_to_align": info["steps_to_align"],
                     "final_score": info["final_score"], "knobs": rows})
    plot_knobs_since_alignment(runs, out / "knobs_since_alignment.png")
    normalised = stats.normalize_obs(np.stack(seen))
    sens = sensitivity(model, normalised)
    actions, features = env.cfg.actions.active, env.obs_names
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.imshow(sens, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(features)), features, rotation=90, fontsize=7)
    ax.set_yticks(range(len(actions)), actions)
    ax.set_title("mean |d action / d observation| (normalised observations)")
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png", dpi=90)
    plt.close(fig)
    mean_actions = model.predict(normalised, deterministic=True)[0]
    aligned = np.array(phases)
    by_phase = {a: {phase: float(mean_actions[mask, j].mean()) if mask.any() else None
                    for phase, mask in (("before_aligned", ~aligned), ("after_aligned", aligned))}
                for j, a in enumerate(actions)}
    top = {a: [features[i] for i in np.argsort(-sens[j])[:5]] for j, a in enumerate(actions)}
    # The states themselves, so tests can ask a fixed policy checkpoint the same questions (tests/test_reactions.py).
    stacked = {key: np.stack([s[key] for s in states]) for key in states[0]}
    np.savez(out / "counterfactual_states.npz", **stacked)
    deltas = counterfactuals(raw_action, stacked)
    changes = {name: {a: float(delta[:, j].mean()) for j, a in enumerate(actions)} for name, delta in deltas.items()}
    result = {"top_features": top, "mean_action_by_phase": by_phase, "runs": runs,
              "counterfactuals": changes | {"states": len(states), "spike_factor": cfg.spike_factor},
              "sensitivity": {a: dict(zip(features, map(float, sens[j]))) for j, a in enumerate(actions)}}
    (out / "explain.json").write_text(json.dumps(result, indent=2))
    return result
