"""Dense, potential-based reward on a composite validation score.

score(val) = 0.4·mel_score + 0.3·infer_diagonality + 0.3·gate_accuracy, each in [0, 1], with
mel_score = 1 / (1 + val_mel_loss / mel_ref). The weights are the practitioners' checkpoint-picking
composite (mel 0.4, attention 0.3, gate 0.3); the attention term uses free-running inference,
where exposure bias shows.

reward_t = score_t − score_{t−1} − rollback_penalty·rollbacks_t + align_bonus·[first aligned at t]

The score differences telescope, so an episode's return is final score − initial score, plus the
bonus, minus the penalties (Ng et al. 1999: potential shaping keeps the optimal policy).
An unrecoverable divergence terminates the episode with ``divergence_penalty``.
"""
from __future__ import annotations

from dataclasses import dataclass

from tacotron.trainer import ValStats


@dataclass
class RewardConfig:
    mel_ref: float = 1.0
    rollback_penalty: float = 0.05
    divergence_penalty: float = 1.0
    align_bonus: float = 0.2

    def __post_init__(self) -> None:
        if self.mel_ref <= 0:
            raise ValueError(f"reward.mel_ref={self.mel_ref} must be > 0")


def composite_score(val: ValStats, cfg: RewardConfig) -> float:
    mel_score = 1.0 / (1.0 + val.mel_loss / cfg.mel_ref)
    return 0.4 * mel_score + 0.3 * val.infer_diagonality + 0.3 * val.gate_accuracy


def reward_parts(prev_score: float, score: float, rollbacks: int, newly_aligned: bool, diverged: bool,
                 cfg: RewardConfig) -> dict[str, float]:
    """The terms of one step's reward; ``reward`` is their sum."""
    parts = {"score_delta": score - prev_score, "rollback_penalty": -cfg.rollback_penalty * rollbacks,
             "align_bonus": cfg.align_bonus if newly_aligned else 0.0,
             "divergence_penalty": -cfg.divergence_penalty if diverged else 0.0}
    parts["reward"] = sum(parts.values())
    return parts
