"""Known degradations of a ground-truth log-mel ``[n_mels, T]``, to validate quality figures.

Each figure that scores speech must rank these in the right order before anyone uses it
(tests/test_yardstick.py, benchmarks/yardstick.py). Built on the true mel so that only the
degradation differs; the mean spectrum is the split's mean frame (what a model that learned only
the average would say).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from tacotron.audio import SILENCE_LOG
from tacotron.metrics import spectral_figures



def light_noise(mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of 0.3 nats (about ±2.6 dB) on every log-mel bin."""
    return mel + rng.normal(0.0, 0.3, mel.shape)


def temporal_blur(mel: np.ndarray) -> np.ndarray:
    """A moving average over 9 frames (about 100 ms): over-smoothed, average-like output."""
    return uniform_filter1d(mel, size=9, axis=1, mode="nearest")


def mean_spectrum(mel: np.ndarray, split_mean: np.ndarray) -> np.ndarray:
    """The split's mean frame ``[n_mels]``, held for the utterance's length."""
    return np.repeat(split_mean[:, None], mel.shape[1], axis=1)


def silence(mel: np.ndarray) -> np.ndarray:
    return np.full_like(mel, SILENCE_LOG)


def never_stops(mel: np.ndarray) -> np.ndarray:
    """The true mel, then attention that cycles instead of stopping: the utterance again and again up
    to the free-running decoding limit of 2T + 10 frames."""
    limit = 2 * mel.shape[1] + 10
    return np.tile(mel, (1, -(-limit // mel.shape[1])))[:, :limit]


def words_cut(mel: np.ndarray) -> np.ndarray:
    """The middle third of the frames cut out: about a third of the words skipped."""
    t = mel.shape[1]
    return np.concatenate([mel[:, : t // 3], mel[:, 2 * t // 3:]], axis=1)


def phrase_repeated(mel: np.ndarray) -> np.ndarray:
    """The middle third of the frames spoken twice: a phrase repeated."""
    t = mel.shape[1]
    return np.concatenate([mel[:, : 2 * t // 3], mel[:, t // 3:]], axis=1)


def degrade(name: str, mel: np.ndarray, split_mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mel`` under the degradation ``name`` (one of ``DEGRADATIONS``)."""
    return {"ground_truth": lambda: mel, "light_noise": lambda: light_noise(mel, rng),
            "temporal_blur": lambda: temporal_blur(mel), "mean_spectrum": lambda: mean_spectrum(mel, split_mean),
            "silence": lambda: silence(mel), "never_stops": lambda: never_stops(mel),
            "words_cut": lambda: words_cut(mel), "phrase_repeated": lambda: phrase_repeated(mel)}[name]()


DEGRADATIONS = ("ground_truth", "light_noise", "temporal_blur", "mean_spectrum", "silence", "never_stops",
                "words_cut", "phrase_repeated")


def score_degradations(utts: list, recogniser, seed: int = 0) -> dict[str, dict[str, float]]:
    """{degradation: {"cer", "mcd_dtw_sl", "gv_ratio"}} over ground-truth utterances (``Utterance``s of
    one split); ``recogniser`` is a ``tacotron.asr.Recogniser``."""
    targets = [u.mel.numpy().astype(np.float64) for u in utts]
    split_mean = np.concatenate(targets, axis=1).mean(1)
    rng = np.random.default_rng(seed)
    texts = [u.text for u in utts]
    figures = {}
    for name in DEGRADATIONS:
        mels = [degrade(name, t, split_mean, rng).astype(np.float32) for t in targets]
        figures[name] = {"cer": recogniser.cer(mels, texts), **spectral_figures(mels, targets)}
    return figures
