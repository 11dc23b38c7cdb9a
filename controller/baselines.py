"""Optuna baseline: search a parametric knob schedule on the training instances.

Each trial is one proxy episode through the same ``TrainingEnv`` the policy sees; the composite
score after every decision is reported as an intermediate value, so a pruner can stop bad trials.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Callable

import optuna
import sqlalchemy.exc

from controller.episodes import run_episode, schedule_decider
from env.training_env import EnvConfig, TrainingEnv
from tacotron.knobs import Knobs
from tacotron.schedules import Schedule

log = logging.getLogger(__name__)
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    # Multi-objective: validation mel loss against steps to align (Optuna cannot prune these).
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=4),
}


@dataclass
class OptunaConfig:
    n_trials: int = 12
    pruner: str = "median"  # median | hyperband | none
    storage: str | None = None  # any RDB URL, or journal:<path>; default sqlite in the output folder
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pruner not in ("median", "hyperband", "none"):
            raise ValueError(f"optuna.pruner={self.pruner!r} must be median, hyperband or none")
        if self.n_trials < 1:
            raise ValueError(f"optuna.n_trials={self.n_trials} must be >= 1")


def _lerp(a: float, b: float, frac: float) -> float:
    return a + (b - a) * min(max(frac, 0.0), 1.0)


def parametric_schedule(p: dict) -> Schedule:
    """The searched family: guided-attention start/end/decay, LR peak/decay, teacher-forcing end and
    ramp, an r milestone, and a constant dropout."""
    def schedule(step: int, max_steps: int) -> Knobs:
        f = step / max(max_steps, 1)
        lr = p["lr_peak"] * _lerp(1.0, p["lr_final_ratio"], f)
        return Knobs(lr=lr, ga_weight=_lerp(p["ga_start"], p["ga_end"], f / p["ga_decay_frac"]),
                     dropout=p["dropout"], r=p["r_start"] if f < p["r_switch_frac"] else p["r_end"],
                     tf_ratio=_lerp(1.0, p["tf_end"], (f - p["tf_ramp_start"]) / max(1e-6, 1 - p["tf_ramp_start"])))
    return schedule


def suggest(trial: optuna.Trial) -> dict:
    r_start = trial.suggest_int("r_start", 2, 5)
    return {
        "ga_start": trial.suggest_float("ga_start", 1.0, 20.0), "ga_end": trial.suggest_float("ga_end", 0.0, 10.0),
        "ga_decay_frac": trial.suggest_float("ga_decay_frac", 0.1, 1.0),
        "lr_peak": trial.suggest_float("lr_peak", 1e-4, 2e-3, log=True),
        "lr_final_ratio": trial.suggest_float("lr_final_ratio", 0.05, 1.0),
        "tf_end": trial.suggest_float("tf_end", 0.5, 1.0),
        "tf_ramp_start": trial.suggest_float("tf_ramp_start", 0.0, 0.9),
        "r_start": r_start, "r_end": trial.suggest_int("r_end", 1, r_start),
        "r_switch_frac": trial.suggest_float("r_switch_frac", 0.2, 1.0),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


def _storage(url: str) -> optuna.storages.BaseStorage | str:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    try:
        return optuna.storages.RDBStorage(url)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        raise ValueError(f"optuna storage {url!r} cannot be opened: {err}") from err


def optuna_search(sampler: str, cfg: OptunaConfig, env_cfg: EnvConfig, instances: list[str],
                  study_name: str, default_storage: str) -> optuna.Study:
    """Run (or resume) a study until it holds ``cfg.n_trials`` finished trials."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; choose one of {sorted(SAMPLERS)}")
    pruner = {"median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
              "hyperband": optuna.pruners.HyperbandPruner(), "none": optuna.pruners.NopPruner()}[cfg.pruner]
    multi = sampler == "nsga2"
    study = optuna.create_study(study_name=study_name, storage=_storage(cfg.storage or default_storage),
                                sampler=SAMPLERS[sampler](cfg.seed), pruner=None if multi else pruner,
                                directions=["minimize", "minimize"] if multi else ["maximize"], load_if_exists=True)
    env = TrainingEnv(replace(env_cfg, instances=instances))

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        schedule = parametric_schedule(suggest(trial))

        def report(n: int, info: dict) -> None:
            trial.report(info["score"], n)
            if trial.should_prune():
                raise optuna.TrialPruned()
        info, _ = run_episode(env, schedule_decider(schedule), instances[trial.number % len(instances)],
                              cfg.seed + trial.number, None if multi else report)
        if multi:  # a run that never aligns counts as twice the episode length
            steps = info["steps_to_align"] if info["steps_to_align"] is not None else 2 * env.cfg.episode_steps
            return info["val"]["mel_loss"], float(steps)
        return info["final_score"] if math.isfinite(info["final_score"]) else 0.0

    done = sum(t.state.is_finished() for t in study.trials)  # resumed trials count
    if done < cfg.n_trials:
        study.optimize(objective, n_trials=cfg.n_trials - done, catch=())
    return study


def best_params(study: optuna.Study) -> dict:
    """The single best trial, or on a Pareto front the fastest to align (then the lowest mel loss)."""
    if len(study.directions) == 1:
        return study.best_params
    return min(study.best_trials, key=lambda t: (t.values[1], t.values[0])).params
