"""Tacotron2 training loss with named terms.

``guided_attention_loss`` normalisation (see shared DOMAIN notes): the penalty W·A is **summed
over characters and averaged over valid decoder steps**. The mean over all (step × char) cells
is about N times weaker, which made a weight of 10 too weak to align a proxy model at r=3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tacotron.data import gate_targets
from tacotron.model import ModelOutput


@dataclass
class LossConfig:
    gate_pos_weight: float = 5.0
    ga_sigma: float = 0.4  # Tachibana et al. 2017; coqui and ESPnet use 0.4
    monotonic_weight: float = 0.0  # Regotron's centroid penalty; 0 turns it off
    monotonic_delta: float = 1.0

    def __post_init__(self) -> None:
        if self.monotonic_weight < 0:
            raise ValueError(f"loss.monotonic_weight={self.monotonic_weight} must be >= 0")
        if self.gate_pos_weight <= 0 or self.ga_sigma <= 0:
            raise ValueError(f"loss.gate_pos_weight={self.gate_pos_weight} and loss.ga_sigma={self.ga_sigma} "
                             "must be > 0")


@dataclass
class LossTerms:
    mel: torch.Tensor
    mel_post: torch.Tensor
    gate: torch.Tensor
    guided: torch.Tensor  # unweighted
    monotonic: torch.Tensor  # unweighted
    total: torch.Tensor


def decoder_lengths(mel_lengths: torch.Tensor, r: int) -> torch.Tensor:
    """Valid decoder steps per item: ceil(frames / r)."""
    return (mel_lengths + r - 1) // r


def valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, size]`` bool, True where the index is below the item's length."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def guided_attention_loss(alignments, text_lengths, dec_lengths, sigma: float) -> torch.Tensor:
    """Σ_n W[t,n]·A[t,n], averaged over valid decoder steps; W = 1 − exp(−(n/N − t/T)²/(2σ²)).

    ``alignments`` ``[B, T_dec, N]``; padding (beyond either length) contributes nothing.
    """
    _, t_dec, n_text = alignments.shape
    t = torch.arange(t_dec, device=alignments.device)[None, :, None] / dec_lengths[:, None, None]
    n = torch.arange(n_text, device=alignments.device)[None, None, :] / text_lengths[:, None, None]
    weight = 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma ** 2))
    mask = valid_mask(dec_lengths, t_dec)[:, :, None] & valid_mask(text_lengths, n_text)[:, None, :]
    return (weight * alignments.float() * mask).sum() / dec_lengths.sum()


def monotonic_penalty(alignments, text_lengths, dec_lengths, delta: float) -> torch.Tensor:
    """Regotron (Georgiou et al. 2022): mean over consecutive valid steps of
    ReLU((c_t − c_{t+1})/N + δ/T), with centroids c_t = Σ_n n·A[t, n]; it pushes each step forward."""
    a = alignments.float()
    centroid = (a * torch.arange(a.shape[2], device=a.device)[None, None, :]).sum(2)  # [B, T]
    step = (centroid[:, :-1] - centroid[:, 1:]) / text_lengths[:, None] + delta / dec_lengths[:, None]
    pairs = valid_mask(dec_lengths - 1, a.shape[1] - 1)
    return (torch.relu(step) * pairs).sum() / pairs.sum().clamp(min=1)


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    sq = (pred.float() - target) ** 2 * frame_mask[:, None, :]
    return sq.sum() / (frame_mask.sum() * pred.shape[1])


def tacotron_loss(out: ModelOutput, mels, mel_lengths, text_lengths, r: int, ga_weight: float,
                  cfg: LossConfig) -> LossTerms:
    """Masked mel MSE (pre and post-net), gate BCE per decoder step, weighted guided attention and,
    when ``cfg.monotonic_weight`` > 0, the Regotron monotonic penalty."""
    t = mels.shape[2]
    frame_mask = valid_mask(mel_lengths, t).float()
    mel = _masked_mse(out.mel[:, :, :t], mels, frame_mask)
    mel_post = _masked_mse(out.mel_post[:, :, :t], mels, frame_mask)
    gate = F.binary_cross_entropy_with_logits(
        out.gate.float(), gate_targets(mel_lengths, r, out.gate.shape[1]),
        pos_weight=torch.tensor(cfg.gate_pos_weight, device=mels.device))
    dec_lengths = decoder_lengths(mel_lengths, r)
    guided = guided_attention_loss(out.alignments, text_lengths, dec_lengths, cfg.ga_sigma)
    monotonic = (monotonic_penalty(out.alignments, text_lengths, dec_lengths, cfg.monotonic_delta)
                 if cfg.monotonic_weight > 0 else guided.new_zeros(()))
    total = mel + mel_post + gate + ga_weight * guided + cfg.monotonic_weight * monotonic
    return LossTerms(mel, mel_post, gate, guided, monotonic, total)
