"""The equal-compute comparison: every method schedules the same runs on the evaluated instances.

Each method first obtains its schedule (``controller.methods``; search costs counted), then every
method trains the same runs from scratch: same model, data, seeds, initialisations, data order,
decision points and validation, so only the knob source differs. The env and every knob source see
the val split only; every reported figure comes from the **test** split, decoded free-running every
``eval_every`` optimiser steps (r-independent figures, ``tacotron.metrics.FreeRunStats``). With
``budget_fractions``, methods whose schedule depends on their search budget (Optuna, the policy) are
also scored at those fractions of the reference's search cost: the anytime curves (``budget_curve``).

Runs execute in ``workers`` processes of one torch thread, each run saved as it finishes, so a
killed comparison resumes from the runs already done. Writes ``<name>.json`` (see
``summarise``), ``<name>.md`` and PNGs of learning curves and knob trajectories.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from controller.baselines import OptunaConfig
from controller.deploy import deployment_env_config, proxy_horizon
from controller.methods import METHODS, Cell, PrepareContext, Spec, get_method
from controller.methods.base import run_key
from controller.plots import plot_budget_curve, plot_knob_trajectories, plot_test_curves
from controller.policy_io import load_env_config
from controller.report import budget_curve, machine, markdown_report, summarise
from env.instances import load_instance_set, sealed_instances
from env.training_env import EnvConfig
from tacotron import checkpoint
from tacotron.pool import run_jobs


@dataclass
class CompareConfig:
    # also optuna_cmaes, optuna_gp, optuna_nsga2 (multi-objective), policy_stretched and pbt (Ray Tune)
    methods: list[str] = field(default_factory=lambda: ["static", "tuned_static", "hand", "optuna_tpe", "replay",
                                                         "policy"])
    reference: str = "policy"  # every other method is paired against this one, when it takes part
    policy: str = "runs/controller/policy"
    data: list[str] = field(default_factory=list)  # instances or LJSpeech folders; default: eval_set
    # The instance set whose test splits are scored. The sealed sets (`test`, `test_*`) are scored once, at the end,
    # with the design frozen (benchmarks/README.md); design work uses the dev sets.
    eval_set: str = "dev2"
    dev_set: str = "heldout"  # where the replay method records the policy's trajectory
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Methods that train a population per run (PBT) run on the first N seeds and instances only (0 = all).
    population_seeds: int = 1
    population_instances: int = 0
    model: str = "tiny"
    batch_size: int = 0  # the batch size of every compared run; 0 = the policy's (or env's)
    episode_steps: int = 300  # optimiser steps of every compared run
    eval_every: int = 50  # optimiser steps between free-running checks on the test split
    workers: int = 2  # processes of one torch thread each
    out_dir: str = "benchmarks/results"
    name: str = "compare"  # output files <name>.json/.md/*.png and the folder <name>_runs/
    search_dir: str = ""  # where obtained schedules are cached (shared between comparisons); default <name>_runs/
    quick: bool = False  # smoke run: 1 instance and 1 dev instance, 1 seed, at most 60 steps, a 2-trial Optuna search
    # Anytime curves: every method's schedule at these fractions of the reference's search cost (Optuna's
    # best so far, the policy's checkpoints), each scored on the first `budget_seeds` seeds; empty = none.
    budget_fractions: list[float] = field(default_factory=list)
    budget_seeds: int = 1
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    env: EnvConfig = field(default_factory=EnvConfig)  # used when no method needs the policy

    def __post_init__(self) -> None:
        for name in [*self.methods, self.reference]:
            get_method(name)
        if not self.seeds or self.episode_steps < 1 or self.eval_every < 1 or self.workers < 1 or self.batch_size < 0:
            raise ValueError("seeds must be non-empty, episode_steps, eval_every and workers >= 1 and batch_size >= 0")
        if self.budget_fractions and (self.reference not in self.methods or min(self.budget_fractions) <= 0
                                      or self.budget_seeds < 1):
            raise ValueError(f"budget_fractions (fractions > 0 of {self.reference!r}'s search cost) need "
                             f"{self.reference!r} among the methods and budget_seeds >= 1")

    @property
    def needs_policy(self) -> bool:
        return any(METHODS[m].needs_policy for m in self.methods)


def _env_configs(cfg: CompareConfig) -> tuple[EnvConfig, EnvConfig]:
    """-> (the env of every compared run, the env of search trials). With a policy, both come from the
    policy's own env config (observations must match): compared runs decide every K steps as
    ``deploy`` does, and search trials are from-scratch proxy runs as long as the policy's proxy horizon."""
    base = load_env_config(Path(cfg.policy)) if cfg.needs_policy else cfg.env
    trainer = dataclasses.replace(base.trainer, batch_size=cfg.batch_size or base.trainer.batch_size)
    run_env = deployment_env_config(base, cfg.episode_steps, model=cfg.model, trainer=trainer, log_dir=None, threads=1)
    search_env = deployment_env_config(base, proxy_horizon(base), log_dir=None)
    return run_env, search_env


def _is_done(path: Path, key: str) -> bool:
    return path.is_file() and json.loads(path.read_text()).get("run_key") == key


def _job(args: tuple) -> tuple[str, dict]:
    label, spec, cell, path = args
    record = dataclasses.asdict(get_method(spec.method).run(spec, cell)) | {"run_key": run_key(spec, cell)}
    checkpoint.atomic_write_text(Path(path), json.dumps(record))
    return label, record


def _show_figure(bar, result: tuple[str, dict]) -> None:
    label, record = result
    bar.set_postfix(last=f"{label} CER {record['final']['cer']:.3f}")


def _show_label(bar, result: tuple[str, dict]) -> None:
    bar.set_postfix(last=result[0])


def run_cells(cells: list[tuple[str, Spec, str, int]], run_env: EnvConfig, eval_every: int, runs_dir: Path,
              workers: int, progress: bool = True, sealed: bool = False) -> dict[str, list[dict]]:
    """Run each (label, spec, instance, seed) cell, skipping those already saved under ``runs_dir`` as
    ``<label>__<instance>__<seed>.json`` by a run that would run the same today (resume) -> records by
    label. Single runs go to ``workers`` processes; methods that train a population run after them, one
    at a time, since each already uses every core. ``sealed``: the cells score the sealed test set, so
    the progress bar names each finished run without its figure (no look before the run ends)."""
    show = _show_label if sealed else _show_figure
    runs_dir.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for label, spec, instance, seed in cells:
        path = runs_dir / f"{label}__{instance.replace('/', '_')}__{seed}.json"
        paths.append((label, path))
        cell = Cell(instance, seed, run_env, eval_every)
        if not _is_done(path, run_key(spec, cell)):
            jobs.append((label, spec, cell, str(path)))
    single = [job for job in jobs if METHODS[job[1].method].population == 1]
    population = [job for job in jobs if METHODS[job[1].method].population > 1]
    run_jobs(_job, single, workers, "compared runs", progress, on_result=show)
    run_jobs(_job, population, 1, "population runs", progress and bool(population), on_result=show)
    records: dict[str, list[dict]] = {}
    for label, path in paths:
        records.setdefault(label, []).append(json.loads(path.read_text()))
    return records


def _budget_points(cfg: CompareConfig, ctx: PrepareContext,
                   specs: dict[str, Spec]) -> dict[str, list[tuple[str, float | None, Spec]]]:
    """Each method's schedules at the budget fractions of the reference's search cost (``label_points``); a
    fixed-cost method has its compared schedule only."""
    budgets = [f * specs[cfg.reference].search_cpu_s for f in cfg.budget_fractions]
    return {method: label_points(method, specs[method],
                                 zip(cfg.budget_fractions, METHODS[method].at_budgets(ctx, budgets) or []))
            for method in cfg.methods}


def label_points(method: str, compared: Spec,
                 at_fractions: Iterable[tuple[float, Spec | None]]) -> list[tuple[str, float | None, Spec]]:
    """A method's anytime points -> [(run label, fraction, spec)]: its compared schedule first under its own
    name (fraction None), the others as ``<method>@<fraction>x``. A point whose schedule equals an earlier
    one's reuses that one's runs (its label) but keeps its own spec, so its own search cost: a longer search
    that found nothing better costs more for the same schedule. Identical specs are one point."""
    run_labels = {json.dumps(compared.schedule, sort_keys=True): method}
    points, seen = [(method, None, compared)], {compared.to_json()}
    for fraction, spec in at_fractions:
        if spec is not None and spec.to_json() not in seen:
            seen.add(spec.to_json())
            label = run_labels.setdefault(json.dumps(spec.schedule, sort_keys=True), f"{method}@{fraction:g}x")
            points.append((label, fraction, spec))
    return points


def _quick(cfg: CompareConfig) -> CompareConfig:
    # The smoke search is its 2 trials whatever they cost: a smoke policy's cost (seconds) is less than
    # one trial's, and a budget nothing fits in fails the search.
    return dataclasses.replace(cfg, seeds=cfg.seeds[:1], episode_steps=min(cfg.episode_steps, 60),
                               eval_every=min(cfg.eval_every, 10),
                               optuna=dataclasses.replace(cfg.optuna, n_trials=2, budget_steps=0,
                                                          budget_cpu_s=math.inf))


def compare(cfg: CompareConfig, progress: bool = True) -> dict:
    cfg = _quick(cfg) if cfg.quick else cfg
    out = Path(cfg.out_dir)
    runs_dir = out / f"{cfg.name}_runs"
    instances = list(cfg.data) or load_instance_set(cfg.eval_set)
    instances = instances[:1] if cfg.quick else instances
    run_env, search_env = _env_configs(cfg)
    started = time.time()
    ctx = PrepareContext(run_env=run_env, search_env=search_env,
                         policy=Path(cfg.policy) if cfg.needs_policy else None, optuna=cfg.optuna,
                         dev_instances=load_instance_set(cfg.dev_set)[:1 if cfg.quick else None],
                         cache_dir=Path(cfg.search_dir) if cfg.search_dir else runs_dir)
    specs = {m: METHODS[m].obtain(ctx) for m in tqdm(cfg.methods, desc="obtaining schedules", disable=not progress)}
    cells = []
    for method in cfg.methods:
        costly = METHODS[method].population > 1
        seeds = cfg.seeds[:cfg.population_seeds] if costly and cfg.population_seeds else cfg.seeds
        chosen = instances[:cfg.population_instances] if costly and cfg.population_instances else instances
        cells += [(method, specs[method], instance, seed) for instance in chosen for seed in seeds]
    points = _budget_points(cfg, ctx, specs) if cfg.budget_fractions else {}
    budget_seeds = cfg.seeds[:cfg.budget_seeds]
    first_spec = {}  # the spec a run label's runs are keyed by: the first point that has its schedule
    for labelled in points.values():
        for label, _, spec in labelled:
            first_spec.setdefault(label, spec)
    cells += [(label, spec, instance, seed) for label, spec in first_spec.items() if label not in cfg.methods
              for instance in instances for seed in budget_seeds]
    records = run_cells(cells, run_env, cfg.eval_every, runs_dir, cfg.workers, progress,
                        sealed=bool(set(instances) & sealed_instances()))
    runs = {m: records.get(m, []) for m in cfg.methods}
    # invocation_wall_s: a resumed call skips finished runs
    result = summarise(runs, {m: dataclasses.asdict(spec) for m, spec in specs.items()}, cfg.reference,
                       {"instances": instances, "seeds": cfg.seeds, "model": cfg.model,
                        "episode_steps": cfg.episode_steps, "eval_every": cfg.eval_every,
                        "steps_per_action": run_env.steps_per_action, "quick": cfg.quick,
                        "budget_fractions": cfg.budget_fractions, "budget_seeds": budget_seeds,
                        "invocation_wall_s": time.time() - started, "machine": machine()})
    if points:
        result["budget_curve"] = budget_curve(points, records, budget_seeds)
        plot_budget_curve(result["budget_curve"], out / f"{cfg.name}_budget.png", cfg.reference)
    (out / f"{cfg.name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{cfg.name}.md").write_text(markdown_report(result, cfg.name))
    plot_test_curves({m: [r["curve"] for r in rs] for m, rs in runs.items()}, out / f"{cfg.name}_curves.png")
    plot_knob_trajectories({m: rs[0]["knob_trajectory"] for m, rs in runs.items()}, out / f"{cfg.name}_knobs.png",
                           f"knobs on {instances[0]}, seed {cfg.seeds[0]}")
    return result
