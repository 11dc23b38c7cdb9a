"""Dense, potential-based reward on the composite validation score.

score(val) = ``tacotron.metrics.composite_score`` of the whole val split decoded free-running:
0.4·mel_score + 0.3·diagonality + 0.3·stop_score, each in [0, 1] and independent of r. mel_score
is 1 − mel DTW distance / the split's mean-frame distance, so it moves with the mel distance.

reward_t = score_t − score_{t−1} − rollback_penalty·rollbacks_t + align_bonus·[first aligned at t]

This is potential-based shaping F = γΦ(s′) − Φ(s) with Φ = score at γ = 1, which PPO uses
(``controller.train.PPOConfig``): the undiscounted return telescopes to final score − initial score,
plus the bonus, minus the penalties (Ng et al. 1999: the optimal policy is kept). An episode that
starts already aligned (a warm start from the bank) cannot earn the bonus. An unrecoverable
divergence terminates the episode with ``divergence_penalty``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RewardConfig:
    rollback_penalty: float = 0.05
    divergence_penalty: float = 1.0
    align_bonus: float = 0.2


def reward_parts(prev_score: float, score: float, rollbacks: int, newly_aligned: bool, diverged: bool,
                 cfg: RewardConfig) -> dict[str, float]:
    """The terms of one step's reward; ``reward`` is their sum."""
    parts = {"score_delta": score - prev_score, "rollback_penalty": -cfg.rollback_penalty * rollbacks,
             "align_bonus": cfg.align_bonus if newly_aligned else 0.0,
             "divergence_penalty": -cfg.divergence_penalty if diverged else 0.0}
    parts["reward"] = sum(parts.values())
    return parts
