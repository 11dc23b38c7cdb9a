"""Population-based training (Ray Tune ``PopulationBasedTraining``) as a comparison method.

A population of ``POPULATION`` members trains the same run (same model initialisation, data order and
validation, through the same ``TrainingEnv``), each with its own constant knobs per interval. Every
``steps_per_action`` optimiser steps a member reports its val composite score with a checkpoint of
its trainer; PBT lets the bottom quarter copy a top-quarter member's checkpoint (exploit) and perturb
its knobs (explore). The member with the best final val score is the result, and its lineage's test
checks (carried in the checkpoints) give its curve. Its compute is POPULATION runs, reported as
``run_steps``. Ray runs on the local machine (``ray.init(num_cpus=2)``) unless ``RAY_ADDRESS`` is set.
"""
from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from controller.policy_io import env_config_from_dict
from controller.ray_vec_env import init_ray
from controller.runs import run_record, test_check
from env.training_env import EnvConfig, TrainingEnv

POPULATION = 4
CPUS = 2


def _space(env_cfg: EnvConfig) -> dict:
    """PBT's mutation space: the policy's action bounds (dropout capped at 0.3 as in the Optuna spaces)."""
    from ray import tune
    a = env_cfg.actions
    return {"lr": tune.loguniform(a.lr.low, a.lr.high), "ga_weight": tune.uniform(a.ga_weight.low, a.ga_weight.high),
            "dropout": tune.uniform(a.dropout.low, min(a.dropout.high, 0.3)),
            "r": tune.choice(list(range(int(a.r.low), int(a.r.high) + 1))),
            "tf_ratio": tune.uniform(a.tf_ratio.low, a.tf_ratio.high)}


def _member(config: dict, fixed: dict) -> None:
    """One population member: reports its val score every interval, with a checkpoint to exploit.
    ``config`` holds its knobs (what PBT perturbs); ``fixed`` the run every member shares."""
    from ray import tune
    env = TrainingEnv(env_config_from_dict(fixed["env"]), instances=[fixed["instance"]])
    env.reset(seed=fixed["seed"], options={"instance": fixed["instance"]})
    history = {"checks": [], "knobs": []}
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as folder:
            env.resume_episode(Path(folder) / "trainer.pt")
            history = json.loads((Path(folder) / "history.json").read_text())
    eval_every = fixed["eval_every"]
    env.after_optimizer_step = (lambda tr: history["checks"].append(test_check(tr))
                                if tr.step_count % eval_every == 0 else None)
    # PBT's explore scales a value by 0.8 or 1.2, which can leave the space (tf_ratio 1.06): clip as the env does.
    knobs = env.cfg.actions.clip(config)
    done = env.trainer.step_count >= env.cfg.episode_steps
    while not done:
        history["knobs"].append({"step": env.trainer.step_count, **knobs.as_dict()})
        _, _, term, trunc, info = env.step(knobs)
        done = term or trunc
        if done and (not history["checks"] or history["checks"][-1]["step"] != env.trainer.step_count):
            history["checks"].append(test_check(env.trainer))
        with tempfile.TemporaryDirectory() as folder:
            env.save_episode(Path(folder) / "trainer.pt")
            (Path(folder) / "history.json").write_text(json.dumps(history))
            tune.report({"score": info["score"], "step": env.trainer.step_count, "diverged": bool(info.get("diverged")),
                         "rollbacks": info["rollbacks_total"] if done else 0},
                        checkpoint=tune.Checkpoint.from_directory(folder))
    env.close()


def run_pbt(spec: dict, env_cfg: EnvConfig, instance: str, seed: int, eval_every: int) -> dict:
    """One PBT run on ``instance`` -> the same record as ``controller.compare.run_one``."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    random.seed(seed)  # PBT's explore draws from Python's and NumPy's global generators
    np.random.seed(seed)
    started = time.perf_counter()
    init_ray(CPUS)
    space = _space(env_cfg)
    interval = env_cfg.steps_per_action
    scheduler = PopulationBasedTraining(time_attr="step", perturbation_interval=interval, hyperparam_mutations=space)
    fixed = {"env": dataclasses.asdict(dataclasses.replace(env_cfg, threads=1, log_dir=None)), "instance": instance,
             "seed": seed, "eval_every": eval_every}
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
            raise RuntimeError(f"PBT on {instance} (seed {seed}): {len(results.errors)} members failed; first: "
                               f"{results.errors[0]!r}")
        best = results.get_best_result(metric="score", mode="max", scope="last")
        with best.checkpoint.as_directory() as folder:
            history = json.loads((Path(folder) / "history.json").read_text())
    return run_record(instance, seed, history["checks"], history["knobs"], diverged=bool(best.metrics["diverged"]),
                      rollbacks=int(best.metrics["rollbacks"]), wall_s=time.perf_counter() - started,
                      run_steps=POPULATION * env_cfg.episode_steps)
