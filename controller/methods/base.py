"""The method contract: how a method obtains its schedule (``prepare``) and runs one cell (``run``).

Every compared method is a ``Method`` in the registry (``controller.methods``). ``prepare(context)``
returns a ``Spec``: what its runs need, JSON-able so worker processes and a resumed benchmark can
rebuild it, and everything spent to obtain it (bank building, PPO episodes, trials, recording). ``run
(spec, cell)`` trains one run from scratch on a cell (instance, seed, env, test cadence) and returns
its ``RunRecord``, scored on the test split decoded free-running. Most methods are one env episode
driven by a decider (``EpisodeMethod``); PBT trains a population per run.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.baselines import OptunaConfig
from controller.episodes import Decide, run_episode
from env.training_env import EnvConfig, TrainingEnv
from tacotron import checkpoint
from tacotron.keys import content_key
from tacotron.metrics import composite_score, is_aligned, steps_to_align
from tacotron.trainer import yardstick_key


@dataclass
class Spec:
    """A method's obtained schedule. ``schedule``: what its runs need (a schedule name, Optuna
    parameters, a policy path, replay rows); ``search``: how it was found (study, trials, curve), for
    the reports. Search cost: optimiser steps and CPU-seconds (wall × torch threads × processes)."""

    method: str
    search_steps: int = 0
    search_cpu_s: float = 0.0
    schedule: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls(**json.loads(text))


@dataclass
class PrepareContext:
    """What a method may use to obtain its schedule."""

    run_env: EnvConfig  # the env of every compared run
    search_env: EnvConfig  # the env of search trials: from-scratch proxy runs
    policy: Path | None  # the trained policy, where a method needs one
    optuna: OptunaConfig
    dev_instances: list[str]  # where a method may record or tune besides the training instances
    cache_dir: Path  # where obtained schedules (and Optuna's journal) are kept
    seed: int = 0


@dataclass(frozen=True)
class Cell:
    """One compared run: the instance and seed, the env every method shares, the test cadence."""

    instance: str
    seed: int
    env: EnvConfig
    eval_every: int  # optimiser steps between free-running checks of the test split


CURVE_FIGURES = ("step", "cer", "mcd_dtw_sl", "gv_ratio", "diagonality", "score")


@dataclass
class RunRecord:
    """One compared run: its last test check as ``final``, steps to align from two consecutive aligned
    test checks (None = censored), the test curve, the knob trajectory and its compute."""

    instance: str
    seed: int
    final: dict
    steps_to_align: int | None
    curve: list[dict]
    knob_trajectory: list[dict]
    diverged: bool
    rollbacks: int
    wall_s: float
    run_steps: int  # optimiser steps of every model it trained (a population counts each member)
    search_cpu_s: float = 0.0  # CPU-seconds spent in the run beyond the model it delivers (PBT: the other members)
    shrunk_share: float | None = None  # a policy's: the share of its decisions outside its training support

    @classmethod
    def from_checks(cls, cell: Cell, checks: list[dict], knob_trajectory: list[dict], **figures) -> "RunRecord":
        return cls(instance=cell.instance, seed=cell.seed, final=checks[-1],
                   steps_to_align=steps_to_align([(c["step"], c["aligned"]) for c in checks]),
                   curve=[{k: c[k] for k in CURVE_FIGURES} for c in checks], knob_trajectory=knob_trajectory,
                   **figures)


def free_run_check(trainer) -> dict:
    """The whole test split decoded free-running and scored: the figures every comparison reports."""
    stats, _ = trainer.free_run(trainer.corpus.test)
    return {"step": trainer.step_count, **stats.as_dict(), "score": composite_score(stats),
            "aligned": is_aligned(stats)}


class Method:
    """A schedule method. Subclasses set ``name`` (via the constructor) and implement ``prepare`` and
    ``run``; ``search_key`` says what defines how it obtains its schedule, so a cached one is reused
    only for the same search."""

    needs_policy = False  # its schedule comes from the trained policy
    population = 1  # models trained per run; more run alone, after the parallel runs, on fewer cells

    def __init__(self, name: str):
        self.name = name

    def search_key(self, ctx: PrepareContext) -> dict:
        return {}

    def prepare(self, ctx: PrepareContext) -> Spec:
        raise NotImplementedError

    def run(self, spec: Spec, cell: Cell) -> RunRecord:
        raise NotImplementedError

    def at_budgets(self, ctx: PrepareContext, budgets_cpu_s: list[float]) -> list[Spec | None] | None:
        """The schedule this method would have obtained with each search budget in CPU-seconds (None where
        nothing fits in it), for anytime curves; None for a method whose cost is fixed (static, hand,
        replay, PBT's population): it is one point."""
        return None

    def obtain(self, ctx: PrepareContext) -> Spec:
        """``prepare``, cached in ``cache_dir/method_<name>_<key>.json`` (a resumed benchmark does not
        search again, and comparisons that share a search share its cost once)."""
        key = content_key({"method": self.name, **self.search_key(ctx)})
        cached = Path(ctx.cache_dir) / f"method_{self.name}_{key}.json"
        if cached.is_file():
            return Spec.from_json(cached.read_text())
        cached.parent.mkdir(parents=True, exist_ok=True)
        spec = self.prepare(ctx)
        checkpoint.atomic_write_text(cached, spec.to_json())
        return spec


class EpisodeMethod(Method):
    """A method whose run is one env episode, driven by ``decider``: every such method runs exactly the
    same episode (model, data, seeds, decision points, validation) as every other."""

    def decider(self, spec: Spec, env: TrainingEnv) -> Decide:
        raise NotImplementedError

    def run_env(self, spec: Spec, env_cfg: EnvConfig) -> EnvConfig:
        """The env of this method's runs (a stretched policy decides at its own interval)."""
        return env_cfg

    def run(self, spec: Spec, cell: Cell) -> RunRecord:
        env = TrainingEnv(self.run_env(spec, cell.env), instances=[cell.instance])
        checks: list[dict] = []
        env.after_optimizer_step = (lambda tr: checks.append(free_run_check(tr))
                                    if tr.step_count % cell.eval_every == 0 else None)
        kept: list[float] = []  # a policy's support checks
        started = time.perf_counter()
        info, _ = run_episode(env, self.decider(spec, env), cell.instance, cell.seed,
                              on_decision=lambda n, info, curve: kept.append(info["support"]["keep"])
                              if "support" in info else None)
        if not checks or checks[-1]["step"] != env.trainer.step_count:
            checks.append(free_run_check(env.trainer))
        env.close()
        return RunRecord.from_checks(cell, checks, info["knob_trajectory"], diverged=bool(info["diverged"]),
                                     rollbacks=info["rollbacks_total"], wall_s=time.perf_counter() - started,
                                     run_steps=env.trainer.step_count,
                                     shrunk_share=float(np.mean([k < 1 for k in kept])) if kept else None)


def run_key(spec: Spec, cell: Cell) -> str:
    """Everything that shapes a run besides its instance and seed, so a resumed comparison keeps a
    finished run only if it would run the same today."""
    return content_key({"spec": spec, "env": cell.env, "eval_every": cell.eval_every, "yardstick": yardstick_key()})
