"""Population-based training (Ray Tune ``PopulationBasedTraining``, or ``PB2``) as a comparison method.

Run as Ray Tune's users run it: a population of ``POPULATION`` members trains the same run (same
model initialisation, data order and validation, through the same ``TrainingEnv``), one member with
the static defaults and the others with perturbed defaults (lr log-uniform in ×[1/2, 2], other knobs
×U(0.5, 1.5), r ±1; ``BasicVariantGenerator(points_to_evaluate=...)``). Members report their composite score on the
whole val split with a checkpoint of their trainer every ``steps_per_action`` steps; every
``interval_steps`` (at least ``MIN_INTERVAL`` = 100 steps, or half a shorter run) PBT's quantile
truncation lets the bottom quarter copy a top-quarter member's checkpoint (exploit) and perturb its
knobs (explore) within the run's knob space (frozen knobs stay at their reference). The member with
the best final val score is the result; its lineage's test checks (carried in the checkpoints) give
its curve. Its search cost is the rest of the population: (POPULATION − 1) runs in every run. Ray
runs on the local machine (``ray.init(num_cpus=2)``) unless ``RAY_ADDRESS`` is set.

PB2 (Parker-Holder et al. 2020, Ray Tune's ``PB2``) is the same population with another explore: instead
of scaling the copied knobs at random, a GP bandit fitted to the members' score gains over the last
interval picks the new knobs within each knob's [low, high] (an integer knob is rounded by the member).
"""
from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from controller.episodes import run_episode
from controller.methods.base import Cell, Method, PrepareContext, RunRecord, Spec, free_run_check
from controller.policy_io import env_config_from_dict
from controller.ray_vec_env import init_ray
from env.training_env import EnvConfig, TrainingEnv
from tacotron.knobs import KNOB_DEFS, Knobs

POPULATION = 4
CPUS = 2
MIN_INTERVAL = 100  # optimiser steps between exploits: short intervals exploit noise in a small val split


def interval_steps(env_cfg: EnvConfig) -> int:
    """Steps between exploits: at least MIN_INTERVAL, or half the run when it is shorter, in whole
    decision intervals (members report once per decision)."""
    k = env_cfg.steps_per_action
    return max(k, min(MIN_INTERVAL, env_cfg.episode_steps // 2) // k * k)


def _perturbed_defaults(env_cfg: EnvConfig) -> dict:
    """Where the other members start: the reference values of the active knobs, perturbed (the member
    clips them to the knob space)."""
    from ray import tune
    ref, space = Knobs(), {}
    for name in env_cfg.actions.active:
        d, value = KNOB_DEFS[name], getattr(ref, name)
        space[name] = (tune.choice([value - 1, value, value + 1]) if d.integer
                       else tune.loguniform(value / 2, value * 2) if d.log else tune.uniform(value / 2, value * 1.5))
    return space


def _space(env_cfg: EnvConfig) -> dict:
    """PBT's mutation space: every active knob of the run's knob space, on its scale."""
    from ray import tune
    space = {}
    for name in env_cfg.actions.active:
        s, d = env_cfg.actions.spec(name), KNOB_DEFS[name]
        space[name] = (tune.choice(list(range(int(s.low), int(s.high) + 1))) if d.integer
                       else tune.loguniform(s.low, s.high) if d.log else tune.uniform(s.low, s.high))
    return space


def _bounds(env_cfg: EnvConfig) -> dict:
    """PB2's search box: every active knob's [low, high] in the run's knob space."""
    return {name: [env_cfg.actions.spec(name).low, env_cfg.actions.spec(name).high] for name in env_cfg.actions.active}


def _scheduler(kind: str, env_cfg: EnvConfig):
    """The population's scheduler: PBT's random explore, or PB2's GP bandit, on the same exploit."""
    common = {"time_attr": "step", "perturbation_interval": interval_steps(env_cfg), "quantile_fraction": 0.25}
    if kind == "pb2":
        from ray.tune.schedulers.pb2 import PB2
        return PB2(hyperparam_bounds=_bounds(env_cfg), **common)
    from ray.tune.schedulers import PopulationBasedTraining
    return PopulationBasedTraining(hyperparam_mutations=_space(env_cfg), **common)


def _member(config: dict, fixed: dict) -> None:
    """One population member: reports its val score every interval, with a checkpoint to exploit.
    ``config`` holds its knobs (what PBT perturbs); ``fixed`` the run every member shares."""
    from ray import tune
    history = {"checks": [], "knobs": [], "done": False}
    with tempfile.TemporaryDirectory() as restored:
        if (ckpt := tune.get_checkpoint()) is not None:
            ckpt.to_directory(restored)
            history = json.loads((Path(restored) / "history.json").read_text())
        if history["done"]:  # exploited from a member that already finished: nothing left to train
            return
        env = TrainingEnv(env_config_from_dict(fixed["env"]), instances=[fixed["instance"]])
        eval_every = fixed["eval_every"]
        env.after_optimizer_step = (lambda tr: history["checks"].append(free_run_check(tr))
                                    if tr.step_count % eval_every == 0 else None)
        # PBT's explore scales a value by 0.8 or 1.2, which can leave the space (tf_ratio 1.06): clip as the env
        # does; a frozen knob has no entry in ``config`` and is held by the env.
        knobs = env.cfg.actions.clip(Knobs().as_dict() | config)

        def resume(env: TrainingEnv):
            obs, extra = env.resume_episode(Path(restored) / "trainer.pt")
            return obs, extra["curve"]

        def report(n: int, info: dict, curve: list[dict]) -> None:
            # the window's knobs as the env held them, at the step the window started
            history["knobs"].append({"step": curve[-2]["step"], **env.trainer.knobs.as_dict()})
            history["done"] = done = "final_score" in info
            if done and (not history["checks"] or history["checks"][-1]["step"] != env.trainer.step_count):
                history["checks"].append(free_run_check(env.trainer))
            with tempfile.TemporaryDirectory() as folder:
                env.save_episode(Path(folder) / "trainer.pt", {"curve": curve})
                (Path(folder) / "history.json").write_text(json.dumps(history))
                tune.report({"score": info["score"], "step": env.trainer.step_count,
                             "diverged": bool(info.get("diverged")), "rollbacks": info["rollbacks_total"] if done else 0},
                            checkpoint=tune.Checkpoint.from_directory(folder))

        run_episode(env, lambda obs, env: env.follow(lambda _: knobs), fixed["instance"], fixed["seed"],
                    on_decision=report, resume=resume if ckpt is not None else None)
        env.close()


def run_pbt(cell: Cell, kind: str = "pbt") -> RunRecord:
    """One population run (``kind``: pbt or pb2) on the cell's instance -> its record, like any other method's."""
    from ray import tune
    random.seed(cell.seed)  # PBT's explore draws from Python's and NumPy's global generators
    np.random.seed(cell.seed)
    started = time.perf_counter()
    init_ray(CPUS)
    from ray.tune.search.basic_variant import BasicVariantGenerator
    scheduler = _scheduler(kind, cell.env)
    defaults = {name: getattr(Knobs(), name) for name in cell.env.actions.active}
    fixed = {"env": dataclasses.asdict(dataclasses.replace(cell.env, threads=1, log_dir=None)),
             "instance": cell.instance, "seed": cell.seed, "eval_every": cell.eval_every}
    with tempfile.TemporaryDirectory() as storage:
        member = tune.with_resources(tune.with_parameters(_member, fixed=fixed), {"cpu": 1})
        tuner = tune.Tuner(member, param_space=_perturbed_defaults(cell.env),
                           tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=POPULATION, metric="score",
                                                       mode="max", reuse_actors=False,
                                                       search_alg=BasicVariantGenerator(points_to_evaluate=[defaults],
                                                                                        random_state=cell.seed)),
                           # Every checkpoint is kept: Ray's num_to_keep deletes ones that PBT's exploit still
                           # points to (ray-project/ray#9036); tiny trainers fit the temporary folder.
                           run_config=tune.RunConfig(storage_path=storage, name=kind, verbose=0))
        results = tuner.fit()
        if results.errors:  # a failed member would silently shrink the population
            raise RuntimeError(f"{kind} on {cell.instance} (seed {cell.seed}): {len(results.errors)} members failed; "
                               f"first: {results.errors[0]!r}")
        best = results.get_best_result(metric="score", mode="max", scope="last")
        with best.checkpoint.as_directory() as folder:
            history = json.loads((Path(folder) / "history.json").read_text())
    wall_s = time.perf_counter() - started
    return RunRecord.from_checks(cell, history["checks"], history["knobs"], diverged=bool(best.metrics["diverged"]),
                                 rollbacks=int(best.metrics["rollbacks"]), wall_s=wall_s,
                                 run_steps=POPULATION * cell.env.episode_steps,
                                 search_cpu_s=wall_s * CPUS * (POPULATION - 1) / POPULATION)


class PBTMethod(Method):
    """Ray Tune PBT (``scheduler="pbt"``) or PB2: nothing to obtain beforehand; the rest of its population
    is paid in every run."""

    population = POPULATION

    def __init__(self, name: str, scheduler: str = "pbt"):
        if scheduler not in ("pbt", "pb2"):
            raise ValueError(f"scheduler={scheduler!r} must be pbt or pb2")
        super().__init__(name)
        self.scheduler = scheduler

    def search_key(self, ctx: PrepareContext) -> dict:
        return {"episode_steps": ctx.run_env.episode_steps}

    def prepare(self, ctx: PrepareContext) -> Spec:
        # Per run: the members it trains besides the one it delivers (their CPU-seconds are in each record).
        return Spec(self.name, search_steps=(POPULATION - 1) * ctx.run_env.episode_steps)

    def run(self, spec: Spec, cell: Cell) -> RunRecord:
        return run_pbt(cell, self.scheduler)
