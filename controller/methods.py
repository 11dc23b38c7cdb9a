"""Schedule methods for the comparisons: how each obtains its schedule, what that cost, and its decider.

Every method ends in a JSON-able ``MethodSpec`` (so worker processes can rebuild it) with its search
cost: the optimiser steps and CPU-seconds spent to obtain the schedule (bank building, PPO episodes,
Optuna trials, replay recording). ``decider(spec, env)`` turns a spec into the knob source of one run.

| method | schedule | search cost |
|---|---|---|
| static, hand | ``tacotron.schedules`` | 0 |
| tuned_static | Optuna TPE over constant knobs | its trials |
| optuna_tpe/cmaes/gp/nsga2 | Optuna over ``parametric_schedule`` | its trials |
| policy | the PPO policy, deployed as ``controller deploy`` does (K fixed in steps) | bank + PPO |
| policy_stretched | the same policy with K stretched to the run (``cadence=stretched``) | bank + PPO |
| replay | the policy's mean knob trajectory on the dev set, replayed open-loop | policy + recording |
| pbt | Ray Tune PBT: a population per run (``controller.pbt``) | (population − 1) × run length per run |
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from controller.baselines import OptunaConfig, best_params, optuna_search, schedule_from_params, search_cost
from controller.deploy import deployment_env_config, load_policy
from controller.episodes import Decide, policy_decider, run_episode, schedule_decider
from controller.policy_io import load_env_config, load_meta, policy_fingerprint
from env.bank import bank_cost, bank_root
from env.instances import load_instance_set
from env.training_env import EnvConfig, TrainingEnv
from tacotron import checkpoint
from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.schedules import Schedule, get_schedule
from tacotron.trainer import yardstick_key

OPTUNA_METHODS = {"tuned_static": ("tpe", "constant"), "optuna_tpe": ("tpe", "schedule"),
                  "optuna_cmaes": ("cmaes", "schedule"), "optuna_gp": ("gp", "schedule"),
                  "optuna_nsga2": ("nsga2", "schedule")}
POLICY_METHODS = ("policy", "policy_stretched", "replay")  # methods that need a trained policy
METHODS = ("static", "hand", *POLICY_METHODS, "pbt", *OPTUNA_METHODS)
MethodSpec = dict  # {"kind": ..., "search_steps": int, "search_cpu_s": float, ...}


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


def record_replay(policy_dir: Path, env_cfg: EnvConfig, dev_instances: list[str], seed: int,
                  workers: int = 2) -> MethodSpec:
    """Run the policy once on each dev instance (``workers`` processes of one thread) and average its
    knob trajectories by decision."""
    started = time.perf_counter()
    jobs = [(policy_dir, dataclasses.replace(env_cfg, threads=1), instance, seed) for instance in dev_instances]
    with mp.get_context("spawn").Pool(workers) as pool:
        trajectories = pool.map(_policy_trajectory, jobs)
    n = min(len(t) for t in trajectories)
    rows = []
    for i in range(n):
        mean = {name: float(np.mean([t[i][name] for t in trajectories])) for name in KNOB_NAMES}
        rows.append({"frac": trajectories[0][i]["step"] / env_cfg.episode_steps, **mean, "r": int(round(mean["r"]))})
    cost = policy_cost(policy_dir)
    recording = len(dev_instances) * env_cfg.episode_steps
    return {"kind": "replay", "rows": rows, "search_steps": cost["search_steps"] + recording,
            "search_cpu_s": cost["search_cpu_s"] + (time.perf_counter() - started) * min(workers, len(jobs))}


def _cache_key(method: str, env_cfg: EnvConfig, policy: Path | None, optuna: OptunaConfig, search_env: EnvConfig,
               dev_instances: list[str]) -> str:
    """A hash of everything that defines how ``method`` obtains its schedule, so a cached one is reused
    only for the same search (and comparisons that share a search share its cost once)."""
    key = {"method": method}
    if method in OPTUNA_METHODS:
        key |= {"optuna": dataclasses.asdict(optuna), "search_env": dataclasses.asdict(search_env),
                "yardstick": yardstick_key()}  # the objective is scored by the yardstick
    if method in (*POLICY_METHODS, *OPTUNA_METHODS) and policy is not None:
        key |= {"policy": policy_fingerprint(policy)}
    if method == "policy_stretched":
        key |= {"episode_steps": env_cfg.episode_steps}  # its K is stretched to the run's length
    if method == "replay":
        key |= {"env": dataclasses.asdict(env_cfg), "dev": dev_instances}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def prepare(method: str, *, env_cfg: EnvConfig, policy: Path | None, optuna: OptunaConfig, search_env: EnvConfig,
            dev_instances: list[str], out: Path, seed: int = 0) -> MethodSpec:
    """Obtain ``method``'s schedule (cached in ``out/method_<name>_<hash>.json``, so a resumed benchmark
    does not search again) -> its spec."""
    cached = out / f"method_{method}_{_cache_key(method, env_cfg, policy, optuna, search_env, dev_instances)}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    if method in ("static", "hand"):
        spec = {"kind": "schedule", "name": method, "search_steps": 0, "search_cpu_s": 0.0}
    elif method == "policy":
        spec = {"kind": "policy", "path": str(policy), **policy_cost(policy)}
    elif method == "policy_stretched":
        k = deployment_env_config(load_env_config(policy), env_cfg.episode_steps, "stretched").steps_per_action
        spec = {"kind": "policy", "path": str(policy), "steps_per_action": k, **policy_cost(policy)}
    elif method == "replay":
        spec = record_replay(policy, env_cfg, dev_instances, seed)
    elif method == "pbt":
        spec = {"kind": "pbt", "search_steps": 0, "search_cpu_s": 0.0}  # its population is paid per run
    else:
        sampler, space = OPTUNA_METHODS[method]
        instances = training_instances(search_env)
        budget = optuna.budget_steps or (policy_cost(policy)["search_steps"] if policy else 0)
        study = optuna_search(sampler, dataclasses.replace(optuna, budget_steps=budget), search_env, instances,
                              prefix=method, default_storage=f"journal:{out / 'optuna.journal'}", space=space)
        steps, cpu, curve = search_cost(study)
        spec = {"kind": "optuna", "space": space, "params": best_params(study), "search_steps": steps,
                "search_cpu_s": cpu, "search_curve": curve, "study": study.study_name, "trials": len(study.trials)}
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_text(cached, json.dumps(spec, indent=2))
    return spec


def run_env_config(spec: MethodSpec, env_cfg: EnvConfig) -> EnvConfig:
    """The env of one compared run: every method's decision points, except a policy deployed with a
    stretched K."""
    return dataclasses.replace(env_cfg, steps_per_action=spec.get("steps_per_action", env_cfg.steps_per_action))


def decider(spec: MethodSpec, env: TrainingEnv) -> Decide:
    if spec["kind"] == "schedule":
        return schedule_decider(get_schedule(spec["name"]))
    if spec["kind"] == "optuna":
        return schedule_decider(schedule_from_params(spec["space"], spec["params"]))
    if spec["kind"] == "replay":
        return schedule_decider(replay_schedule(spec["rows"]))
    if spec["kind"] == "policy":
        return policy_decider(*load_policy(Path(spec["path"]), env))
    raise ValueError(f"method kind {spec['kind']!r} has no single-run decider")
