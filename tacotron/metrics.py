"""Alignment, stop-token and free-running quality metrics; padding is ignored.

Training-window metrics (``alignment_stats``, ``gate_accuracy``) are batch means in [0, 1], 1 best.
Definitions, for item b with T valid decoder steps and N valid tokens, A = alignments[b, :T, :N]:

* ``diagonality``: ``monotonic_diagonality``, the tempo-tolerant figure that free-running checks
  use too: a monotonic alignment with pauses or a tempo change scores near 1, where a fixed band
  around the straight diagonal marked it down to about 0.5.
* ``focus``: mean over steps of max_n A[t, n] (ESPnet's focus rate; coqui's diagonal score).
  At r=3 a sharp alignment has focus near 0.5 because a step spans 1–2 tokens.
* ``monotonicity``: 1 − (backward movement / total movement) of the centroid Σ_n n·A[t, n]
  over consecutive steps; 1 when the centroid never moves. Weighting by distance makes small
  backward jitter cost little while an anti-diagonal scores 0.
* ``coverage``: share of tokens whose total attention Σ_t A[t, n] reaches ½·min(1, T/N).

``gate_accuracy`` is balanced: the mean of the hit rate on each item's last valid step (should
stop) and of the correct-reject rate on its other steps. Plain accuracy would score a stop token
that never fires near 1, since almost every step is a "continue".

Free-running figures (``FreeRunStats``) score a whole split decoded without teacher forcing
against its ground truth and mean the same at every r; benchmarks and the env's reward use them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import torch
from scipy.spatial.distance import cdist

from tacotron.loss import valid_mask


@torch.no_grad()
def alignment_stats(alignments: torch.Tensor, text_lengths: torch.Tensor,
                    decoder_lengths: torch.Tensor) -> dict[str, float]:
    """``alignments`` ``[B, T_dec, N_text]`` with valid counts per item -> dict of batch means:
    ``diagonality`` and the ``attention_shape_stats``."""
    valid = alignments.float().cpu().numpy()
    steps = decoder_lengths.clamp(min=1).tolist()
    diagonality = np.mean([monotonic_diagonality(valid[i, :int(t), :int(n)])
                           for i, (t, n) in enumerate(zip(steps, text_lengths.tolist()))])
    return {"diagonality": float(diagonality), **attention_shape_stats(alignments, text_lengths, decoder_lengths)}


@torch.no_grad()
def attention_shape_stats(alignments: torch.Tensor, text_lengths: torch.Tensor,
                          decoder_lengths: torch.Tensor) -> dict[str, float]:
    """Batch means of ``focus``, ``monotonicity`` and ``coverage`` (tensor ops only: no per-item
    dynamic programme, unlike diagonality)."""
    a = alignments.float()
    _, t_dec, n_text = a.shape
    text_lengths = text_lengths.to(a.device).float()
    dec_lengths = decoder_lengths.to(a.device).float()
    step_mask = valid_mask(dec_lengths, t_dec)  # [B, T]
    token_mask = valid_mask(text_lengths, n_text)  # [B, N]
    a = a * step_mask[:, :, None] * token_mask[:, None, :]
    steps = dec_lengths.clamp(min=1)
    focus = a.max(dim=2).values.sum(1) / steps

    centroid = (a * torch.arange(n_text, device=a.device)[None, None, :]).sum(2)  # [B, T]
    moves = (centroid[:, 1:] - centroid[:, :-1]) * step_mask[:, 1:]
    backward = torch.relu(-moves).sum(1)
    total = moves.abs().sum(1)
    monotonicity = torch.where(total > 0, 1.0 - backward / total.clamp(min=1e-8), torch.ones_like(total))

    visit_threshold = 0.5 * torch.clamp(steps / text_lengths, max=1.0)
    visited = (a.sum(1) >= visit_threshold[:, None]) & token_mask
    coverage = visited.sum(1) / text_lengths
    return {"focus": focus.mean().item(), "monotonicity": monotonicity.mean().item(),
            "coverage": coverage.mean().item()}


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


# ----------------------------------------------------------------------------------------------
# Free-running quality: the same meaning at every reduction factor r (issue #12).

# A run is aligned when a free-running check passes all three, on two consecutive checks.
ALIGNED_DIAGONALITY = 0.8
ALIGNED_STOP_RATE = 0.9
ALIGNED_STOP_ERROR = 0.1  # mean |predicted end − true end| / true length


def monotonic_diagonality(attention: np.ndarray, band: int = 1) -> float:
    """Tempo-tolerant diagonality of one free-running alignment ``[T, N]`` (valid part only), in [0, 1].

    path mass: the best monotonic path p from the first token (t=0) to the last (t=T−1), moving
    0..J tokens per step with J = max(1, ⌈1.5·(N−1)/(T−1)⌉) (pauses and up to about twice the
    average speed), collects the attention within ±``band`` tokens of p(t); divided by T.
    reach: the share of tokens within ±``band`` of some step's most-attended token.
    Score = path mass × reach. Pauses and stretched vowels keep both near 1, where a fixed band
    around the straight diagonal marks them down; stuck attention loses reach, skipping loses reach,
    a blur or an anti-diagonal loses path mass.
    """
    a = np.asarray(attention, dtype=np.float64)
    t_len, n_len = a.shape
    if n_len == 1:
        return float(min(1.0, a.sum() / t_len))
    if t_len == 1:
        return 0.0  # one step cannot travel from the first token to the last
    padded = np.pad(a, ((0, 0), (band, band)))
    band_mass = sum(padded[:, k:k + n_len] for k in range(2 * band + 1))  # [T, N]
    jump = max(1, math.ceil(1.5 * (n_len - 1) / (t_len - 1)))
    best = np.full(n_len, -np.inf)
    best[0] = band_mass[0, 0]
    for t in range(1, t_len):
        reach_from = np.full((jump + 1, n_len), -np.inf)
        for j in range(min(jump, n_len - 1) + 1):
            reach_from[j, j:] = best[:n_len - j]
        best = band_mass[t] + reach_from.max(0)
    path_mass = max(best[-1], 0.0) / t_len
    visited = np.zeros(n_len + 2 * band, dtype=bool)
    for k in range(2 * band + 1):
        visited[a.argmax(1) + k] = True
    reach = visited[band:band + n_len].mean()
    return float(min(1.0, path_mass) * reach)


MCD_COEFFICIENTS = 24  # mel-cepstral coefficients c1..c24 (c0, the energy, is dropped)
_MCD_DB = 10.0 / math.log(10.0) * math.sqrt(2.0)  # per-frame MCD in dB = _MCD_DB · ‖c − ĉ‖


def mel_cepstra(log_mel: np.ndarray) -> np.ndarray:
    """Mel-cepstral coefficients c1..c24 ``[24, T]`` of a natural-log mel ``[n_mels, T]`` (orthonormal
    DCT-II over the mel axis, ``librosa.feature.mfcc`` without liftering)."""
    return librosa.feature.mfcc(S=np.asarray(log_mel, dtype=np.float64), n_mfcc=MCD_COEFFICIENTS + 1,
                                dct_type=2, norm="ortho", lifter=0)[1:]


def mcd_dtw_sl(predicted: np.ndarray, target: np.ndarray) -> float:
    """MCD-DTW-SL in dB of a log-mel ``[n_mels, T_pred]`` against its ground truth ``[n_mels, T]``.

    Mel-cepstral distortion (10/ln 10)·sqrt(2·Σ_d (c_d − ĉ_d)²) over c1..c24, averaged along
    ``librosa.sequence.dtw``'s path, times the length ratio max(T_pred, T)/min(T_pred, T): DTW
    forgives timing, the ratio makes an output that runs on (or stops early) pay. 0 is exact.
    """
    if predicted.shape[1] == 0:
        return math.inf
    pred, true = mel_cepstra(predicted), mel_cepstra(target)
    cost = _MCD_DB * cdist(pred.T, true.T, "euclidean")
    _, path = librosa.sequence.dtw(C=cost, backtrack=True)
    ratio = max(pred.shape[1], true.shape[1]) / min(pred.shape[1], true.shape[1])
    return float(cost[path[:, 0], path[:, 1]].mean() * ratio)


def gv_ratio(predicted: np.ndarray, target: np.ndarray) -> float:
    """Global-variance ratio (Toda and Tokuda 2007): the per-bin variance over time of the predicted
    log-mel over the true one's, averaged over bins. 1 is right; blurred, average-like output scores
    well below 1, silence 0, noise above 1."""
    true_var = np.maximum(np.var(target, axis=1), 1e-6)
    return float(np.mean(np.var(predicted, axis=1) / true_var)) if predicted.shape[1] else 0.0


def spectral_figures(mels: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    """Means over utterances of ``mcd_dtw_sl`` and ``gv_ratio`` (log-mels ``[n_mels, T]`` each)."""
    return {"mcd_dtw_sl": float(np.mean([mcd_dtw_sl(m, t) for m, t in zip(mels, targets)])),
            "gv_ratio": float(np.mean([gv_ratio(m, t) for m, t in zip(mels, targets)]))}


@dataclass
class FreeRunStats:
    """Free-running synthesis of a whole split, scored against its ground truth (means over utterances)."""

    cer: float  # the recogniser's character error rate (``tacotron.asr``), pooled; lower is better
    intelligibility: float  # max(0, 1 − cer): the composite score's speech term
    mcd_dtw_sl: float  # dB, mean over utterances; lower is better
    gv_ratio: float  # mean over utterances; 1 is right, below 1 is over-smoothed
    diagonality: float  # monotonic_diagonality
    focus: float
    monotonicity: float
    coverage: float
    stop_rate: float  # share of utterances whose stop token fired before the decoding limit
    stop_error: float  # mean |predicted end − true end| in frames (the limit counts as the end)
    stop_error_rel: float  # the same, divided by each true length
    stop_score: float  # mean of fired · max(0, 1 − relative stop error)
    utterances: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def free_run_stats(mels: list[np.ndarray], targets: list[np.ndarray], attentions: list[np.ndarray],
                   fired: list[bool], cer: float, window: dict[str, float]) -> FreeRunStats:
    """Per-utterance free-running outputs (mel ``[n_mels, T_pred]``, target ``[n_mels, T]``, attention
    ``[T_dec, N]``, whether the stop token fired) and the split's ``cer`` -> ``FreeRunStats``;
    ``window`` holds the batch means of ``attention_shape_stats`` (focus, monotonicity, coverage)."""
    err = np.array([abs(m.shape[1] - t.shape[1]) for m, t in zip(mels, targets)], dtype=np.float64)
    rel = err / np.array([t.shape[1] for t in targets])
    fired_arr = np.asarray(fired, dtype=np.float64)
    return FreeRunStats(
        cer=cer, intelligibility=max(0.0, 1.0 - cer), **spectral_figures(mels, targets),
        diagonality=float(np.mean([monotonic_diagonality(a) for a in attentions])),
        focus=window["focus"], monotonicity=window["monotonicity"], coverage=window["coverage"],
        stop_rate=float(fired_arr.mean()), stop_error=float(err.mean()), stop_error_rel=float(rel.mean()),
        stop_score=float(np.mean(fired_arr * np.clip(1.0 - rel, 0.0, 1.0))), utterances=len(mels))


def is_aligned(stats: FreeRunStats) -> bool:
    return (stats.diagonality >= ALIGNED_DIAGONALITY and stats.stop_rate >= ALIGNED_STOP_RATE
            and stats.stop_error_rel <= ALIGNED_STOP_ERROR)


def steps_to_align(checks: list[tuple[int, bool]]) -> int | None:
    """Step of the second of the first two consecutive aligned checks ``(step, aligned)``: the run
    is aligned once alignment has held; a single lucky check does not count."""
    for (_, first), (step, second) in zip(checks, checks[1:]):
        if first and second:
            return step
    return None


# The practitioners' checkpoint-picking weights (mel 0.4, attention 0.3, gate 0.3), with the speech
# term measured by intelligibility instead of a mel distance.
COMPOSITE_WEIGHTS = (0.4, 0.3, 0.3)


def composite_score(stats: FreeRunStats, weights=COMPOSITE_WEIGHTS) -> float:
    """Weighted mean of the r-independent free-running figures (intelligibility, diagonality,
    stop_score), in [0, 1]; ``weights`` are normalised to sum to 1."""
    speech, diagonality, stop = weights
    total = speech * stats.intelligibility + diagonality * stats.diagonality + stop * stats.stop_score
    return total / (speech + diagonality + stop)
