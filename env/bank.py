"""A bank of warm starts: trainer checkpoints saved at many phases of reference runs.

Episodes that start from the bank (``EnvConfig(start="bank")``) begin mid-training, so a short
episode can teach late decisions too (r 3→1, teacher forcing 1→0.5, LR and guided-attention
decay). Reference runs use the static and hand schedules and randomly perturbed hand schedules on
the training instances; they should be as long as the runs the policy will schedule, so episodes
start in every phase, after alignment too. Each entry records the step its run was confirmed
aligned at (None before), so an episode starting aligned is known to be aligned. Building runs in
``workers`` processes, is cached and resumable: each run saves as it goes and is marked done when
complete.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path


from tacotron import checkpoint
from tacotron.keys import content_key
from tacotron.knobs import Knobs, KnobSpace
from tacotron.driver import drive
from tacotron.metrics import steps_to_align
from tacotron.pool import run_jobs
from tacotron.proxy import cache_root
from tacotron.run import TrainingSetup, build_trainer, load_data
from tacotron.schedules import Schedule, get_schedule, hand


@dataclass
class BankConfig:
    run_steps: int = 600  # length of each reference run: the horizon that progress is measured on
    save_every: int = 50
    schedules: list[str] = field(default_factory=lambda: ["static", "hand"])
    perturbed_runs: int = 1  # randomly perturbed hand schedules per instance
    seed: int = 0
    workers: int = 2  # reference runs in parallel, one torch thread each
    root: str | None = None  # default $TACOTUNE_CACHE/bank/<hash of instances, setup and this config>

    def __post_init__(self) -> None:
        if self.save_every < 1 or self.run_steps < self.save_every:
            raise ValueError(f"bank.save_every={self.save_every} must be in [1, bank.run_steps={self.run_steps}]")
        if self.workers < 1:
            raise ValueError(f"bank.workers={self.workers} must be >= 1")


def perturbed_hand(seed: int) -> Schedule:
    """The hand recipe with seeded constant distortions: lr ×2^U(−1,1), ga ×U(0.3,1.5), r ±1, tf floor;
    clipped to the default knob space."""
    rng = random.Random(seed)
    space = KnobSpace()
    lr_factor, ga_factor, r_shift, tf_floor = 2 ** rng.uniform(-1, 1), rng.uniform(0.3, 1.5), rng.choice([-1, 0, 1]), \
        rng.uniform(0.5, 1.0)

    def schedule(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
        k = hand(step, max_steps, aligned_at)
        return space.clip({"lr": k.lr * lr_factor, "ga_weight": k.ga_weight * ga_factor, "dropout": k.dropout,
                           "r": k.r + r_shift, "tf_ratio": max(k.tf_ratio, tf_floor)})
    return schedule


def bank_root(instances: list[str], setup: TrainingSetup, cfg: BankConfig) -> Path:
    if cfg.root:
        return Path(cfg.root)
    # Only what shapes the checkpoints: the env's own fields (episode length, start, ...) do not.
    training = {f.name: getattr(setup, f.name) for f in fields(TrainingSetup) if f.name != "threads"}
    # format 2: reference runs checkpoint what they measured (tacotron.driver), so a killed one resumes exactly.
    key = {"instances": instances, "setup": asdict(TrainingSetup(**training)), "format": 2,
           "bank": {k: v for k, v in asdict(cfg).items() if k not in ("root", "workers")}}
    return cache_root() / "bank" / content_key(key, 12)


def _reference_runs(instances: list[str], cfg: BankConfig) -> list[tuple[str, str, int]]:
    """-> (instance, schedule name, perturbation seed) per reference run; a spec, so workers can build it."""
    runs = [(i, name, 0) for i in instances for name in cfg.schedules]
    runs += [(i, f"perturbed{j}", cfg.seed * 1000 + k * 10 + j)
             for k, i in enumerate(instances) for j in range(cfg.perturbed_runs)]
    return runs


def _schedule(name: str, perturbation_seed: int) -> Schedule:
    return perturbed_hand(perturbation_seed) if name.startswith("perturbed") else get_schedule(name)


def _run_job(args: tuple) -> None:
    _reference_run(*args)


def build_bank(instances: list[str], setup: TrainingSetup, cfg: BankConfig, progress: bool = True) -> Path:
    """Run (or finish) every reference run and write ``manifest.json``; returns the bank folder."""
    root = bank_root(instances, setup, cfg)
    runs = [(instance, name, perturbation, root / f"run{n:03d}-{name}", cfg.seed + n)
            for n, (instance, name, perturbation) in enumerate(_reference_runs(instances, cfg))]
    pending = [run for run in runs if not (run[3] / "done").exists()]
    parallel = cfg.workers > 1 and len(pending) > 1
    run_setup = replace(setup, threads=1) if parallel else setup
    jobs = [(i, name, p, run_setup, cfg, run_dir, seed, progress and not parallel)
            for i, name, p, run_dir, seed in pending]
    run_jobs(_run_job, jobs, cfg.workers, "bank reference runs", progress=progress and parallel)
    entries, cost = [], {"steps": 0, "cpu_seconds": 0.0}
    for instance, name, _, run_dir, _ in runs:
        done = json.loads((run_dir / "done").read_text() or "{}")
        cost = {k: cost[k] + done.get(k, 0) for k in cost}
        checks = [tuple(c) for c in json.loads((run_dir / "checks.json").read_text())]
        for p in sorted(run_dir.glob("step_*.pt")):
            step = int(p.stem.split("_")[1])
            if step >= cfg.run_steps:  # the run's end: no room left for an episode
                continue
            entries.append({"path": str(p), "instance": instance, "schedule": name, "step": step,
                            "aligned_at": steps_to_align([c for c in checks if c[0] <= step])})
    checkpoint.atomic_write_text(root / "manifest.json", json.dumps(
        {"run_steps": cfg.run_steps, "cost": cost, "entries": entries}, indent=2))
    return root


def bank_cost(root: Path) -> dict:
    """Optimiser steps and CPU-seconds spent building the bank at ``root``."""
    manifest = json.loads((Path(root) / "manifest.json").read_text())
    return manifest.get("cost", {"steps": 0, "cpu_seconds": 0.0})


def _reference_run(instance: str, name: str, perturbation_seed: int, setup: TrainingSetup, cfg: BankConfig,
                   run_dir: Path, seed: int, progress: bool) -> None:
    started = time.perf_counter()
    corpus = load_data(instance, setup.proxy, setup.audio, setup.dataset, progress=False)
    trainer = build_trainer(setup, corpus, seed=seed)
    # A checkpoint and a validation at every save point from step 0: the warm starts and their alignment.
    state = drive(trainer, _schedule(name, perturbation_seed), cfg.run_steps, cfg.save_every, cfg.save_every, run_dir,
                  resume=True, validate_first=True, desc=f"bank {run_dir.name} on {instance}", progress=progress)
    checkpoint.atomic_write_text(run_dir / "checks.json", json.dumps([(h["step"], h["aligned"]) for h in state.history]))
    # What this reference run cost, for honest search-cost accounting (a resumed run counts its last part).
    checkpoint.atomic_write_text(run_dir / "done", json.dumps(
        {"steps": cfg.run_steps, "cpu_seconds": (time.perf_counter() - started) * max(setup.threads, 1)}))


def load_bank(root: Path) -> tuple[int, list[dict]]:
    """-> (run_steps, entries). Raises a clear error when the bank has not been built."""
    manifest = Path(root) / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no checkpoint bank at {root}; build it with `tacotune env build-bank`")
    data = json.loads(manifest.read_text())
    return data["run_steps"], data["entries"]
