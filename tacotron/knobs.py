"""The five scheduled knobs and their space: the one place that knows their names, validity, search
bounds, scale, integer flag and reference value.

One name per knob end to end: lr, ga_weight, dropout, r, tf_ratio. ``KNOB_DEFS`` holds what is
fixed about each knob; a ``KnobSpace`` is the part a study may change (its bounds, and which knobs
are frozen). Every consumer derives from a ``KnobSpace``: the env's actions (``env.actions``), the
Optuna spaces (``controller.search_spaces``), PBT's mutations and the perturbed hand schedules of the
warm-start bank. A frozen knob holds its reference value under every schedule and search (from a
bank checkpoint, the env keeps the checkpoint's value).
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tacotron.data import R_MAX

KNOB_NAMES = ("lr", "ga_weight", "dropout", "r", "tf_ratio")


@dataclass(frozen=True)
class KnobDef:
    """What is fixed about a knob. ``reference``: the static default (NVIDIA's lr 1e-3 and dropout 0.1,
    coqui's constant guided-attention weight 5, r = 3, full teacher forcing). ``low``/``high``: the
    default search bounds, from practitioners' search spaces (lr's upper bound admits the 1e-3 default
    with room above). ``valid``: what the model accepts at all. ``step``: the env's relative action step."""

    reference: float
    low: float
    high: float
    valid: tuple[float, float]
    step: float
    log: bool = False
    integer: bool = False


KNOB_DEFS: dict[str, KnobDef] = {
    "lr": KnobDef(1e-3, 1e-5, 2e-3, valid=(1e-12, 1.0), step=1.0, log=True),  # step: a log2 factor
    "ga_weight": KnobDef(5.0, 0.0, 20.0, valid=(0.0, math.inf), step=3.0),
    "dropout": KnobDef(0.1, 0.0, 0.5, valid=(0.0, 0.99), step=0.05),
    "r": KnobDef(3, 1, 5, valid=(1, R_MAX), step=0.5, integer=True),  # step: the |a| threshold to move
    "tf_ratio": KnobDef(1.0, 0.3, 1.0, valid=(0.0, 1.0), step=0.1),
}


@dataclass(frozen=True)
class Knobs:
    """Values a schedule sets between any two optimiser steps (validated on construction); the
    defaults are the reference values.

    lr: Adam learning rate. ga_weight: guided-attention loss weight. dropout: attention and
    decoder dropout p. r: frames per decoder step. tf_ratio: teacher-forcing ratio.
    """

    lr: float = KNOB_DEFS["lr"].reference
    ga_weight: float = KNOB_DEFS["ga_weight"].reference
    dropout: float = KNOB_DEFS["dropout"].reference
    r: int = int(KNOB_DEFS["r"].reference)
    tf_ratio: float = KNOB_DEFS["tf_ratio"].reference

    def __post_init__(self) -> None:
        for name in KNOB_NAMES:
            value, d = getattr(self, name), KNOB_DEFS[name]
            ok = d.valid[0] <= value <= d.valid[1] and (not d.integer or isinstance(value, int))
            if not ok:
                kind = "integers" if d.integer else "values"
                raise ValueError(f"knob {name}={value!r} is out of bounds; allowed {kind} in "
                                 f"[{d.valid[0]:g}, {d.valid[1]:g}]")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class KnobSpec:
    """One knob's bounds in a study, its relative action step, and whether it is frozen."""

    low: float
    high: float
    step: float
    frozen: bool = False

    def __post_init__(self) -> None:
        # Floats whatever the source (Python ints, YAML, JSON), so config hashes agree across them.
        self.low, self.high, self.step = float(self.low), float(self.high), float(self.step)
        if not self.low <= self.high:
            raise ValueError(f"knob bounds low={self.low} must be <= high={self.high}")

    @classmethod
    def default(cls, name: str) -> "KnobSpec":
        d = KNOB_DEFS[name]
        return cls(d.low, d.high, d.step)


@dataclass
class KnobSpace:
    """The knobs of one study: per knob its bounds and frozen flag (defaults from ``KNOB_DEFS``)."""

    lr: KnobSpec = field(default_factory=lambda: KnobSpec.default("lr"))
    ga_weight: KnobSpec = field(default_factory=lambda: KnobSpec.default("ga_weight"))
    dropout: KnobSpec = field(default_factory=lambda: KnobSpec.default("dropout"))
    r: KnobSpec = field(default_factory=lambda: KnobSpec.default("r"))
    tf_ratio: KnobSpec = field(default_factory=lambda: KnobSpec.default("tf_ratio"))

    def __post_init__(self) -> None:
        for name in KNOB_NAMES:
            s, d = self.spec(name), KNOB_DEFS[name]
            if s.low < d.valid[0] or (d.log and s.low <= 0):
                raise ValueError(f"actions.{name}.low={s.low:g} is below the knob's valid range "
                                 f"[{d.valid[0]:g}, {d.valid[1]:g}]" + (" (it moves on a log scale)" if d.log else ""))
            if s.high > d.valid[1]:
                raise ValueError(f"actions.{name}.high={s.high:g} is above the knob's valid range "
                                 f"[{d.valid[0]:g}, {d.valid[1]:g}]")

    def spec(self, name: str) -> KnobSpec:
        return getattr(self, name)

    @property
    def active(self) -> list[str]:
        """Knob names not frozen, in KNOB_NAMES order."""
        return [n for n in KNOB_NAMES if not self.spec(n).frozen]

    def clip(self, values: dict[str, float]) -> Knobs:
        """Knobs from raw values, each clipped to its [low, high]; integer knobs rounded."""
        clipped = {n: min(max(float(values[n]), self.spec(n).low), self.spec(n).high) for n in KNOB_NAMES}
        return Knobs(**{n: int(round(v)) if KNOB_DEFS[n].integer else v for n, v in clipped.items()})

    def reference(self) -> Knobs:
        """The reference knobs clipped to this space: where runs from scratch start."""
        return self.clip(Knobs().as_dict())

    def hold_frozen(self, knobs: Knobs, held: Knobs) -> Knobs:
        """``knobs`` within bounds, with every frozen knob at its value in ``held``."""
        return self.clip({n: getattr(held if self.spec(n).frozen else knobs, n) for n in KNOB_NAMES})

    def normalise(self, name: str, value: float) -> float:
        """Knob value -> [0, 1] within its bounds (on its own scale), for observations."""
        s = self.spec(name)
        if s.high == s.low:
            return 0.0
        if KNOB_DEFS[name].log:
            return (math.log(value) - math.log(s.low)) / (math.log(s.high) - math.log(s.low))
        return (value - s.low) / (s.high - s.low)

    def denormalise(self, name: str, frac: float) -> float:
        """[0, 1] -> a knob value within its bounds (inverse of ``normalise``; integer knobs rounded)."""
        s = self.spec(name)
        if KNOB_DEFS[name].log:
            return math.exp(math.log(s.low) + frac * (math.log(s.high) - math.log(s.low)))
        value = s.low + frac * (s.high - s.low)
        return round(value) if KNOB_DEFS[name].integer else value


def write_knob_csv(rows: list[dict], path: Path) -> None:
    """A knob trajectory (rows of {"step", knob...}) as CSV with a fixed column order."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", *KNOB_NAMES])
        writer.writeheader()
        writer.writerows(rows)
