"""How far a deployed policy's observation lies from what it met in training, and how much of its action
it keeps there.

Training's observation statistics (VecNormalize's running mean and variance over every observation PPO
saw) describe the policy's experience. A feature ``z`` training standard deviations from its training
mean is inside it up to ``INSIDE``; beyond, the policy's action shrinks linearly to 0 at ``OUTSIDE``.
Under residual actions a zero action is the reference (static) knob, so a run unlike anything the
policy learned on (a user's own voice, a longer run, a bigger model) falls back towards static instead
of following actions learned elsewhere; under relative actions it holds the knobs where they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INSIDE, OUTSIDE = 4.0, 8.0  # |z| where the action starts to shrink, and where none of it is left
STD_FLOOR = 1e-2  # a feature constant in training is outside it only when it moves by a visible amount


@dataclass
class Support:
    mean: np.ndarray
    std: np.ndarray
    names: list[str]

    @classmethod
    def of(cls, vec_normalize, names: list[str]) -> "Support":
        """The support that ``vec_normalize``'s frozen training statistics describe, over the observation
        features ``names``."""
        rms = vec_normalize.obs_rms
        return cls(np.array(rms.mean, dtype=np.float64), np.maximum(np.sqrt(rms.var), STD_FLOOR),  # a copy: frozen
                   list(names))

    def check(self, obs: np.ndarray) -> dict:
        """-> {"z": the largest |z| over the features, "feature": its name, "keep": the share of the
        action kept (1 inside the support, 0 at OUTSIDE and beyond)}."""
        z = np.abs((np.asarray(obs, dtype=np.float64) - self.mean) / self.std)
        worst = int(np.argmax(z))
        keep = float(np.clip((OUTSIDE - z[worst]) / (OUTSIDE - INSIDE), 0.0, 1.0))
        return {"z": float(z[worst]), "feature": self.names[worst], "keep": keep}
