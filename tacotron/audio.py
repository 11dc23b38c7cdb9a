"""Audio I/O and log-mel features with NVIDIA tacotron2's parameters."""
from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from tacotron.keys import content_key

MEL_VERSION = 2  # bump when mel_spectrogram's output changes, so caches of the old one are not reused


@dataclass
class AudioConfig:
    """STFT and mel parameters (NVIDIA tacotron2 defaults)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_clamp: float = 1e-5

    def __post_init__(self) -> None:
        for key in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            if getattr(self, key) <= 0:
                raise ValueError(f"audio.{key}={getattr(self, key)} must be > 0")
        if self.win_length > self.n_fft:
            raise ValueError(f"audio.win_length={self.win_length} must be <= audio.n_fft={self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"audio.fmin={self.fmin}, audio.fmax={self.fmax} must satisfy "
                             f"0 <= fmin < fmax <= sample_rate/2={self.sample_rate / 2}")

    def cache_key(self) -> str:
        """Hash of every parameter and of the mel code's version, so neither reuses a stale mel cache."""
        return content_key({**asdict(self), "mel_version": MEL_VERSION}, 12)

    def _mel_basis(self) -> np.ndarray:
        return librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels,
                                   fmin=self.fmin, fmax=self.fmax)


SILENCE_PEAK = 1e-4  # -80 dBFS: nothing a recording of speech stays below
SILENCE_LOG = float(np.log(AudioConfig.log_clamp))  # silence in a log-mel: the clamp's level


def _declared_frames(path: Path) -> int | None:
    """The sample count a PCM wav's header declares (None where ``wave`` cannot parse the header)."""
    try:
        with wave.open(str(path)) as fh:
            return fh.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


def load_wav(path: Path, sample_rate: int, min_samples: int = 1, refuse_silence: bool = True) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``; resampled with librosa when the file differs.

    Raises ``ValueError`` naming the file and the reason for a file that is unreadable, truncated
    (fewer samples than its header declares), empty, shorter than ``min_samples`` (at
    ``sample_rate``) or, with ``refuse_silence``, silent (peak below -80 dBFS).
    """
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"cannot read wav {path}: {err}") from err
    declared = _declared_frames(path)
    if declared is not None and declared > len(wav):
        raise ValueError(f"wav {path} is truncated: its header declares {declared} samples, the file holds {len(wav)}")
    wav = wav.mean(axis=1)
    if wav.size == 0:
        raise ValueError(f"wav {path} holds no samples")
    if sr != sample_rate:
        wav = librosa.resample(wav, orig_sr=sr, target_sr=sample_rate)
    if wav.size < min_samples:
        raise ValueError(f"wav {path} is too short: {wav.size} samples at {sample_rate} Hz, "
                         f"fewer than the {min_samples} one analysis window needs")
    if refuse_silence and np.abs(wav).max() < SILENCE_PEAK:
        raise ValueError(f"wav {path} is silent (peak {np.abs(wav).max():.1e}, below -80 dBFS)")
    return wav


def mel_spectrogram(wav: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Log-magnitude mel spectrogram, ``[n_mels, T]`` float32, log of max(mel, log_clamp).

    The mel projection is an ``einsum`` in float64, not a BLAS product: a float32 matmul sums in an
    order that depends on the BLAS thread count, and its 1e-6 differences were enough to move a
    1,000-step run's final CER by 0.04, so a mel cache filled by a 1-thread worker and one filled by a
    2-thread process gave other figures (``MEL_VERSION`` 2)."""
    spec = np.abs(librosa.stft(wav, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                               win_length=cfg.win_length, center=True))
    mel = np.einsum("mf,ft->mt", cfg._mel_basis().astype(np.float64), spec.astype(np.float64))
    return np.log(np.maximum(mel, cfg.log_clamp)).astype(np.float32)


def griffin_lim(log_mel: np.ndarray, cfg: AudioConfig, n_iter: int = 32) -> np.ndarray:
    """Audio from a log-mel ``[n_mels, T]`` (for TensorBoard samples, not for quality)."""
    return librosa.feature.inverse.mel_to_audio(
        np.exp(log_mel), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, fmin=cfg.fmin, fmax=cfg.fmax, power=1.0, n_iter=n_iter)
