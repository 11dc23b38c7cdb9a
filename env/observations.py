"""The observation: per-window training statistics, the latest validation, knobs and the run's state.

Horizon-agnostic: every window feature is a mean, a rate per 100 steps, a spread or a share, so it
does not grow with the window's length, and nothing is a fraction of the run, so a policy trained on
300-step proxy episodes reads a 1,500- or 100k-step run the same way. The run's state is what a
practitioner watching it knows: whether alignment is confirmed, log step counts (since the start and
since alignment; training dynamics, unlike the run's length, are measured in steps), and how far the
window's mel loss lies above the best window of the run so far (0 while the loss keeps falling; after
one 30x-LR step, 0.19 on average over a 20-step window, against at most 0.02 without it, in the
v3 reacting policy's dev states: early training has a high loss too, but not one above its best).
An env emits the features its ``EnvConfig.observations`` names, in that order (by default all of
``OBS_NAMES``), so a policy trained before a feature was added reads the ones it was trained on.
``has_window`` is 0 on the first observation of an episode, whose window features are placeholders.
"""
from __future__ import annotations

import math

import numpy as np

from env.actions import ActionConfig
from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.trainer import StepStats, ValStats

WINDOW_NAMES = (
    "has_window", "log_mel_mean", "log_mel_rate", "log_mel_post_mean", "log_mel_post_rate", "gate_loss",
    "log_grad_norm_mean", "log_grad_norm_std", "clip_share", "gate_accuracy",
    "diagonality", "focus", "monotonicity", "coverage", "rollback_share",
)
VAL_NAMES = (
    "val_log_mel", "val_gate_accuracy", "val_diagonality", "val_infer_intelligibility", "val_infer_diagonality",
    "val_infer_focus", "val_infer_monotonicity", "val_infer_coverage", "val_infer_stop_rate",
    "val_infer_stop_error_rel",
)
RUN_NAMES = ("aligned", "log_step", "log_steps_since_aligned", "log_mel_above_best")
OBS_NAMES = WINDOW_NAMES + VAL_NAMES + KNOB_NAMES + RUN_NAMES
OBS_LIMIT = 10.0  # every feature is clipped to [-OBS_LIMIT, OBS_LIMIT]
LOG_STEP_SCALE = math.log(1 + 10_000)  # log step features reach 1 at 10k steps


def _log(x: float) -> float:
    return math.log(max(x, 1e-8))


def _rate(steps: list[int], values: list[float]) -> float:
    """Least-squares change per 100 optimiser steps (0 with fewer than two points)."""
    if len(values) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(steps, dtype=np.float64), np.asarray(values), 1)[0]) * 100.0


def window_log_mel(window: list[StepStats]) -> float | None:
    """The window's mean log mel loss over the steps not rolled back (None: no such step)."""
    good = [_log(s.mel) for s in window if not s.rolled_back]
    return float(np.mean(good)) if good else None


def window_features(window: list[StepStats]) -> dict[str, float]:
    good = [s for s in window if not s.rolled_back]
    if not good:
        return {name: 0.0 for name in WINDOW_NAMES} | {"has_window": float(bool(window)),
                                                        "rollback_share": float(bool(window))}
    steps = [s.step for s in good]
    log_mel = [_log(s.mel) for s in good]
    log_post = [_log(s.mel_post) for s in good]
    log_grad = [_log(s.grad_norm) for s in good]
    mean = lambda key: float(np.mean([getattr(s, key) for s in good]))  # noqa: E731
    return {
        "has_window": 1.0, "log_mel_mean": window_log_mel(good), "log_mel_rate": _rate(steps, log_mel),
        "log_mel_post_mean": float(np.mean(log_post)), "log_mel_post_rate": _rate(steps, log_post),
        "gate_loss": mean("gate"), "log_grad_norm_mean": float(np.mean(log_grad)),
        "log_grad_norm_std": float(np.std(log_grad)), "clip_share": mean("clipped"),
        "gate_accuracy": mean("gate_accuracy"), "diagonality": mean("diagonality"), "focus": mean("focus"),
        "monotonicity": mean("monotonicity"), "coverage": mean("coverage"),
        "rollback_share": (len(window) - len(good)) / len(window),
    }


def val_features(val: ValStats) -> dict[str, float]:
    free = {f"val_infer_{k}": v for k, v in val.infer.as_dict().items()}
    return {"val_log_mel": _log(val.mel_loss), "val_gate_accuracy": val.gate_accuracy,
            "val_diagonality": val.diagonality} | {name: free[name] for name in VAL_NAMES if name in free}


def run_features(step: int, aligned_at: int | None, log_mel: float | None = None,
                 best_log_mel: float | None = None) -> dict[str, float]:
    """The run's state; ``log_mel`` is this window's (``window_log_mel``), ``best_log_mel`` the lowest of
    the run's earlier windows (None for none)."""
    since = 0.0 if aligned_at is None else math.log1p(max(step - aligned_at, 0)) / LOG_STEP_SCALE
    above = 0.0 if log_mel is None or best_log_mel is None else max(log_mel - best_log_mel, 0.0)
    return {"aligned": float(aligned_at is not None), "log_step": math.log1p(step) / LOG_STEP_SCALE,
            "log_steps_since_aligned": since, "log_mel_above_best": above}


def build_observation(window: list[StepStats], val: ValStats, knobs: Knobs, step: int, aligned_at: int | None,
                      actions: ActionConfig, best_log_mel: float | None = None,
                      names: tuple[str, ...] | list[str] = OBS_NAMES,
                      blind: tuple[str, ...] | list[str] = ()) -> np.ndarray:
    """Flat float32 vector of the features in ``names``, in that order; those in ``blind`` are held at 0.
    ``best_log_mel``: the lowest ``window_log_mel`` of the run's earlier windows (None for none)."""
    features = (window_features(window) | val_features(val)
                | run_features(step, aligned_at, window_log_mel(window), best_log_mel))
    features |= {name: actions.normalise(name, getattr(knobs, name)) for name in KNOB_NAMES}
    features |= dict.fromkeys(blind, 0.0)
    obs = np.array([features[name] for name in names], dtype=np.float32)
    return np.clip(np.nan_to_num(obs, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT), -OBS_LIMIT, OBS_LIMIT)
