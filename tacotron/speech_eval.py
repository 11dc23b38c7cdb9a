"""Score any system's speech against a corpus split: ``tacotune eval wavs=DIR data=... split=test``.

Every ``DIR/<utterance id>.wav`` whose id is in the split is scored, whatever made it: the CER of
the corpus's recogniser (``tacotron.asr``), MCD-DTW-SL and the global-variance ratio against the
ground truth, and the recogniser's floor (its CER on the ground-truth audio of the same utterances).
With ``dnsmos=true``, a reference-free secondary column: DNSMOS P.835 OVRL and P.808 (``speechmos``'s
ONNX weights, offline) of the wavs at 16 kHz, next to the same on the ground-truth wavs. It cost 3.5 s
for a 2-second utterance on a busy 2-core CPU, so run checks do not compute it.
"""
from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np

from tacotron.asr import RecogniserConfig, corpus_recogniser
from tacotron.audio import AudioConfig, load_wav, mel_spectrogram
from tacotron.data import DataConfig
from tacotron.metrics import spectral_figures
from tacotron.proxy import ProxyOptions
from tacotron.run import load_data

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class EvalConfig:
    """``wavs``: a folder of ``<utterance id>.wav``; ``data``: a proxy instance 'VOICE@RATE[:SEED]' (it is
    synthesised if missing) or an LJSpeech-layout folder; ``split``: train, val or test."""

    wavs: str = ""
    data: str = ""
    split: str = "test"
    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    audio: AudioConfig = field(default_factory=AudioConfig)
    dataset: DataConfig = field(default_factory=DataConfig)
    asr: RecogniserConfig = field(default_factory=RecogniserConfig)
    dnsmos: bool = False

    def __post_init__(self) -> None:
        for key, what in (("wavs", "a folder of <utterance id>.wav"), ("data", "a proxy instance or an LJSpeech folder")):
            if not getattr(self, key):
                raise ValueError(f"{key}= is required: {what}")
        if self.split not in SPLITS:
            raise ValueError(f"split={self.split!r} must be one of {SPLITS}")


def _matching_wavs(folder: Path, split_ids: set[str], split: str, data: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"wavs={folder} is not a folder")
    found = {p.stem: p for p in sorted(folder.glob("*.wav"))}
    unknown = sorted(set(found) - split_ids)
    if unknown:
        log.warning("skipping %d wavs whose id is not in the %s split of %s: %s", len(unknown), split, data,
                    ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    matched = {i: p for i, p in found.items() if i in split_ids}
    if not matched:
        example = sorted(split_ids)[0]
        raise ValueError(f"no wav in {folder} matches an utterance of the {split} split of {data} "
                         f"({len(split_ids)} utterances, e.g. {example}.wav)")
    return matched


def evaluate_wavs(cfg: EvalConfig, progress: bool = True) -> dict:
    """Score the matching wavs -> the figures, also written to ``<wavs>/eval.json``."""
    corpus = load_data(cfg.data, cfg.proxy, cfg.audio, cfg.dataset, progress)
    utts = {u.utt_id: u for u in getattr(corpus, cfg.split)}
    wavs = _matching_wavs(Path(cfg.wavs), set(utts), cfg.split, cfg.data)
    chosen = [utts[i] for i in wavs]
    # A silent output is bad speech, not bad input: it is scored (as silence), not refused.
    audio = [load_wav(p, cfg.audio.sample_rate, min_samples=cfg.audio.win_length, refuse_silence=False)
             for p in wavs.values()]
    mels = [mel_spectrogram(a, cfg.audio) for a in audio]
    targets = [u.mel.numpy() for u in chosen]
    texts = [u.text for u in chosen]
    recogniser = corpus_recogniser(corpus, cfg.asr, progress)
    result = {"cer": recogniser.cer(mels, texts), **spectral_figures(mels, targets),
              "cer_ground_truth": recogniser.cer(targets, texts), "utterances": len(chosen),
              "missing": len(utts) - len(chosen), "data": cfg.data, "split": cfg.split}
    if cfg.dnsmos:
        truth = [load_wav(corpus.root / "wavs" / f"{u.utt_id}.wav", cfg.audio.sample_rate) for u in chosen]
        result |= {f"dnsmos_{k}": v for k, v in dnsmos(audio, cfg.audio.sample_rate).items()}
        result |= {f"dnsmos_{k}_ground_truth": v for k, v in dnsmos(truth, cfg.audio.sample_rate).items()}
    (Path(cfg.wavs) / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def dnsmos(wavs: list[np.ndarray], sample_rate: int) -> dict[str, float]:
    """Means over clips of DNSMOS P.835 OVRL and P.808 MOS (1-5, higher is better), at 16 kHz."""
    from speechmos import dnsmos as model  # onnxruntime loads only when asked for

    clips = [np.clip(librosa.resample(w, orig_sr=sample_rate, target_sr=16000), -1.0, 1.0) for w in wavs]
    scores = [model.run(c, 16000) for c in clips]
    return {"ovrl": statistics.fmean(float(s["ovrl_mos"]) for s in scores),
            "p808": statistics.fmean(float(s["p808_mos"]) for s in scores)}


def format_table(result: dict) -> str:
    return "\n".join([
        f"{result['utterances']} utterances of the {result['split']} split of {result['data']}"
        + (f" ({result['missing']} without a wav)" if result["missing"] else ""),
        "| figure | value | reading |", "|---|---|---|",
        f"| CER | {result['cer']:.3f} | the recogniser's character error rate; its floor on the ground truth "
        f"is {result['cer_ground_truth']:.3f}, silence scores 1 |",
        f"| MCD-DTW-SL | {result['mcd_dtw_sl']:.2f} dB | mel-cepstral distortion along DTW times the length "
        "ratio; 0 is exact |",
        f"| GV ratio | {result['gv_ratio']:.2f} | per-bin variance over the true one's; 1 is right, "
        "below is over-smoothed |"]
        + [f"| DNSMOS {k.upper()} | {result[f'dnsmos_{k}']:.2f} | reference-free MOS 1-5; the ground truth scores "
           f"{result[f'dnsmos_{k}_ground_truth']:.2f} |" for k in ("ovrl", "p808") if f"dnsmos_{k}" in result])
