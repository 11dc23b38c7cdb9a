"""SB3 callbacks: checkpoints that resume, held-out evaluation, and a progress bar.

Callbacks read what they need from the env's ``info`` (``final_score``, ``steps_to_align``), never
from the algorithm's ``locals()`` by string key beyond SB3's documented ``infos``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from controller.episodes import policy_decider, run_episode
from controller.policy_io import save_policy
from env.training_env import EnvConfig, TrainingEnv


class PeriodicCallback(BaseCallback):
    """Calls ``_on_period`` whenever the env-step count crosses a multiple of ``every`` (resume-safe)."""

    def __init__(self, every: int):
        super().__init__()
        self.every = every

    def _on_training_start(self) -> None:
        self._period = self.num_timesteps // self.every

    def _on_step(self) -> bool:
        if self.num_timesteps // self.every > self._period:
            self._period = self.num_timesteps // self.every
            self._on_period()
        return True

    def _on_period(self) -> None:
        raise NotImplementedError


class CheckpointCallback(PeriodicCallback):
    """Writes the model and VecNormalize stats (atomically) to ``directory/step_N``, with the
    training wall time so far and ``meta`` in ``meta.json`` (what it cost: for anytime curves)."""

    def __init__(self, directory: Path, every: int, env_cfg: EnvConfig, clock: "TrainingClock", meta: dict):
        super().__init__(every)
        self.directory, self.env_cfg, self.clock, self.meta = Path(directory), env_cfg, clock, meta

    def _on_period(self) -> None:
        target = self.directory / f"step_{self.num_timesteps}"
        save_policy(self.model, target, self.env_cfg, meta={"train_seconds": self.clock.seconds(), **self.meta})


class TrainingClock:
    """Training wall time, carried across resumes through the checkpoints' meta.json."""

    def __init__(self, already: float = 0.0):
        self.already, self.started = already, time.perf_counter()

    def seconds(self) -> float:
        return self.already + time.perf_counter() - self.started


class TimeBudgetCallback(BaseCallback):
    """Stops training once ``clock`` passes ``budget_s`` (0 = no budget)."""

    def __init__(self, clock: TrainingClock, budget_s: float):
        super().__init__()
        self.clock, self.budget_s = clock, budget_s

    def _on_step(self) -> bool:
        return self.budget_s <= 0 or self.clock.seconds() < self.budget_s


class EpisodeLogCallback(BaseCallback):
    """Logs each finished training episode to TensorBoard, overall and by where it started (scratch,
    bank or refreshed checkpoint; before or after alignment), and as a line of ``log_path`` with what
    the episode drew (batch size, the step of its loss spike or null) and how many spiked steps it took."""

    def __init__(self, log_path: Path):
        super().__init__()
        self.log_path = Path(log_path)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "final_score" not in info:
                continue
            gain, aligned = info["final_score"] - info["initial_score"], info["steps_to_align"] is not None
            start = f"{info['start']}_{'aligned' if info['start_aligned'] else 'unaligned'}"
            for group in ("episode", f"episode_by_start/{start}"):
                self.logger.record_mean(f"{group}/final_score", info["final_score"])
                self.logger.record_mean(f"{group}/score_gain", gain)
                self.logger.record_mean(f"{group}/aligned", float(aligned))
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as fh:
                fh.write(json.dumps({"timesteps": self.num_timesteps, "instance": info["instance"], "start": start,
                                     "start_step": info["start_step"], "initial_score": info["initial_score"],
                                     "final_score": info["final_score"], "steps_to_align": info["steps_to_align"],
                                     "diverged": info["diverged"], "batch_size": info["batch_size"],
                                     "spike_at": info["spike_at"], "spikes": len(info["spiked_steps"])}) + "\n")
        return True


class HeldOutEvalCallback(PeriodicCallback):
    """Runs the deterministic policy on held-out instances, logs their final scores, and hands every
    new best mean score to ``keep_best`` (which saves that policy: SB3's ``EvalCallback`` keeps its best
    model the same way), so a policy that PPO later makes worse on voices it never trains on is still
    there to choose. ``env_cfg`` is the deployment configuration (from scratch), as the policy will be
    used. A resumed run carries its best score over from ``log_path``."""

    def __init__(self, env_cfg: EnvConfig, instances: list[str], every: int, log_path: Path,
                 keep_best: Callable[[float], None]):
        super().__init__(every)
        self.env = TrainingEnv(env_cfg)
        self.instances, self.log_path, self.keep_best = instances, Path(log_path), keep_best
        logged = self.log_path.read_text().splitlines() if self.log_path.is_file() else []
        self.best = max((float(np.mean(json.loads(line)["final_scores"])) for line in logged), default=-math.inf)
        self.evaluated_at: int | None = None

    def _on_training_end(self) -> None:
        if self.evaluated_at != self.num_timesteps:  # the final policy is a candidate too
            self._on_period()

    def _on_period(self) -> None:
        self.evaluated_at = self.num_timesteps
        decide = policy_decider(self.model, self.model.get_vec_normalize_env())
        results = [run_episode(self.env, decide, instance, seed=i)[0] for i, instance in enumerate(self.instances)]
        scores = [r["final_score"] for r in results]
        mean = float(np.mean(scores))
        self.logger.record("eval/heldout_final_score", mean)
        self.logger.record("eval/heldout_aligned", float(np.mean([r["steps_to_align"] is not None for r in results])))
        if mean > self.best:  # saved before it is logged, so a resumed run never trusts a best it lacks
            self.best = mean
            self.keep_best(mean)
        with self.log_path.open("a") as fh:
            fh.write(json.dumps({"timesteps": self.num_timesteps, "final_scores": scores}) + "\n")


class ProgressCallback(BaseCallback):
    """A progress bar in percent of the step count or of the training-time budget, whichever training
    reaches first (that one stops it)."""

    def __init__(self, total: int, clock: TrainingClock, budget_s: float = 0.0):
        super().__init__()
        self.total, self.clock, self.budget_s = total, clock, budget_s

    def _percent_done(self) -> int:
        done = self.num_timesteps / self.total
        if self.budget_s > 0:
            done = max(done, self.clock.seconds() / self.budget_s)
        return min(int(100 * done), 100)

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=100, initial=self._percent_done(), desc="PPO training", unit="%")

    def _on_step(self) -> bool:
        self.bar.update(self._percent_done() - self.bar.n)
        self.bar.set_postfix(env_steps=self.num_timesteps, train_s=round(self.clock.seconds()), refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()
