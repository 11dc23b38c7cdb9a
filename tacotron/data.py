"""LJSpeech-layout datasets (``metadata.csv`` + ``wavs/``), mel caching, batching and padding.

Every utterance is validated on load. Bad rows are skipped and counted in a ``LoadReport``
(one warning with the counts), never dropped silently; a dataset with nothing usable left is
an error. Mels are cached as ``.npy`` under a folder keyed by ``AudioConfig.cache_key()``.
"""
from __future__ import annotations

import csv
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tacotron.audio import AudioConfig, load_wav, mel_spectrogram
from tacotron.keys import content_key
from tacotron.proxy import PROXY_MARKER, cache_root
from tacotron.text import TextFrontend, normalize, transcript

log = logging.getLogger(__name__)
R_MAX = 6  # largest reduction factor the model supports


@dataclass
class DataConfig:
    """How a dataset folder becomes train, val and test utterances.

    Val is what training, the env and the policy observe; test is scored only by the benchmarks.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_frames: int = 800
    text_mode: str = "chars"
    strict_text: bool = False
    split_seed: int = 0

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, key) < 0.5:
                raise ValueError(f"data.{key}={getattr(self, key)} must be in (0, 0.5)")
        if self.max_frames < R_MAX:
            raise ValueError(f"data.max_frames={self.max_frames} must be >= {R_MAX}")


@dataclass
class Utterance:
    utt_id: str
    text: str  # normalised (``tacotron.text.normalize``)
    text_ids: torch.Tensor  # [N] long
    mel: torch.Tensor  # [n_mels, T] float32


@dataclass
class LoadReport:
    """Counts of what loading skipped or fixed, for one clear warning."""

    loaded: int = 0
    cache_hits: int = 0
    missing_wav: int = 0
    corrupt_wav: int = 0
    empty_text: int = 0
    too_long: int = 0
    unknown_symbols: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "id: reason" for every row left out

    def refuse(self, kind: str, reason: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.refused.append(reason)

    def problems(self) -> str:
        parts = [f"{n} {name.replace('_', ' ')}" for name, n in
                 (("missing_wav", self.missing_wav), ("corrupt_wav", self.corrupt_wav),
                  ("empty_text", self.empty_text), ("too_long", self.too_long)) if n]
        if self.unknown_symbols:
            parts.append(f"unknown symbols dropped {self.unknown_symbols}")
        return ", ".join(parts)


@dataclass
class Corpus:
    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]
    frontend: TextFrontend
    report: LoadReport
    audio: AudioConfig
    root: Path
    cfg: DataConfig
    proxy: bool = False  # an espeak-ng proxy corpus: scored by the shared proxy recogniser (``tacotron.asr``)


def _read_metadata(root: Path) -> list[tuple[str, str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"dataset folder {root} has no metadata.csv (LJSpeech layout: id|text|normalized_text)")
    rows = []
    with meta.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE):
            if row:
                # LJSpeech's third column is the normalised text; fall back to the raw one.
                rows.append((row[0], (row[2] if len(row) > 2 and row[2].strip() else row[1] if len(row) > 1 else "")))
    return rows


def _mel_cache_dir(root: Path, audio: AudioConfig) -> Path:
    return cache_root() / "mels" / content_key(str(root.resolve()), 12) / audio.cache_key()


def _load_mel(wav_path: Path, cache: Path, audio: AudioConfig, report: LoadReport) -> np.ndarray:
    cached = cache / f"{wav_path.stem}.npy"
    if cached.exists():
        report.cache_hits += 1
        return np.load(cached)
    mel = mel_spectrogram(load_wav(wav_path, audio.sample_rate, min_samples=audio.win_length), audio)
    tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.npy")  # per process: parallel envs share the cache
    np.save(tmp, mel)
    tmp.replace(cached)  # atomic: an interrupted run never leaves a truncated cache file
    return mel


def load_corpus(root: Path, audio: AudioConfig, cfg: DataConfig, progress: bool = True) -> Corpus:
    """Load, validate and split an LJSpeech-layout folder (deterministic in ``cfg.split_seed``)."""
    root = Path(root)
    rows = _read_metadata(root)
    cache = _mel_cache_dir(root, audio)
    cache.mkdir(parents=True, exist_ok=True)
    frontend = TextFrontend(mode=cfg.text_mode, strict=cfg.strict_text)
    report = LoadReport()
    utts = []
    for utt_id, text in tqdm(rows, desc=f"loading {root.name}", disable=not progress):
        wav_path = root / "wavs" / f"{utt_id}.wav"
        if not transcript(text):
            report.refuse("empty_text", f"{utt_id}: its transcript {text!r} holds no word")
            continue
        if not wav_path.is_file():
            report.refuse("missing_wav", f"{utt_id}: {wav_path} does not exist")
            continue
        try:
            mel = _load_mel(wav_path, cache, audio, report)
        except ValueError as err:
            report.refuse("corrupt_wav", f"{utt_id}: {err}")
            continue
        if mel.shape[1] > cfg.max_frames:
            report.refuse("too_long", f"{utt_id}: {mel.shape[1]} frames, above data.max_frames={cfg.max_frames}")
            continue
        utts.append(Utterance(utt_id, normalize(text), torch.tensor(frontend.encode(text)), torch.from_numpy(mel)))
    report.loaded = len(utts)
    report.unknown_symbols = dict(frontend.unknown_counts)
    if report.problems():
        log.warning("dataset %s: skipped or changed %s; %d usable", root, report.problems(), len(utts))
        for reason in report.refused:
            log.warning("left out %s", reason)
    if len(utts) < 3:
        raise ValueError(f"dataset {root} has {len(utts)} usable utterances of {len(rows)} "
                         f"({report.problems() or 'no rows'}); need at least 3 (train, val and test)")
    order = sorted(range(len(utts)), key=lambda i: utts[i].utt_id)
    random.Random(cfg.split_seed).shuffle(order)
    n_test = max(1, round(cfg.test_fraction * len(utts)))
    n_val = max(1, round(cfg.val_fraction * len(utts)))
    split = [utts[i] for i in order]
    return Corpus(train=split[n_test + n_val:], val=split[n_test:n_test + n_val], test=split[:n_test],
                  frontend=frontend, report=report, audio=audio, root=root, cfg=cfg,
                  proxy=(root / PROXY_MARKER).is_file())


@dataclass
class Batch:
    """Padded tensors. Mel length is padded to a multiple of ``R_MAX``."""

    text: torch.Tensor  # [B, N] long
    text_lengths: torch.Tensor  # [B]
    mels: torch.Tensor  # [B, n_mels, T]
    mel_lengths: torch.Tensor  # [B]
    gate: torch.Tensor  # [B, T], 1 from the last real frame on

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in
                       (self.text, self.text_lengths, self.mels, self.mel_lengths, self.gate)))


def gate_targets(mel_lengths: torch.Tensor, r: int, n_steps: int) -> torch.Tensor:
    """Stop targets ``[B, n_steps]`` for decoder steps of ``r`` frames: 1 once a step reaches the last frame."""
    step_end = (torch.arange(n_steps, device=mel_lengths.device) + 1) * r
    return (step_end[None, :] >= mel_lengths[:, None]).float()


def collate(utts: list[Utterance], pad_multiple: int = R_MAX) -> Batch:
    text_lengths = torch.tensor([len(u.text_ids) for u in utts])
    mel_lengths = torch.tensor([u.mel.shape[1] for u in utts])
    n_mels = utts[0].mel.shape[0]
    t_max = -(-int(mel_lengths.max()) // pad_multiple) * pad_multiple
    text = torch.zeros(len(utts), int(text_lengths.max()), dtype=torch.long)
    mels = torch.zeros(len(utts), n_mels, t_max)
    for i, u in enumerate(utts):
        text[i, : len(u.text_ids)] = u.text_ids
        mels[i, :, : u.mel.shape[1]] = u.mel
    return Batch(text, text_lengths, mels, mel_lengths, gate_targets(mel_lengths, 1, t_max))


class BatchSampler:
    """Seeded, stateless batch order: the batch at a step depends only on (seed, step).

    Statelessness makes resume exact without saving sampler state. Each epoch shuffles, then
    sorts within windows of ``bucket`` batches by length, so decoder loops waste fewer padded steps.
    """

    def __init__(self, utts: list[Utterance], batch_size: int, seed: int, bucket: int = 4):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.utts, self.batch_size, self.seed, self.bucket = utts, min(batch_size, len(utts)), seed, bucket
        self.batches_per_epoch = len(utts) // self.batch_size
        self._epoch, self._order = -1, []

    def batch(self, step: int) -> Batch:
        epoch, pos = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self._epoch_order(epoch)
        return collate(self._order[pos])

    def _epoch_order(self, epoch: int) -> list[list[Utterance]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.utts), generator=gen).tolist()
        window = self.batch_size * self.bucket
        perm = [i for s in range(0, len(perm), window)
                for i in sorted(perm[s:s + window], key=lambda i: self.utts[i].mel.shape[1])]
        size = self.batch_size
        batches = [perm[s:s + size] for s in range(0, self.batches_per_epoch * size, size)]
        batch_order = torch.randperm(len(batches), generator=gen).tolist()
        return [[self.utts[i] for i in batches[b]] for b in batch_order]
