"""Actions -> knobs: the pure ``apply_action(knobs, action, cfg) -> Knobs``, testable without a model.

Relative mode (default), per unit of action a ∈ [-1, 1]:
  lr ×= 2^(step·a); ga_weight, dropout and tf_ratio += step·a; r steps one value down when a < −step.
  Absolute mode maps a straight onto [low, high] (log scale for lr).
Every result is clipped to [low, high]. A frozen knob keeps its value and has no action dimension.

r is gated the way practitioners lower it: it may only go down, and only once alignment is
confirmed. An upward move would feed the decoder projection rows that never trained, and before
alignment a lower r only makes attention harder; gating also keeps exploration in training from
changing r in states where the deterministic deployed policy never could.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tacotron.knobs import KNOB_NAMES, Knobs


@dataclass
class KnobSpec:
    low: float
    high: float
    step: float  # relative mode: additive step (lr: log2 factor; r: the |a| threshold)
    frozen: bool = False

    def __post_init__(self) -> None:
        # Floats whatever the source (Python ints, YAML, JSON), so config hashes agree across them.
        self.low, self.high, self.step = float(self.low), float(self.high), float(self.step)
        if not self.low <= self.high:
            raise ValueError(f"knob bounds low={self.low} must be <= high={self.high}")


@dataclass
class ActionConfig:
    """Bounds follow practitioners' search spaces, except lr: its upper bound admits NVIDIA's 1e-3
    default, so the policy can always reproduce the static baseline."""

    mode: str = "relative"  # relative | absolute
    lr: KnobSpec = field(default_factory=lambda: KnobSpec(1e-5, 2e-3, 1.0))
    ga_weight: KnobSpec = field(default_factory=lambda: KnobSpec(0.0, 20.0, 3.0))
    dropout: KnobSpec = field(default_factory=lambda: KnobSpec(0.0, 0.5, 0.05))
    r: KnobSpec = field(default_factory=lambda: KnobSpec(1, 5, 0.5))
    tf_ratio: KnobSpec = field(default_factory=lambda: KnobSpec(0.3, 1.0, 0.1))

    def __post_init__(self) -> None:
        if self.mode not in ("relative", "absolute"):
            raise ValueError(f"actions.mode={self.mode!r} must be relative or absolute")
        if self.lr.low <= 0:
            raise ValueError(f"actions.lr.low={self.lr.low} must be > 0 (lr moves on a log scale)")

    def spec(self, name: str) -> KnobSpec:
        return getattr(self, name)

    @property
    def active(self) -> list[str]:
        """Knob names that own an action dimension, in KNOB_NAMES order."""
        return [n for n in KNOB_NAMES if not self.spec(n).frozen]

    def clip(self, values: dict[str, float]) -> Knobs:
        """Knobs from raw values, each clipped to its [low, high]; r rounded to an integer."""
        clipped = {n: min(max(float(values[n]), self.spec(n).low), self.spec(n).high) for n in KNOB_NAMES}
        clipped["r"] = int(round(clipped["r"]))
        return Knobs(**clipped)

    def normalise(self, name: str, value: float) -> float:
        """Knob value -> [0, 1] within its bounds (log scale for lr), for observations."""
        s = self.spec(name)
        if s.high == s.low:
            return 0.0
        if name == "lr":
            return (math.log(value) - math.log(s.low)) / (math.log(s.high) - math.log(s.low))
        return (value - s.low) / (s.high - s.low)


def _relative(name: str, value: float, a: float, s: KnobSpec) -> float:
    if name == "lr":
        return value * 2.0 ** (s.step * a)
    if name == "r":
        return value - (a < -s.step)
    return value + s.step * a


def _absolute(name: str, a: float, s: KnobSpec) -> float:
    frac = (a + 1.0) / 2.0
    if name == "lr":
        return math.exp(math.log(s.low) + frac * (math.log(s.high) - math.log(s.low)))
    if name == "r":
        return round(s.low + frac * (s.high - s.low))
    return s.low + frac * (s.high - s.low)


def apply_action(knobs: Knobs, action: np.ndarray, cfg: ActionConfig, aligned: bool = False) -> Knobs:
    """New knobs from ``action`` (one value per active knob, clipped to [-1, 1]); r moves only down
    and only when ``aligned``."""
    action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
    if action.shape[0] != len(cfg.active):
        raise ValueError(f"action has {action.shape[0]} values; expected {len(cfg.active)} for {cfg.active}")
    values = knobs.as_dict()
    for name, a in zip(cfg.active, action):
        s = cfg.spec(name)
        values[name] = _absolute(name, a, s) if cfg.mode == "absolute" else _relative(name, values[name], a, s)
    values["r"] = min(values["r"], knobs.r) if aligned else knobs.r
    return cfg.clip(values)
