"""Knob schedules as pure functions ``(step, max_steps) -> Knobs``. Baselines reuse them."""
from __future__ import annotations

import math
from typing import Callable

from tacotron.knobs import Knobs

Schedule = Callable[[int, int], Knobs]


def static(step: int, max_steps: int) -> Knobs:
    """NVIDIA-style defaults held constant (guided attention at coqui's constant weight 5)."""
    return Knobs()


def _lerp(start: float, end: float, frac: float) -> float:
    return start + (end - start) * min(max(frac, 0.0), 1.0)


def hand(step: int, max_steps: int) -> Knobs:
    """The practitioners' recipe, compressed to the run length.

    Guided attention 15 -> 1 over the first 40%; teacher forcing 1.0 -> 0.5 from 30% to 90%;
    r 5 -> 3 -> 2 at 25% and 60%; LR warm-up over 5% to 1e-3, then cosine decay to 1e-4.
    """
    p = step / max(max_steps, 1)
    warm = 0.05
    if p < warm:
        lr = 1e-3 * max(p / warm, 0.05)
    else:
        lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * (p - warm) / (1 - warm)))
    r = 5 if p < 0.25 else 3 if p < 0.6 else 2
    return Knobs(lr=lr, ga_weight=_lerp(15.0, 1.0, p / 0.4), dropout=0.1, r=r,
                 tf_ratio=_lerp(1.0, 0.5, (p - 0.3) / 0.6))


SCHEDULES: dict[str, Schedule] = {"static": static, "hand": hand}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is unknown; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name]
