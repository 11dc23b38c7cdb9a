"""Population-based training (Ray Tune ``PopulationBasedTraining``) as a comparison method.

A population of ``POPULATION`` members trains the same run (same model initialisation, data order and
validation, through the same ``TrainingEnv``), each with its own constant knobs per interval. Every
``steps_per_action`` optimiser steps a member reports its val composite score with a checkpoint of
its trainer; PBT lets the bottom quarter copy a top-quarter member's checkpoint (exploit) and perturb
its knobs (explore) within the run's knob space (frozen knobs stay at their reference). The member
with the best final val score is the result, and its lineage's test checks (carried in the
checkpoints) give its curve. Its compute is POPULATION runs, reported as ``run_steps``. Ray runs on
the local machine (``ray.init(num_cpus=2)``) unless ``RAY_ADDRESS`` is set.
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


def _space(env_cfg: EnvConfig) -> dict:
    """PBT's mutation space: every active knob of the run's knob space, on its scale."""
    from ray import tune
    space = {}
    for name in env_cfg.actions.active:
        s, d = env_cfg.actions.spec(name), KNOB_DEFS[name]
        space[name] = (tune.choice(list(range(int(s.low), int(s.high) + 1))) if d.integer
                       else tune.loguniform(s.low, s.high) if d.log else tune.uniform(s.low, s.high))
    return space


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


def run_pbt(cell: Cell) -> RunRecord:
    """One PBT run on the cell's instance -> its record, like any other method's."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    random.seed(cell.seed)  # PBT's explore draws from Python's and NumPy's global generators
    np.random.seed(cell.seed)
    started = time.perf_counter()
    init_ray(CPUS)
    space = _space(cell.env)
    interval = cell.env.steps_per_action
    scheduler = PopulationBasedTraining(time_attr="step", perturbation_interval=interval, hyperparam_mutations=space)
    fixed = {"env": dataclasses.asdict(dataclasses.replace(cell.env, threads=1, log_dir=None)),
             "instance": cell.instance, "seed": cell.seed, "eval_every": cell.eval_every}
    with tempfile.TemporaryDirectory() as storage:
        member = tune.with_resources(tune.with_parameters(_member, fixed=fixed), {"cpu": 1})
        tuner = tune.Tuner(member, param_space=space,
                           tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=POPULATION, metric="score",
                                                       mode="max", reuse_actors=False),
                           # Every checkpoint is kept: Ray's num_to_keep deletes ones that PBT's exploit still
                           # points to (ray-project/ray#9036); tiny trainers fit the temporary folder.
                           run_config=tune.RunConfig(storage_path=storage, name="pbt", verbose=0))
        results = tuner.fit()
        if results.errors:  # a failed member would silently shrink the population
            raise RuntimeError(f"PBT on {cell.instance} (seed {cell.seed}): {len(results.errors)} members failed; first: "
                               f"{results.errors[0]!r}")
        best = results.get_best_result(metric="score", mode="max", scope="last")
        with best.checkpoint.as_directory() as folder:
            history = json.loads((Path(folder) / "history.json").read_text())
    return RunRecord.from_checks(cell, history["checks"], history["knobs"], diverged=bool(best.metrics["diverged"]),
                                 rollbacks=int(best.metrics["rollbacks"]), wall_s=time.perf_counter() - started,
                                 run_steps=POPULATION * cell.env.episode_steps)


class PBTMethod(Method):
    """Ray Tune PBT: nothing to obtain beforehand; its population is paid in every run."""

    population = POPULATION

    def prepare(self, ctx: PrepareContext) -> Spec:
        return Spec(self.name)

    def run(self, spec: Spec, cell: Cell) -> RunRecord:
        return run_pbt(cell)
