"""The equal-compute comparison: every method schedules the same runs on held-out instances.

All methods drive the same ``TrainingEnv`` (same model, data, seeds, optimiser steps, decision
points and validation), so only the knob source differs. Writes ``compare.json`` (a ``methods``
list, then per method the mean and std of each figure), ``compare.md`` and three PNGs.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from controller.baselines import OptunaConfig, best_params, optuna_search, parametric_schedule
from controller.deploy import deployment_env_config, load_policy
from controller.episodes import Decide, policy_decider, run_episode, schedule_decider
from controller.plots import plot_alignments, plot_budget, plot_curves, plot_knob_trajectories
from controller.policy_io import load_env_config
from env.instances import load_instance_set
from env.training_env import EnvConfig, TrainingEnv
from tacotron.schedules import get_schedule

FIGURES = ("final_val_mel_loss", "inference_diagonality", "gate_accuracy", "steps_to_align", "diverged",
           "rollbacks", "final_score", "wall_time_s")


@dataclass
class CompareConfig:
    methods: list[str] = field(default_factory=lambda: ["static", "hand", "optuna_tpe", "policy"])
    policy: str = "runs/controller/policy"
    data: list[str] = field(default_factory=list)  # instances or LJSpeech folders; default: the held-out set
    heldout_set: str = "heldout"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    model: str = "tiny"
    episode_steps: int = 300
    out_dir: str = "benchmarks/results"
    quick: bool = False  # ~10 min smoke run: 1 instance, 1 seed, 60 steps, 3 Optuna trials
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    env: EnvConfig = field(default_factory=EnvConfig)  # used when no policy takes part

    def __post_init__(self) -> None:
        known = {"static", "hand", "policy", "optuna_tpe", "optuna_cmaes", "optuna_gp", "optuna_nsga2"}
        if unknown := set(self.methods) - known:
            raise ValueError(f"methods {sorted(unknown)} are unknown; choose from {sorted(known)}")
        if not self.seeds or self.episode_steps < 1:
            raise ValueError("seeds must be non-empty and episode_steps >= 1")


def _env_config(cfg: CompareConfig) -> EnvConfig:
    """The policy's own env config when a policy takes part (observations must match), rescaled as
    deploy does, so every method makes as many decisions per run as the policy did in training."""
    base = load_env_config(Path(cfg.policy)) if "policy" in cfg.methods else cfg.env
    return deployment_env_config(base, cfg.episode_steps, model=cfg.model, log_dir=None)


def _decider(method: str, cfg: CompareConfig, env_cfg: EnvConfig, env: TrainingEnv,
             out: Path) -> tuple[Decide, int, list[dict]]:
    """-> (knob source, optimiser steps spent to obtain it, search curve: best training score so far
    against cumulative optimiser steps, for searches that have one)."""
    if method in ("static", "hand"):
        return schedule_decider(get_schedule(method)), 0, []
    if method == "policy":
        model, stats = load_policy(Path(cfg.policy), env)
        trained = load_env_config(Path(cfg.policy))
        return policy_decider(model, stats), model.num_timesteps * trained.steps_per_action, []
    sampler = method.removeprefix("optuna_")
    train_instances = list(env_cfg.instances) or load_instance_set(env_cfg.instance_set)
    study = optuna_search(sampler, cfg.optuna, env_cfg, train_instances, study_name=f"schedule-{sampler}",
                          default_storage=f"sqlite:///{out / 'optuna.db'}")
    curve, spent, best = [], 0, float("-inf")
    multi = len(study.directions) > 1
    for trial in study.trials:  # pruned trials cost only the decisions they ran
        spent += (env_cfg.episode_steps if multi else
                  max(trial.intermediate_values, default=0) * env_cfg.steps_per_action)
        if not multi:
            best = max(best, trial.value if trial.value is not None else best)
            curve.append({"steps": spent, "best_train_score": best})
    return schedule_decider(parametric_schedule(best_params(study))), spent, curve


def _run_record(info: dict, curve: list[dict], wall: float, instance: str, seed: int) -> dict:
    return {"instance": instance, "seed": seed, "final_val_mel_loss": info["val"]["mel_loss"],
            "inference_diagonality": info["val"]["infer_diagonality"], "gate_accuracy": info["val"]["gate_accuracy"],
            "steps_to_align": info["steps_to_align"], "diverged": float(info["diverged"]),
            "rollbacks": info["rollbacks_total"], "final_score": info["final_score"], "wall_time_s": wall,
            "curve": curve, "knob_trajectory": info["knob_trajectory"]}


def _aggregate(runs: list[dict]) -> dict:
    out = {}
    for key in FIGURES:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = {"mean": float(np.mean(values)) if values else None,
                    "std": float(np.std(values)) if values else None}
    out["never_aligned"] = sum(r["steps_to_align"] is None for r in runs)
    out["runs"] = len(runs)
    return out


def compare(cfg: CompareConfig, progress: bool = True) -> dict:
    if cfg.quick:
        cfg = dataclasses.replace(cfg, seeds=cfg.seeds[:1], episode_steps=min(cfg.episode_steps, 60),
                                  optuna=dataclasses.replace(cfg.optuna, n_trials=min(cfg.optuna.n_trials, 3)))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    instances = list(cfg.data) or load_instance_set(cfg.heldout_set)
    instances = instances[:1] if cfg.quick else instances
    env_cfg = _env_config(cfg)
    env = TrainingEnv(env_cfg, instances=instances)
    started = time.time()
    result: dict = {"methods": list(cfg.methods)}
    runs_by_method, alignments = {}, {}
    for method in cfg.methods:
        decide, spent, search_curve = _decider(method, cfg, env_cfg, env, out)
        runs = []
        for instance in tqdm(instances, desc=method, disable=not progress):
            for seed in cfg.seeds:
                t0 = time.time()
                info, curve = run_episode(env, decide, instance, seed)
                runs.append(_run_record(info, curve, time.time() - t0, instance, seed))
                alignments.setdefault(method, env.last_val.extras["alignment"].numpy())
        runs_by_method[method] = runs
        result[method] = _aggregate(runs) | {"search_steps": spent, "search_curve": search_curve}
    env.close()
    result["meta"] = {"instances": instances, "seeds": cfg.seeds, "model": cfg.model,
                      "episode_steps": cfg.episode_steps, "steps_per_action": env_cfg.steps_per_action,
                      "quick": cfg.quick, "wall_time_s": time.time() - started}
    result["runs"] = {m: [{k: v for k, v in r.items() if k not in ("curve", "knob_trajectory")} for r in runs]
                      for m, runs in runs_by_method.items()}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    (out / "compare.md").write_text(markdown_table(result))
    plot_curves({m: [r["curve"] for r in runs] for m, runs in runs_by_method.items()}, out / "compare_curves.png")
    plot_knob_trajectories({m: runs[0]["knob_trajectory"] for m, runs in runs_by_method.items()},
                           out / "compare_knobs.png", f"knobs on {instances[0]}, seed {cfg.seeds[0]}")
    plot_alignments(alignments, out / "compare_alignments.png")
    plot_budget(result, out / "compare_budget.png")
    return result


def _fmt(stat: dict, digits: int = 3) -> str:
    return "–" if stat["mean"] is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# Schedule comparison ({'quick' if meta['quick'] else 'full'})", "",
             f"Held-out instances {', '.join(meta['instances'])}; seeds {meta['seeds']}; model {meta['model']}; "
             f"{meta['episode_steps']} optimiser steps, a decision every {meta['steps_per_action']}; "
             f"wall time {meta['wall_time_s']:.0f} s. Mean ± std over runs.", "",
             "| method | final val mel loss | inference diagonality | gate accuracy | steps to align "
             "(never aligned) | diverged | final score | wall s/run | search steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in result["methods"]:
        r = result[m]
        lines.append(f"| {m} | {_fmt(r['final_val_mel_loss'])} | {_fmt(r['inference_diagonality'])} | "
                     f"{_fmt(r['gate_accuracy'])} | {_fmt(r['steps_to_align'], 0)} "
                     f"({r['never_aligned']}/{r['runs']}) | "
                     f"{_fmt(r['diverged'], 2)} | {_fmt(r['final_score'])} | {_fmt(r['wall_time_s'], 1)} | "
                     f"{r['search_steps']} |")
    return "\n".join(lines) + "\n"
