"""One resumable driver for a whole training run: a trainer, a knob schedule, a validation and
checkpoint cadence, and a hook.

Before every optimiser step the schedule sets the knobs from ``(step, max_steps, aligned_at)``, where
``aligned_at`` is the step two consecutive validations confirmed alignment (None before). Every
``val_every`` steps it validates, and every ``ckpt_every`` it writes ``step_<n>.pt`` (atomically) with
what the run has measured, both at the end too, so ``resume`` continues from the newest readable
checkpoint exactly where it was.
``tacotune train`` (``tacotron.run``) and the warm-start bank's reference runs (``env.bank``) are its
callers; the env drives the same trainer window by window for a policy (``env.training_env``).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from tacotron import checkpoint
from tacotron.metrics import is_aligned, steps_to_align
from tacotron.schedules import Schedule
from tacotron.trainer import StepStats, Trainer, ValStats

log = logging.getLogger(__name__)


def val_record(step: int, val: ValStats) -> dict:
    """One validation as a history row: its flat figures and whether it passes the aligned gate."""
    return {"step": step, **val.flat(), "aligned": is_aligned(val.infer)}


@dataclass
class RunState:
    """What a run has measured; it travels in every checkpoint, so a resumed run continues it."""

    history: list[dict] = field(default_factory=list)  # one ``val_record`` per validation
    knobs: list[dict] = field(default_factory=list)  # {"step", knob...} before every optimiser step

    @property
    def aligned_at(self) -> int | None:
        return steps_to_align([(h["step"], h["aligned"]) for h in self.history])


# Called after each validation with the progress bar, the new history row and the last step's stats.
OnValidation = Callable[[tqdm, dict, StepStats], None]


def drive(trainer: Trainer, schedule: Schedule, max_steps: int, val_every: int, ckpt_every: int, ckpt_dir: Path,
          *, resume: bool = False, validate_first: bool = False, on_validation: OnValidation | None = None,
          desc: str = "train", progress: bool = True) -> RunState:
    """Train to ``max_steps`` -> what the run measured. ``validate_first`` also validates and
    checkpoints before the first step (the bank's step-0 warm start)."""
    state = RunState()
    if resume and (restored := checkpoint.restore_newest(ckpt_dir, trainer.restore)) is not None:
        path, extra = restored
        # Checkpoints of tacotune train before the driver kept the history and knobs at the top level.
        state = RunState(**extra.get("run", {"history": extra.get("history", []), "knobs": extra.get("knobs", [])}))
        log.info("resumed %s at step %d", path, trainer.step_count)

    def save() -> None:
        trainer.save(Path(ckpt_dir) / f"step_{trainer.step_count}.pt", {"run": asdict(state)})

    bar = tqdm(total=max_steps, initial=trainer.step_count, desc=desc, disable=not progress)
    if validate_first and not state.history:
        state.history.append(val_record(trainer.step_count, trainer.validate()))
        save()
    while trainer.step_count < max_steps:
        step = trainer.step_count
        trainer.set_knobs(schedule(step, max_steps, state.aligned_at))
        state.knobs.append({"step": step, **trainer.knobs.as_dict()})
        stats = trainer.step()
        bar.update(1)
        done = trainer.step_count == max_steps
        if trainer.step_count % val_every == 0 or done:
            state.history.append(val_record(trainer.step_count, trainer.validate()))
            if on_validation is not None:
                on_validation(bar, state.history[-1], stats)
        if trainer.step_count % ckpt_every == 0 or done:
            save()
    bar.close()
    return state
