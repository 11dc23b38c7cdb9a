"""Alignment and stop-token metrics. All are batch means in [0, 1], 1 best; padding is ignored.

Definitions, for item b with T valid decoder steps and N valid tokens, A = alignments[b, :T, :N]:

* ``diagonality``: mean over steps of the attention mass within the band |c_n − c_t| ≤ w, where
  c_n = (n + ½)/N and c_t = (t + ½)/T are relative positions and w = max(0.1, 1/N). A uniform
  alignment scores about 2w (≈ 0.2), unlike the guided-attention-weighted mass, which gives a
  uniform alignment about 0.7.
* ``focus``: mean over steps of max_n A[t, n] (ESPnet's focus rate; coqui's diagonal score).
  At r=3 a sharp alignment has focus near 0.5 because a step spans 1–2 tokens.
* ``monotonicity``: 1 − (backward movement / total movement) of the centroid Σ_n n·A[t, n]
  over consecutive steps; 1 when the centroid never moves. Weighting by distance makes small
  backward jitter cost little while an anti-diagonal scores 0.
* ``coverage``: share of tokens whose total attention Σ_t A[t, n] reaches ½·min(1, T/N).

``gate_accuracy`` is balanced: the mean of the hit rate on each item's last valid step (should
stop) and of the correct-reject rate on its other steps. Plain accuracy would score a stop token
that never fires near 1, since almost every step is a "continue".
"""
from __future__ import annotations

import torch

from tacotron.loss import valid_mask

# A run counts as aligned once validation reaches both (the env's steps_to_align uses these).
ALIGNED_DIAGONALITY = 0.8
ALIGNED_GATE_ACCURACY = 0.95


def is_aligned(val_diagonality: float, val_gate_accuracy: float) -> bool:
    return val_diagonality >= ALIGNED_DIAGONALITY and val_gate_accuracy >= ALIGNED_GATE_ACCURACY


@torch.no_grad()
def alignment_stats(alignments: torch.Tensor, text_lengths: torch.Tensor,
                    decoder_lengths: torch.Tensor) -> dict[str, float]:
    """``alignments`` ``[B, T_dec, N_text]`` with valid counts per item -> dict of batch means."""
    a = alignments.float()
    b, t_dec, n_text = a.shape
    text_lengths = text_lengths.to(a.device).float()
    dec_lengths = decoder_lengths.to(a.device).float()
    step_mask = valid_mask(dec_lengths, t_dec)  # [B, T]
    token_mask = valid_mask(text_lengths, n_text)  # [B, N]
    a = a * step_mask[:, :, None] * token_mask[:, None, :]
    steps = dec_lengths.clamp(min=1)

    c_t = (torch.arange(t_dec, device=a.device)[None, :] + 0.5) / steps[:, None]  # [B, T]
    c_n = (torch.arange(n_text, device=a.device)[None, :] + 0.5) / text_lengths[:, None]  # [B, N]
    width = torch.clamp(1.0 / text_lengths, min=0.1)[:, None, None]
    band = (c_n[:, None, :] - c_t[:, :, None]).abs() <= width
    diagonality = (a * band).sum((1, 2)) / steps
    focus = a.max(dim=2).values.sum(1) / steps

    centroid = (a * torch.arange(n_text, device=a.device)[None, None, :]).sum(2)  # [B, T]
    moves = (centroid[:, 1:] - centroid[:, :-1]) * step_mask[:, 1:]
    backward = torch.relu(-moves).sum(1)
    total = moves.abs().sum(1)
    monotonicity = torch.where(total > 0, 1.0 - backward / total.clamp(min=1e-8), torch.ones_like(total))

    visit_threshold = 0.5 * torch.clamp(steps / text_lengths, max=1.0)
    visited = (a.sum(1) >= visit_threshold[:, None]) & token_mask
    coverage = visited.sum(1) / text_lengths
    return {"diagonality": diagonality.mean().item(), "focus": focus.mean().item(),
            "monotonicity": monotonicity.mean().item(), "coverage": coverage.mean().item()}


@torch.no_grad()
def gate_accuracy(gate_logits: torch.Tensor, decoder_lengths: torch.Tensor, threshold: float = 0.5) -> float:
    """Balanced stop-token accuracy over valid steps; ``gate_logits`` ``[B, T_dec]``."""
    fires = torch.sigmoid(gate_logits.float()) > threshold
    lengths = decoder_lengths.to(fires.device)
    last = (lengths - 1).clamp(min=0)
    hit_rate = fires.gather(1, last[:, None]).float().mean()
    before_last = valid_mask(last, fires.shape[1])
    correct_reject = ((~fires) & before_last).sum() / before_last.sum().clamp(min=1)
    return 0.5 * (hit_rate + correct_reject).item()
