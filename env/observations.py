"""The observation: per-window training statistics, the latest validation, knobs and progress.

Everything is a mean, a slope per window, a share, a log, a [0, 1] knob position or a progress
fraction, never a raw step count, so a policy trained on 300-step proxy runs reads a 100k-step
run the same way (K and the validation interval scale with the run length).
"""
from __future__ import annotations

import math

import numpy as np

from env.actions import ActionConfig
from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.trainer import StepStats, ValStats

WINDOW_NAMES = (
    "log_mel_mean", "log_mel_slope", "log_mel_post_mean", "log_mel_post_slope", "gate_loss",
    "log_grad_norm_mean", "log_grad_norm_max", "clip_share", "gate_accuracy",
    "diagonality", "focus", "monotonicity", "coverage", "rollbacks",
)
VAL_NAMES = (
    "val_log_mel", "val_gate_accuracy", "val_diagonality", "val_infer_mel_score", "val_infer_diagonality",
    "val_infer_focus", "val_infer_monotonicity", "val_infer_coverage", "val_infer_stop_rate",
    "val_infer_stop_error_rel",
)
OBS_NAMES = WINDOW_NAMES + VAL_NAMES + KNOB_NAMES + ("progress",)
OBS_LIMIT = 10.0  # every feature is clipped to [-OBS_LIMIT, OBS_LIMIT]


def _log(x: float) -> float:
    return math.log(max(x, 1e-8))


def _slope(values: list[float]) -> float:
    """Least-squares change across the whole window (slope × window length)."""
    if len(values) < 2:
        return 0.0
    x = np.arange(len(values), dtype=np.float64)
    return float(np.polyfit(x, np.asarray(values), 1)[0]) * (len(values) - 1)


def window_features(window: list[StepStats]) -> dict[str, float]:
    good = [s for s in window if not s.rolled_back]
    if not good:
        return {name: 0.0 for name in WINDOW_NAMES} | {"rollbacks": float(len(window))}
    log_mel = [_log(s.mel) for s in good]
    log_post = [_log(s.mel_post) for s in good]
    log_grad = [_log(s.grad_norm) for s in good]
    mean = lambda key: float(np.mean([getattr(s, key) for s in good]))  # noqa: E731
    return {
        "log_mel_mean": float(np.mean(log_mel)), "log_mel_slope": _slope(log_mel),
        "log_mel_post_mean": float(np.mean(log_post)), "log_mel_post_slope": _slope(log_post),
        "gate_loss": mean("gate"), "log_grad_norm_mean": float(np.mean(log_grad)),
        "log_grad_norm_max": float(np.max(log_grad)), "clip_share": mean("clipped"),
        "gate_accuracy": mean("gate_accuracy"), "diagonality": mean("diagonality"), "focus": mean("focus"),
        "monotonicity": mean("monotonicity"), "coverage": mean("coverage"),
        "rollbacks": float(len(window) - len(good)),
    }


def val_features(val: ValStats) -> dict[str, float]:
    free = {f"val_infer_{k}": v for k, v in val.infer.as_dict().items()}
    return {"val_log_mel": _log(val.mel_loss), "val_gate_accuracy": val.gate_accuracy,
            "val_diagonality": val.diagonality} | {name: free[name] for name in VAL_NAMES if name in free}


def build_observation(window: list[StepStats], val: ValStats, knobs: Knobs, progress: float,
                      actions: ActionConfig) -> np.ndarray:
    """Flat float32 vector in ``OBS_NAMES`` order."""
    features = window_features(window) | val_features(val)
    features |= {name: actions.normalise(name, getattr(knobs, name)) for name in KNOB_NAMES}
    features["progress"] = progress
    obs = np.array([features[name] for name in OBS_NAMES], dtype=np.float32)
    return np.clip(np.nan_to_num(obs, nan=0.0, posinf=OBS_LIMIT, neginf=-OBS_LIMIT), -OBS_LIMIT, OBS_LIMIT)
