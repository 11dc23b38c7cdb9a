"""Dense, potential-based reward on the composite validation score.

score(val) = ``tacotron.metrics.composite_score`` of the whole val split decoded free-running with
``RewardConfig.score_weights`` (default the practitioners' 0.4·intelligibility + 0.3·diagonality +
0.3·stop_score), each figure in [0, 1] and independent of r. intelligibility is 1 − the recogniser's
CER (``tacotron.asr``), floored at 0, so it moves with what a listener would understand. Benchmarks
report the default-weighted score whatever the reward's weights.

reward_t = score_t − score_{t−1} − rollback_penalty·rollbacks_t + align_bonus·[first aligned at t]

This is potential-based shaping F = γΦ(s′) − Φ(s) with Φ = score at γ = 1, which PPO uses
(``controller.train.PPOConfig``): the undiscounted return telescopes to final score − initial score,
plus the bonus, minus the penalties (Ng et al. 1999: the optimal policy is kept). An episode that
starts already aligned (a warm start from the bank) cannot earn the bonus. An unrecoverable
divergence terminates the episode with ``divergence_penalty``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tacotron.metrics import COMPOSITE_WEIGHTS, FreeRunStats, composite_score


@dataclass
class RewardConfig:
    rollback_penalty: float = 0.05
    divergence_penalty: float = 1.0
    align_bonus: float = 0.2
    # Weights of intelligibility, diagonality and stop_score in the potential (normalised to sum to 1).
    score_weights: list[float] = field(default_factory=lambda: list(COMPOSITE_WEIGHTS))

    def __post_init__(self) -> None:
        if len(self.score_weights) != 3 or min(self.score_weights) < 0 or sum(self.score_weights) <= 0:
            raise ValueError(f"reward.score_weights={list(self.score_weights)} must be 3 weights (intelligibility, "
                             "diagonality, stop) >= 0 with a positive sum")

    def score(self, stats: FreeRunStats) -> float:
        """The potential Φ: the free-running figures weighted by ``score_weights``."""
        return composite_score(stats, self.score_weights)


def reward_parts(prev_score: float, score: float, rollbacks: int, newly_aligned: bool, diverged: bool,
                 cfg: RewardConfig) -> dict[str, float]:
    """The terms of one step's reward; ``reward`` is their sum."""
    parts = {"score_delta": score - prev_score, "rollback_penalty": -cfg.rollback_penalty * rollbacks,
             "align_bonus": cfg.align_bonus if newly_aligned else 0.0,
             "divergence_penalty": -cfg.divergence_penalty if diverged else 0.0}
    parts["reward"] = sum(parts.values())
    return parts
