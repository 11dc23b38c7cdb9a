"""Knob schedules as pure functions ``(step, max_steps, aligned_at) -> Knobs``. Baselines reuse them.

``aligned_at`` is the step at which the run was confirmed aligned on validation (two consecutive
free-running checks; ``None`` before), so a schedule can gate its late phase on alignment the way
practitioners do when they watch the alignment plots.
"""
from __future__ import annotations

import math
from typing import Callable

from tacotron.knobs import Knobs

Schedule = Callable[[int, int, "int | None"], Knobs]

# The hand recipe, in optimiser steps (scaled from practitioners' 5k-step guided-attention decay to a
# tiny proxy model that aligns in about 200 steps).
HAND_WARMUP_STEPS = 50
HAND_GA_START, HAND_GA_END = 10.0, 1.0
HAND_LR_PEAK, HAND_LR_FINAL = 1e-3, 1e-4


def static(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
    """NVIDIA-style defaults held constant (guided attention at coqui's constant weight 5)."""
    return Knobs()


def lerp(start: float, end: float, frac: float) -> float:
    """``start`` -> ``end`` linearly as ``frac`` goes 0 -> 1, held at either end outside."""
    return start + (end - start) * min(max(frac, 0.0), 1.0)


def _released_ga(start: float, step: int, aligned_at: int) -> float:
    """Practitioners' release of guided attention once aligned: ``start`` -> ``HAND_GA_END`` linearly
    over as many steps as alignment took."""
    return lerp(start, HAND_GA_END, (step - aligned_at) / max(aligned_at, 1))


def hand(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
    """The practitioners' recipe, applied at every optimiser step and gated on alignment.

    Until aligned: LR warms up linearly over ``HAND_WARMUP_STEPS`` to 1e-3 and holds; guided
    attention 10; r = 5; full teacher forcing. From the aligned step a: guided attention decays
    10 -> 1 over the next a steps (as long as alignment took); r = 3, and r = 2 from halfway between
    a and the end; teacher forcing ramps 1.0 -> 0.5 from a to the end; the LR decays on a cosine
    from 1e-3 to 1e-4 at the end. Dropout stays at 0.1.
    """
    warm_lr = HAND_LR_PEAK * min(1.0, (step + 1) / HAND_WARMUP_STEPS)
    if aligned_at is None or step < aligned_at:
        return Knobs(lr=warm_lr, ga_weight=HAND_GA_START, dropout=0.1, r=5, tf_ratio=1.0)
    since = (step - aligned_at) / max(max_steps - aligned_at, 1)  # 0 at alignment, 1 at the end
    lr = HAND_LR_FINAL + 0.5 * (HAND_LR_PEAK - HAND_LR_FINAL) * (1 + math.cos(math.pi * since))
    return Knobs(lr=min(lr, warm_lr), ga_weight=_released_ga(HAND_GA_START, step, aligned_at), dropout=0.1,
                 r=3 if since < 0.5 else 2, tf_ratio=lerp(1.0, 0.5, since))


def static_release(step: int, max_steps: int, aligned_at: int | None = None) -> Knobs:
    """Static defaults with the hand recipe's guided-attention release alone: the static weight until
    the run is confirmed aligned, then down to ``HAND_GA_END`` (the ablation that asks whether the
    release itself pays)."""
    if aligned_at is None or step < aligned_at:
        return Knobs()
    return Knobs(ga_weight=_released_ga(Knobs().ga_weight, step, aligned_at))


SCHEDULES: dict[str, Schedule] = {"static": static, "hand": hand, "static_release": static_release}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is unknown; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name]
