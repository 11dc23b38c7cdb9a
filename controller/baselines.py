"""Optuna baselines: search a knob schedule on the training instances within a budget.

Two search spaces (``controller.search_spaces``): ``schedule`` (a parametric schedule over the run) and
``constant`` (tuned static: the best constant knobs), both derived from the run's knob space. A new
study first runs static and the hand recipe as near as its space gets (``baseline_params``), so the
search starts from what practitioners trust and never ends below static on its own score. Multi-fidelity
(the default, as practitioners run Optuna): a trial first runs the cheap fidelity, a ``cheap_steps``
proxy run on the first training voice, reporting its val composite score at every decision, and
Hyperband prunes the weak ones there; the trials among the best third at its end are promoted to
full-length runs on every training voice, reporting the mean final score after each, and go on only
while they stay among the best third (``LadderPruner``). The search stops before a trial would take it
past ``budget_cpu_s`` CPU-seconds (validation included; a trial's expected cost is the mean of those so
far, pruned ones included). Single fidelity (before issue #28): every trial runs every training voice
and reports once per voice, within ``budget_steps`` optimiser steps. Every trial records the optimiser
steps and CPU-seconds it really spent (``user_attrs["steps"]``, ``["cpu_s"]``). Studies run in
``workers`` processes on one shared storage, and their names carry a content key of everything that
defines the search.

A killed worker loses no trial. On an RDB storage (PostgreSQL, MySQL, SQLite) every running trial
beats every ``HEARTBEAT_S`` seconds; one silent for ``GRACE_S`` is failed by the next worker to start
a trial, and ``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters, so workers on
other machines take over. A journal file belongs to one search process (and its workers) at a time:
trials it finds still running when it starts were left by a killed search and are retried the same way.
"""
from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from controller.episodes import run_episode, schedule_decider
from controller.search_spaces import SPACE_FNS, SPACES, baseline_params, schedule_from_params
from env.training_env import EnvConfig, TrainingEnv
from tacotron.keys import content_key
from tacotron.pool import as_worker

log = logging.getLogger(__name__)
HEARTBEAT_S, GRACE_S = 5, 20
MAX_RETRY = 2  # a trial that kills its worker twice more is given up
SAMPLERS = ("tpe", "cmaes", "gp", "nsga2")


def make_sampler(name: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials,
                                            warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
    # Multi-objective: free-running CER against steps to align (Optuna cannot prune these).
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=4)


@dataclass
class OptunaConfig:
    # multi: a trial reports its val score at every decision of a proxy run on the first training voice, and
    # the pruner's survivors go on to full runs on every other training voice; single: every trial runs
    # every voice and reports once per voice (the search before issue #28, kept as the *_1f methods).
    fidelity: str = "multi"
    # The cheap fidelity's run length (the policy's episode length); at or above the full run's length,
    # the first voice's full run is the cheap fidelity (the design of the 2026-11-30 scoring run).
    cheap_steps: int = 300
    budget_cpu_s: float = 0.0  # CPU-seconds for the whole search; 0 = the policy's (multi-fidelity methods)
    budget_steps: int = 0  # optimiser steps for the whole search; 0 = the policy's (single-fidelity methods)
    n_trials: int = 0  # finished trials to stop at; 0 = no cap (the budget decides)
    n_startup_trials: int = 4  # random trials before the sampler models the space (TPE's default is 10)
    pruner: str = "hyperband"  # hyperband | median | none
    storage: str | None = None  # any RDB URL, or journal:<path>; default a journal file in the output folder
    workers: int = 2  # processes sharing the study (one torch thread each)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fidelity not in ("multi", "single"):
            raise ValueError(f"optuna.fidelity={self.fidelity!r} must be multi or single")
        if self.pruner not in ("median", "hyperband", "none"):
            raise ValueError(f"optuna.pruner={self.pruner!r} must be median, hyperband or none")
        for key in ("budget_cpu_s", "budget_steps", "n_trials", "n_startup_trials"):
            if getattr(self, key) < 0:
                raise ValueError(f"optuna.{key}={getattr(self, key)} must be >= 0")
        if self.cheap_steps < 1:
            raise ValueError(f"optuna.cheap_steps={self.cheap_steps} must be >= 1")
        if self.workers < 1:
            raise ValueError(f"optuna.workers={self.workers} must be >= 1")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        raise ValueError(f"optuna storage {url!r} cannot be opened: {err}") from err


def study_name(prefix: str, sampler: str, space: str, cfg: OptunaConfig, env_cfg: EnvConfig,
               instances: list[str]) -> str:
    """``prefix-sampler-space-<hash>``: the hash covers the env, instances, sampler settings and seed
    (not the budget or trial cap, so a larger budget continues the same study)."""
    key = {"env": env_cfg, "instances": instances, "sampler": sampler, "space": space, "fidelity": cfg.fidelity,
           "n_startup_trials": cfg.n_startup_trials, "pruner": cfg.pruner, "seed": cfg.seed,
           "cheap_steps": cheap_steps(cfg, env_cfg) if cfg.fidelity == "multi" else None, "promotions": "ladder"}
    return f"{prefix}-{sampler}-{space}-{content_key(key)}"


def spent_steps(study: optuna.Study) -> int:
    return sum(t.user_attrs.get("steps", 0) for t in study.get_trials(deepcopy=False) if t.state.is_finished())


def _out_of_budget(study: optuna.Study, cfg: OptunaConfig, trial_steps: int) -> bool:
    """True when the trial cap is reached, or when one more trial, on top of the finished and running
    ones, would pass the budget: a full trial's steps, or the mean CPU-seconds a finished trial has cost
    so far (pruned ones included)."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]  # a failed one is retried
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if cfg.n_trials and len(done) + running >= cfg.n_trials:
        return True
    if cfg.budget_cpu_s:  # counted as search_within counts it: every finished trial, failed ones too
        spent = [trial_cpu_s(t) for t in trials if t.state.is_finished()]
        return sum(spent) + (running + 1) * (float(np.mean(spent)) if spent else 0.0) > cfg.budget_cpu_s
    return bool(cfg.budget_steps) and spent_steps(study) + (running + 1) * trial_steps > cfg.budget_steps


class LadderPruner(optuna.pruners.BasePruner):
    """``inner`` (Hyperband) below step ``promote_at``, the cheap fidelity's end; from there on, successive
    halving over every trial of the study: at each step it reports from ``promote_at`` on (the cheap run's
    end, then each full-length voice), a trial goes on only while fewer than ``max(1, n // reduction_factor)``
    of the ``n`` trials that reported that step (itself included) did better. Static and hand always
    finish, so every rung has a bar, and a promoted trial must beat both of them while fewer than six
    trials reached it.
    Over every trial, not per Hyperband bracket: the few trials that reach a full-length voice, split
    into brackets, would rarely meet another (the 2026-11-30 scoring run: benchmarks/results/README.md)."""

    def __init__(self, inner: optuna.pruners.BasePruner, promote_at: int, reduction_factor: int = 3):
        self.inner, self.promote_at, self.reduction_factor = inner, promote_at, reduction_factor

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if step < self.promote_at:
            return self.inner.prune(study, trial)
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            return True
        peers = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and step in t.intermediate_values]
        better = sum(v > value for v in peers)  # single-objective studies here maximise
        return better >= max(1, (len(peers) + 1) // self.reduction_factor)


def _pruner(cfg: OptunaConfig, env_cfg: EnvConfig, n_instances: int) -> optuna.pruners.BasePruner:
    """Multi-fidelity trials report at optimiser steps (every decision of the cheap run, then after each
    full-length voice); single-fidelity ones once per voice. Hyperband's brackets span the cheap fidelity
    only: brackets up to every voice's runs let a trial of the patient brackets run several voices before
    its first check, which the budget cannot afford (benchmarks/results/README.md); the promotions above
    it are ``LadderPruner``'s."""
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=0)
    elif cfg.fidelity == "multi":
        inner = optuna.pruners.HyperbandPruner(min_resource=env_cfg.steps_per_action,
                                               max_resource=cheap_steps(cfg, env_cfg), reduction_factor=3)
    else:
        inner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=n_instances, reduction_factor=3)
    return LadderPruner(inner, cheap_steps(cfg, env_cfg)) if cfg.fidelity == "multi" else inner


def cheap_steps(cfg: OptunaConfig, env_cfg: EnvConfig) -> int:
    """The cheap fidelity's run length: ``cfg.cheap_steps``, at most the full run's."""
    return min(cfg.cheap_steps, env_cfg.episode_steps)


def _objective(env: TrainingEnv, cheap_env: TrainingEnv | None, instances: list[str], space: str, pareto: bool,
               fidelity: str, seed: int):
    """A trial: full-length runs (``env``) on every voice; multi-fidelity first runs the cheap fidelity on
    the first voice, ``cheap_env``'s shorter run, or without one the first voice's full run."""
    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        schedule = schedule_from_params(space, SPACE_FNS[space][0](trial, env.cfg.actions))
        scores, cers, aligned_steps, steps = [], [], [], 0
        threads, started = max(env.cfg.threads, 1), time.perf_counter()
        trial.set_user_attr("threads", threads)
        trial.set_user_attr("worker_pid", os.getpid())  # which worker ran it (a killed one's trial is retried)

        def report(value: float, at: int, steps_so_far: int) -> None:
            trial.set_user_attr("steps", steps_so_far)
            trial.set_user_attr("cpu_s", (time.perf_counter() - started) * threads)
            if not pareto:  # Optuna cannot prune a multi-objective study
                trial.report(value, at)
                # static and hand always finish: they are what every other trial is measured against
                if trial.should_prune() and "baseline" not in trial.user_attrs:
                    raise optuna.TrialPruned()

        def record(info: dict) -> None:
            scores.append(info["final_score"] if math.isfinite(info["final_score"]) else 0.0)
            cers.append(info["val"]["infer_cer"])
            # A run that never aligns counts as twice the episode length.
            aligned_steps.append(info["steps_to_align"] or 2 * env.cfg.episode_steps)

        full_from = 0  # the rung index the full-length voices' reports start after
        if fidelity == "multi":
            first = cheap_env or env
            info, _ = run_episode(first, schedule_decider(schedule), instances[0], seed + trial.number,
                                  on_decision=lambda n, info, curve: report(info["score"], first.trainer.step_count,
                                                                            first.trainer.step_count))
            steps = first.trainer.step_count
            if steps < first.cfg.episode_steps:  # ended early (diverged): it still meets the promotion rung
                report(info["score"], first.cfg.episode_steps, steps)
            if cheap_env is None:
                record(info)  # the first voice's full run was the cheap fidelity
            else:
                full_from = cheap_env.cfg.episode_steps
        for i, instance in enumerate(instances[len(scores):], start=len(scores)):
            info, _ = run_episode(env, schedule_decider(schedule), instance, seed + trial.number)
            steps += env.trainer.step_count
            record(info)
            if fidelity == "single":
                report(float(np.mean(scores)), i, steps)
            else:  # promoted: the mean final score over the voices so far
                report(float(np.mean(scores)), full_from + (i + 1) * env.cfg.episode_steps, steps)
        trial.set_user_attr("cpu_s", (time.perf_counter() - started) * threads)
        return (float(np.mean(cers)), float(np.mean(aligned_steps))) if pareto else float(np.mean(scores))
    return objective


def _run_worker(sampler: str, space: str, cfg: OptunaConfig, env_cfg: EnvConfig, instances: list[str],
                name: str, storage_url: str, worker: int) -> None:
    multi = sampler == "nsga2"
    storage = open_storage(storage_url)
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=make_sampler(sampler, cfg.seed + 1000 * worker, cfg.n_startup_trials),
                              pruner=None if multi else _pruner(cfg, env_cfg, len(instances)))
    trial_steps = env_cfg.episode_steps * len(instances)
    if _out_of_budget(study, cfg, trial_steps):
        return
    env = TrainingEnv(replace(env_cfg, instances=instances))
    cheap = cheap_steps(cfg, env_cfg)
    cheap_env = TrainingEnv(replace(env_cfg, instances=instances, episode_steps=cheap)) \
        if cfg.fidelity == "multi" and cheap < env_cfg.episode_steps else None
    stop = lambda st, _: st.stop() if _out_of_budget(st, cfg, trial_steps) else None  # noqa: E731
    objective = _objective(env, cheap_env, instances, space, multi, cfg.fidelity, cfg.seed)
    study.optimize(objective, callbacks=[stop], catch=())
    # A trial still running may be a killed worker's, which the cap counts: stay until it ends or its
    # heartbeat goes stale (it is then failed and queued again) and run what was queued, so it is not lost.
    while isinstance(storage, optuna.storages.RDBStorage) and any(
            t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
        time.sleep(HEARTBEAT_S)
        optuna.storages.fail_stale_trials(study)
        if not _out_of_budget(study, cfg, trial_steps):
            study.optimize(objective, callbacks=[stop], catch=())
    for e in (env, cheap_env):
        if e is not None:
            e.close()


def optuna_search(sampler: str, cfg: OptunaConfig, env_cfg: EnvConfig, instances: list[str], prefix: str,
                  default_storage: str, space: str = "schedule") -> optuna.Study:
    """Run (or resume) a study until its budget or trial cap is spent; returns the study."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; choose one of {list(SAMPLERS)}")
    if space not in SPACES:
        raise ValueError(f"space={space!r} is unknown; choose one of {list(SPACES)}")
    if not cfg.budget_cpu_s and not cfg.budget_steps and not cfg.n_trials:
        raise ValueError("an Optuna search needs optuna.budget_cpu_s, optuna.budget_steps or optuna.n_trials > 0")
    url = cfg.storage or default_storage
    name = study_name(prefix, sampler, space, cfg, env_cfg, instances)
    multi = sampler == "nsga2"
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                directions=["minimize", "minimize"] if multi else ["maximize"])
    if isinstance(storage, optuna.storages.JournalStorage):
        _retry_orphans(study, storage)
    if not study.trials:  # a new study starts from the schedules practitioners trust
        for label, params in zip(("static", "hand"), baseline_params(space, env_cfg.actions)):
            study.enqueue_trial(params, user_attrs={"baseline": label})
    args = (sampler, space, cfg, replace(env_cfg, threads=1 if cfg.workers > 1 else env_cfg.threads), instances,
            name, url)
    if cfg.workers == 1:
        _run_worker(*args, 0)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=as_worker, args=(_run_worker, *args, w)) for w in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"an Optuna worker of study {name} failed (exit codes {[p.exitcode for p in procs]})")
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _retry_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Fail the trials a killed search left running and queue each again with its parameters."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        log.warning("trial %d of study %s was left running by a killed search; retrying it", trial.number,
                    study.study_name)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, storage.get_trial(trial_id))


def trial_cpu_s(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's CPU-seconds (validation included) as it measured them at its last report: a trial failed
    after its search was killed (and retried when it resumed, maybe days later) counts what it ran."""
    return trial.user_attrs.get("cpu_s", 0.0)


@dataclass
class SearchState:
    """A search as it stood once it had spent a budget: its cost, best-so-far curve and best parameters."""

    steps: int
    cpu_s: float
    trials: int
    curve: list[dict]  # {"steps", "cpu_s", "best_train_score"} after each finished trial (single objective)
    params: dict | None  # None: no trial had completed within the budget


def search_within(study: optuna.Study, budget_cpu_s: float = math.inf) -> SearchState:
    """The trials that finished within ``budget_cpu_s`` CPU-seconds, in the order they finished. A longer
    search continues the same study, so its state at a smaller budget is what a search of that budget
    returned: one search gives a method's whole anytime curve. The best parameters are the best completed
    trial's, or on a Pareto front (two objectives) the fastest to align, then the lowest CER."""
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()),
                      key=lambda t: t.datetime_complete)
    kept, curve, steps, cpu, best = [], [], 0, 0.0, float("-inf")
    pareto = len(study.directions) > 1
    for t in finished:
        if cpu + trial_cpu_s(t) > budget_cpu_s:
            break
        kept.append(t)
        steps, cpu = steps + t.user_attrs.get("steps", 0), cpu + trial_cpu_s(t)
        if not pareto and t.state == TrialState.COMPLETE:
            best = max(best, t.value)
            curve.append({"steps": steps, "cpu_s": cpu, "best_train_score": best})
    complete = [t for t in kept if t.state == TrialState.COMPLETE]
    if not complete:
        params = None
    elif pareto:
        front = [t for t in complete if not any(_dominates(o.values, t.values) for o in complete)]
        params = min(front, key=lambda t: (t.values[1], t.values[0])).params
    else:
        params = max(complete, key=lambda t: t.value).params
    return SearchState(steps=steps, cpu_s=cpu, trials=len(kept), curve=curve, params=params)


def _dominates(a: list[float], b: list[float]) -> bool:
    """Minimised objectives: ``a`` is nowhere worse than ``b`` and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
