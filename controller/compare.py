"""The equal-compute comparison: every method schedules the same runs on the test instances.

Each method first obtains its schedule (``controller.methods``; search costs counted), then every
method trains the same runs from scratch: same model, data, seeds, initialisations, data order,
decision points and validation, so only the knob source differs. The env and every knob source see
the val split only; every reported figure comes from the **test** split, decoded free-running every
``eval_every`` optimiser steps (r-independent figures, ``tacotron.metrics.FreeRunStats``).

Runs execute in ``workers`` processes of one torch thread, each run saved as it finishes, so a
killed comparison resumes from the runs already done. Writes ``<name>.json`` (see
``summarise``), ``<name>.md`` and PNGs of learning curves and knob trajectories.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from controller.baselines import OptunaConfig
from controller.deploy import deployment_env_config, proxy_horizon
from controller.methods import METHODS, POLICY_METHODS, MethodSpec, decider, prepare, run_env_config
from controller.plots import plot_knob_trajectories, plot_test_curves
from controller.policy_io import load_env_config
from controller.report import machine, markdown_report, summarise
from controller.runs import run_record, test_check
from controller.episodes import run_episode
from env.instances import load_instance_set
from env.training_env import EnvConfig, TrainingEnv
from tacotron import checkpoint
from tacotron.trainer import yardstick_key


@dataclass
class CompareConfig:
    methods: list[str] = field(default_factory=lambda: ["static", "tuned_static", "hand", "optuna_tpe", "replay",
                                                         "policy_stretched", "policy"])
    policy: str = "runs/controller/policy"
    data: list[str] = field(default_factory=list)  # instances or LJSpeech folders; default: the test set
    test_set: str = "test"
    dev_set: str = "heldout"  # where the replay method records the policy's trajectory
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pbt_seeds: int = 1  # PBT runs on the first N seeds only: each of its runs costs a whole population
    pbt_instances: int = 0  # PBT runs on the first N instances only; 0 = all
    model: str = "tiny"
    episode_steps: int = 300  # optimiser steps of every compared run
    eval_every: int = 50  # optimiser steps between free-running checks on the test split
    workers: int = 2  # processes of one torch thread each
    out_dir: str = "benchmarks/results"
    name: str = "compare"  # output files <name>.json/.md/*.png and the folder <name>_runs/
    search_dir: str = ""  # where obtained schedules are cached (shared between comparisons); default <name>_runs/
    quick: bool = False  # smoke run: 1 instance, 1 seed, at most 60 steps, a 2-trial Optuna search
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    env: EnvConfig = field(default_factory=EnvConfig)  # used when no policy takes part

    def __post_init__(self) -> None:
        if unknown := set(self.methods) - set(METHODS):
            raise ValueError(f"methods {sorted(unknown)} are unknown; choose from {sorted(METHODS)}")
        if set(self.methods) & set(POLICY_METHODS) and "policy" not in self.methods:
            raise ValueError(f"methods {sorted(set(self.methods) & set(POLICY_METHODS))} need the policy among the "
                             f"methods: it is what they are compared against")
        if not self.seeds or self.episode_steps < 1 or self.eval_every < 1 or self.workers < 1:
            raise ValueError("seeds must be non-empty and episode_steps, eval_every and workers >= 1")


def _env_configs(cfg: CompareConfig) -> tuple[EnvConfig, EnvConfig]:
    """-> (the env of every compared run, the env of search trials). With a policy, both come from the
    policy's own env config (observations must match): compared runs decide every K steps as
    ``deploy`` does, and search trials are from-scratch proxy runs as long as the policy's proxy horizon."""
    base = load_env_config(Path(cfg.policy)) if "policy" in cfg.methods else cfg.env
    run_env = deployment_env_config(base, cfg.episode_steps, model=cfg.model, log_dir=None, threads=1)
    search_env = deployment_env_config(base, proxy_horizon(base), log_dir=None)
    return run_env, search_env


def run_one(spec: MethodSpec, env_cfg: EnvConfig, instance: str, seed: int, eval_every: int) -> dict:
    """One compared run -> its record: the final test check, steps to align (two consecutive aligned test
    checks; None = censored), the test curve and the knob trajectory."""
    env = TrainingEnv(run_env_config(spec, env_cfg), instances=[instance])
    checks: list[dict] = []
    env.after_optimizer_step = lambda tr: checks.append(test_check(tr)) if tr.step_count % eval_every == 0 else None
    started = time.perf_counter()
    info, _ = run_episode(env, decider(spec, env), instance, seed)
    if not checks or checks[-1]["step"] != env.trainer.step_count:
        checks.append(test_check(env.trainer))
    env.close()
    return run_record(instance, seed, checks, info["knob_trajectory"], diverged=bool(info["diverged"]),
                      rollbacks=info["rollbacks_total"], wall_s=time.perf_counter() - started,
                      run_steps=env.trainer.step_count)


def _run_key(spec: MethodSpec, env_cfg: EnvConfig, eval_every: int) -> str:
    """A hash of everything that shapes a run besides its instance and seed, so a resumed comparison
    keeps a finished run only if it would run the same today."""
    key = {"spec": spec, "env": dataclasses.asdict(env_cfg), "eval_every": eval_every, "yardstick": yardstick_key()}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _is_done(path: Path, key: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("run_key") == key


def _job(args: tuple) -> tuple[str, dict]:
    method, spec, env_cfg, instance, seed, eval_every, path = args
    if spec["kind"] == "pbt":
        from controller.pbt import run_pbt  # Ray is imported only where PBT runs
        record = run_pbt(spec, env_cfg, instance, seed, eval_every)
    else:
        record = run_one(spec, env_cfg, instance, seed, eval_every)
    record["run_key"] = _run_key(spec, env_cfg, eval_every)
    checkpoint.atomic_write_text(Path(path), json.dumps(record))
    return method, record


def _run_grid(jobs: list[tuple], workers: int, progress: bool) -> None:
    """Single runs in ``workers`` processes; PBT runs after them, one at a time, since each one's
    population already uses every core."""
    bar = tqdm(total=len(jobs), desc="compared runs", disable=not progress)
    single = [job for job in jobs if job[1]["kind"] != "pbt"]
    in_main = [job for job in jobs if job[1]["kind"] == "pbt"]
    if workers == 1:
        in_main = single + in_main
    else:
        with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
            for method, record in pool.imap_unordered(_job, single):
                bar.update(1)
                bar.set_postfix(last=f"{method} CER {record['final']['cer']:.3f}")
    for job in in_main:
        method, record = _job(job)
        bar.update(1)
        bar.set_postfix(last=f"{method} CER {record['final']['cer']:.3f}")
    bar.close()


def run_cells(cells: list[tuple[str, MethodSpec, str, int]], run_env: EnvConfig, eval_every: int, runs_dir: Path,
              workers: int, progress: bool = True) -> dict[str, list[dict]]:
    """Run each (label, spec, instance, seed) cell, skipping those already saved under ``runs_dir`` as
    ``<label>__<instance>__<seed>.json`` by a run that would run the same today (resume) -> records by label."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for label, spec, instance, seed in cells:
        path = runs_dir / f"{label}__{instance.replace('/', '_')}__{seed}.json"
        paths.append((label, path))
        if not _is_done(path, _run_key(spec, run_env, eval_every)):
            jobs.append((label, spec, run_env, instance, seed, eval_every, str(path)))
    _run_grid(jobs, workers, progress)
    records: dict[str, list[dict]] = {}
    for label, path in paths:
        records.setdefault(label, []).append(json.loads(path.read_text()))
    return records


def _quick(cfg: CompareConfig) -> CompareConfig:
    return dataclasses.replace(cfg, seeds=cfg.seeds[:1], episode_steps=min(cfg.episode_steps, 60),
                               eval_every=min(cfg.eval_every, 10),
                               optuna=dataclasses.replace(cfg.optuna, n_trials=2, budget_steps=0))


def compare(cfg: CompareConfig, progress: bool = True) -> dict:
    cfg = _quick(cfg) if cfg.quick else cfg
    out = Path(cfg.out_dir)
    runs_dir = out / f"{cfg.name}_runs"
    instances = list(cfg.data) or load_instance_set(cfg.test_set)
    instances = instances[:1] if cfg.quick else instances
    run_env, search_env = _env_configs(cfg)
    started = time.time()
    policy = Path(cfg.policy) if "policy" in cfg.methods else None
    search_dir = Path(cfg.search_dir) if cfg.search_dir else runs_dir
    specs = {m: prepare(m, env_cfg=run_env, policy=policy, optuna=cfg.optuna, search_env=search_env,
                        dev_instances=load_instance_set(cfg.dev_set), out=search_dir)
             for m in tqdm(cfg.methods, desc="obtaining schedules", disable=not progress)}
    cells = [(method, specs[method], instance, seed)
             for method in cfg.methods for n, instance in enumerate(instances)
             if not (method == "pbt" and cfg.pbt_instances and n >= cfg.pbt_instances)
             for seed in (cfg.seeds[:cfg.pbt_seeds] if method == "pbt" else cfg.seeds)]
    records = run_cells(cells, run_env, cfg.eval_every, runs_dir, cfg.workers, progress)
    runs = {m: records.get(m, []) for m in cfg.methods}
    # invocation_wall_s: a resumed call skips finished runs
    result = summarise(runs, specs, {"instances": instances, "seeds": cfg.seeds, "model": cfg.model,
                                     "episode_steps": cfg.episode_steps, "eval_every": cfg.eval_every,
                                     "steps_per_action": run_env.steps_per_action, "quick": cfg.quick,
                                     "invocation_wall_s": time.time() - started, "machine": machine()})
    (out / f"{cfg.name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{cfg.name}.md").write_text(markdown_report(result, cfg.name))
    plot_test_curves({m: [r["curve"] for r in rs] for m, rs in runs.items()}, out / f"{cfg.name}_curves.png")
    plot_knob_trajectories({m: rs[0]["knob_trajectory"] for m, rs in runs.items()}, out / f"{cfg.name}_knobs.png",
                           f"knobs on {instances[0]}, seed {cfg.seeds[0]}")
    return result
