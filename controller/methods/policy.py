"""The trained policy, deployed with a fixed or a stretched decision interval, and its open-loop replay."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from controller.deploy import deployment_env_config, holding_ga_until_aligned, load_policy
from controller.episodes import Decide, policy_decider, run_episode, schedule_decider
from controller.methods.base import EpisodeMethod, PrepareContext, Spec
from controller.policy_io import load_env_config, load_meta, policy_fingerprint
from env.bank import bank_cost, bank_root
from env.instances import load_instance_set
from env.training_env import EnvConfig, TrainingEnv
from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.pool import run_jobs
from tacotron.schedules import Schedule


def training_instances(env_cfg: EnvConfig) -> list[str]:
    return list(env_cfg.instances) or load_instance_set(env_cfg.instance_set)


def policy_cost(policy_dir: Path) -> dict:
    """Everything spent to obtain a policy: its warm-start bank and its PPO episodes."""
    trained = load_env_config(policy_dir)
    meta = load_meta(policy_dir)
    steps = meta["num_timesteps"] * trained.steps_per_action
    cpu = meta.get("train_seconds", 0.0) * meta.get("n_envs", 2) * max(trained.threads, 1)
    if trained.start == "bank":
        bank = meta.get("bank_cost") or bank_cost(bank_root(training_instances(trained), trained, trained.bank))
        steps, cpu = steps + bank["steps"], cpu + bank["cpu_seconds"]
    return {"search_steps": int(steps), "search_cpu_s": float(cpu)}


class PolicyMethod(EpisodeMethod):
    """The policy as ``controller deploy`` runs it: ``cadence=fixed`` decides every K steps as in
    training; ``stretched`` scales K with the run's length (``controller.deploy``). ``hold_ga_until_aligned``
    deploys it with guided attention held at or above its reference until alignment (``env.actions``)."""

    needs_policy = True

    def __init__(self, name: str, cadence: str, hold_ga_until_aligned: bool = False):
        super().__init__(name)
        self.cadence = cadence
        self.hold_ga_until_aligned = hold_ga_until_aligned

    def search_key(self, ctx: PrepareContext) -> dict:
        # A stretched K depends on the run's length.
        return {"policy": policy_fingerprint(ctx.policy),
                "episode_steps": ctx.run_env.episode_steps if self.cadence == "stretched" else None}

    def prepare(self, ctx: PrepareContext) -> Spec:
        k = deployment_env_config(load_env_config(ctx.policy), ctx.run_env.episode_steps, self.cadence).steps_per_action
        return Spec(self.name, schedule={"path": str(ctx.policy), "steps_per_action": k}, **policy_cost(ctx.policy))

    def run_env(self, spec: Spec, env_cfg: EnvConfig) -> EnvConfig:
        env_cfg = dataclasses.replace(env_cfg, steps_per_action=spec.schedule["steps_per_action"])
        return holding_ga_until_aligned(env_cfg) if self.hold_ga_until_aligned else env_cfg

    def at_budgets(self, ctx: PrepareContext, budgets_cpu_s: list[float]) -> list[Spec | None]:
        """The policy at its PPO checkpoints (``controller train`` writes them beside the policy): at each
        budget, the newest one that cost no more (None where even the bank cost more)."""
        saved = sorted(Path(ctx.policy).parent.glob("checkpoints/step_*"), key=lambda p: load_meta(p)["num_timesteps"])
        costed = [(policy_cost(p)["search_cpu_s"], p) for p in [*saved, Path(ctx.policy)]]
        picks = [max((c for c in costed if c[0] <= budget), key=lambda c: c[0], default=None)
                 for budget in budgets_cpu_s]
        return [None if pick is None else self.prepare(dataclasses.replace(ctx, policy=pick[1])) for pick in picks]

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return policy_decider(*load_policy(Path(spec.schedule["path"]), env))


def replay_schedule(rows: list[dict]) -> Schedule:
    """Open-loop replay of rows {"frac", knob...}: the last row at or before the run's fraction."""
    fracs = [row["frac"] for row in rows]

    def schedule(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
        i = max(0, int(np.searchsorted(fracs, step / max(max_steps, 1), side="right")) - 1)
        return Knobs(**{name: rows[i][name] for name in KNOB_NAMES})
    return schedule


def _policy_trajectory(args: tuple) -> list[dict]:
    policy_dir, env_cfg, instance, seed = args
    env = TrainingEnv(env_cfg, instances=[instance])
    info, _ = run_episode(env, policy_decider(*load_policy(policy_dir, env)), instance, seed)
    env.close()
    return info["knob_trajectory"]


class ReplayMethod(EpisodeMethod):
    """The policy's mean knob trajectory on the dev set, by decision, replayed open-loop: what the policy
    adds by reacting. Its cost: the policy's plus the recording runs."""

    needs_policy = True
    workers = 2  # recording runs in parallel, one torch thread each

    def search_key(self, ctx: PrepareContext) -> dict:
        return {"policy": policy_fingerprint(ctx.policy), "env": ctx.run_env, "dev": ctx.dev_instances}

    def prepare(self, ctx: PrepareContext) -> Spec:
        started = time.perf_counter()
        env_cfg = ctx.run_env
        jobs = [(ctx.policy, dataclasses.replace(env_cfg, threads=1), instance, ctx.seed)
                for instance in ctx.dev_instances]
        trajectories = run_jobs(_policy_trajectory, jobs, self.workers, "recording the policy for replay")
        n = min(len(t) for t in trajectories)
        rows = []
        for i in range(n):
            mean = {name: float(np.mean([t[i][name] for t in trajectories])) for name in KNOB_NAMES}
            rows.append({"frac": trajectories[0][i]["step"] / env_cfg.episode_steps, **mean,
                         "r": int(round(mean["r"]))})
        cost = policy_cost(ctx.policy)
        recording_cpu = (time.perf_counter() - started) * min(self.workers, len(jobs))
        return Spec(self.name, search_steps=cost["search_steps"] + len(jobs) * env_cfg.episode_steps,
                    search_cpu_s=cost["search_cpu_s"] + recording_cpu, schedule={"rows": rows})

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        return schedule_decider(replay_schedule(spec.schedule["rows"]))
