"""Actions -> knobs: the pure ``apply_action(knobs, action, cfg) -> Knobs``, testable without a model.

The action config is the run's knob space (``tacotron.knobs.KnobSpace``: bounds, frozen flags) plus
the action mode, per unit of action a ∈ [-1, 1]:

* ``relative`` (default): a log-scale knob (lr) ×= 2^(step·a); r steps one value down when a < −step;
  the others += step·a. A knob is the running sum of the actions, so a small bias per decision drifts
  it to a bound on a run with more decisions than training had.
* ``residual``: the knob's reference (static) value moved by |a| of the way towards its upper bound
  (a > 0) or lower bound (a < 0), on the knob's scale. A knob depends on the latest action only, so it
  cannot drift, and a = 0 is static whatever came before.
* ``absolute``: a mapped straight onto [low, high] on the knob's scale.

Every result is clipped to [low, high]. A frozen knob keeps its value and has no action dimension.

r is gated the way practitioners lower it: it may only go down, and only once alignment is
confirmed. An upward move would feed the decoder projection rows that never trained, and before
alignment a lower r only makes attention harder; gating also keeps exploration in training from
changing r in states where the deterministic deployed policy never could.

``hold_ga_until_aligned`` (off by default, so policies trained without it deploy unchanged) gates
guided attention the same way: below its reference only once alignment is confirmed. Practitioners
keep it up until the attention is diagonal; PPO at our budgets learned a release keyed to the step
count instead (on the sealed #28 grid it dropped the weight below 1 at steps 140-180 in every run,
and 14 of 16 runs never aligned). With the gate the policy still chooses when and how far to
release after alignment, and may raise the weight at any time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tacotron.knobs import KNOB_DEFS, Knobs, KnobSpace, KnobSpec

ACTION_MODES = ("relative", "residual", "absolute")


@dataclass
class ActionConfig(KnobSpace):
    mode: str = "relative"  # relative | residual | absolute
    hold_ga_until_aligned: bool = False  # guided attention below its reference only once aligned

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in ACTION_MODES:
            raise ValueError(f"actions.mode={self.mode!r} must be one of {ACTION_MODES}")


def _relative(name: str, value: float, a: float, s: KnobSpec) -> float:
    if KNOB_DEFS[name].log:
        return value * 2.0 ** (s.step * a)
    if KNOB_DEFS[name].integer:
        return value - (a < -s.step)
    return value + s.step * a


def _residual(name: str, a: float, s: KnobSpec) -> float:
    d = KNOB_DEFS[name]
    ref, end = min(max(d.reference, s.low), s.high), s.high if a > 0 else s.low
    if d.log:
        return ref * (end / ref) ** abs(a)
    return ref + abs(a) * (end - ref)


def apply_action(knobs: Knobs, action: np.ndarray, cfg: ActionConfig, aligned: bool = False) -> Knobs:
    """New knobs from ``action`` (one value per active knob, clipped to [-1, 1]); r moves only down
    and only when ``aligned``; with ``cfg.hold_ga_until_aligned`` guided attention stays at or above
    its reference until then."""
    action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
    if action.shape[0] != len(cfg.active):
        raise ValueError(f"action has {action.shape[0]} values; expected {len(cfg.active)} for {cfg.active}")
    values = knobs.as_dict()
    for name, a in zip(cfg.active, action):
        if cfg.mode == "absolute":
            values[name] = cfg.denormalise(name, (a + 1.0) / 2.0)
        elif cfg.mode == "residual":
            values[name] = _residual(name, a, cfg.spec(name))
        else:
            values[name] = _relative(name, values[name], a, cfg.spec(name))
    values["r"] = min(values["r"], knobs.r) if aligned else knobs.r
    if cfg.hold_ga_until_aligned and not aligned and "ga_weight" in cfg.active:
        values["ga_weight"] = max(values["ga_weight"], cfg.reference().ga_weight)
    return cfg.clip(values)
