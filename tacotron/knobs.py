"""The five scheduled knobs. One name per knob end to end: lr, ga_weight, dropout, r, tf_ratio."""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from tacotron.data import R_MAX

KNOB_NAMES = ("lr", "ga_weight", "dropout", "r", "tf_ratio")


@dataclass(frozen=True)
class Knobs:
    """Values a schedule sets between any two optimiser steps (validated on construction).

    lr: Adam learning rate. ga_weight: guided-attention loss weight. dropout: attention and
    decoder dropout p. r: frames per decoder step, 1..R_MAX. tf_ratio: teacher-forcing ratio.
    """

    lr: float = 1e-3
    ga_weight: float = 5.0
    dropout: float = 0.1
    r: int = 3
    tf_ratio: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "lr": (0 < self.lr <= 1, "(0, 1]"),
            "ga_weight": (self.ga_weight >= 0, "[0, inf)"),
            "dropout": (0 <= self.dropout < 1, "[0, 1)"),
            "r": (isinstance(self.r, int) and 1 <= self.r <= R_MAX, f"integers 1..{R_MAX}"),
            "tf_ratio": (0 <= self.tf_ratio <= 1, "[0, 1]"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"knob {name}={getattr(self, name)!r} is out of bounds; allowed {allowed}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def write_knob_csv(rows: list[dict], path: Path) -> None:
    """A knob trajectory (rows of {"step", knob...}) as CSV with a fixed column order."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", *KNOB_NAMES])
        writer.writeheader()
        writer.writerows(rows)
