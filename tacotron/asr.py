"""A small CTC speech recogniser that reads log-mels: the intelligibility yardstick (CER).

No pretrained recogniser can be downloaded here, so we train one, once, and cache it by a hash of
its data and configuration (``$TACOTUNE_CACHE/asr``). It reads the same log-mels ``[n_mels, T]``
(``tacotron.audio.mel_spectrogram``) that Tacotron2 predicts, so a free-running output is scored
directly on its predicted mel, with no vocoder in between; ``tacotune eval`` computes the same mels
from any system's wavs.

Model: 2 convolutions (the second halves the frame rate) and a bidirectional GRU, CTC over
characters (``tacotron.text.transcript``: letters, apostrophe, space), greedy decoding. Training
data: the train split of every proxy instance in ``ASR_INSTANCES`` (the training voices plus
espeak-ng voices and rates that no dev or test set uses), or a user's own dataset's train split,
augmented with random speed, mel-bin shifts (pitch), gain, noise and SpecAugment masks.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tacotron import checkpoint
from tacotron.audio import SILENCE_LOG, AudioConfig
from tacotron.data import Corpus, DataConfig, load_corpus
from tacotron.keys import content_key
from tacotron.proxy import ProxyOptions, cache_root, generate_proxy_corpus, parse_instance
from tacotron.text import transcript

log = logging.getLogger(__name__)
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"  # index 0 of the output is the CTC blank
# The proxy recogniser's weights ship with the package, so that every machine scores with the same
# yardstick (training it again elsewhere would give other floating-point weights) and no run pays
# for its training (17 minutes on 2 cores). A changed configuration trains (and caches) its own.
SHIPPED = Path(__file__).with_name("recognisers")

# The training voices (configs/instances/train.yaml) and espeak-ng voice variants and rates that no
# dev or test set uses (tests/test_asr.py checks both), each speaking sentences of its own.
ASR_INSTANCES = (
    "en-us@150", "en-us@190", "en-us+f3@170", "en-us+m3@160", "en-gb@150", "en-gb@200",
    "en-us+m1@135:10", "en-us+f1@175:11", "en-us+m5@215:12", "en-us+f5@155:13", "en-us+klatt@180:14",
    "en-gb+m2@165:15", "en-gb+f3@185:16", "en-gb+m6@230:17", "en-gb+f5@140:18", "en-gb+klatt2@195:19",
    "en-us+m7@125:20", "en-gb+m4@210:21", "en-us+m2@170:22", "en-us+m4@145:23", "en-us+m6@200:24",
    "en-gb+m1@175:25", "en-gb+f1@155:26", "en-gb+f4@190:27", "en-gb+m7@130:28", "en-us+klatt4@220:29",
)


@dataclass
class RecogniserConfig:
    """What the recogniser is trained on and how; every field is part of its cache key."""

    instances: list[str] = field(default_factory=lambda: list(ASR_INSTANCES))
    channels: int = 160
    hidden: int = 128
    layers: int = 2
    steps: int = 4000
    batch_size: int = 24
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("channels", "hidden", "layers", "steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"asr.{key}={getattr(self, key)} must be >= 1")


class CTCRecogniser(nn.Module):
    """log-mels ``[B, n_mels, T]`` -> CTC log-probabilities ``[B, T', 1 + len(ALPHABET)]``, T' = ⌈T/2⌉."""

    def __init__(self, n_mels: int, channels: int, hidden: int, layers: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels, 1))  # per-bin normalisation from the train set
        self.register_buffer("std", torch.ones(n_mels, 1))
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, channels, 5, padding=2), nn.BatchNorm1d(channels), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.BatchNorm1d(channels), nn.ReLU(), nn.Dropout(0.1))
        self.rnn = nn.GRU(channels, hidden, layers, batch_first=True, bidirectional=True,
                          dropout=0.1 if layers > 1 else 0.0)
        self.out = nn.Linear(2 * hidden, 1 + len(ALPHABET))

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return (lengths - 1) // 2 + 1

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv((mels - self.mean) / self.std).transpose(1, 2)  # [B, T', C]
        out_lengths = self.output_lengths(lengths)
        packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.out(y).log_softmax(-1), out_lengths


def _pad(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([m.shape[1] for m in mels])
    batch = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[1]] = m
    return batch, lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best path: the argmax class per frame, repeats collapsed, blanks dropped."""
    texts = []
    for best, n in zip(log_probs.argmax(-1), lengths):
        ids = torch.unique_consecutive(best[: int(n)]).tolist()
        texts.append(" ".join("".join(ALPHABET[i - 1] for i in ids if i > 0).split()))  # one space between words
    return texts


class Recogniser:
    """A trained ``CTCRecogniser`` in eval mode, for scoring."""

    def __init__(self, model: CTCRecogniser):
        self.model = model.eval()

    @torch.inference_mode()
    def transcribe(self, mels: list[np.ndarray], batch_size: int = 32) -> list[str]:
        """log-mels ``[n_mels, T]`` each -> their greedy transcripts (an empty mel hears nothing)."""
        texts = []
        for start in range(0, len(mels), batch_size):
            chunk = [torch.from_numpy(np.asarray(m, dtype=np.float32)) for m in mels[start:start + batch_size]]
            chunk = [m if m.shape[1] > 0 else torch.full((m.shape[0], 1), SILENCE_LOG) for m in chunk]
            log_probs, lengths = self.model(*_pad(chunk))
            texts.extend(greedy_decode(log_probs, lengths))
        return texts

    def cer(self, mels: list[np.ndarray], texts: list[str]) -> float:
        """Character error rate (``jiwer.cer``, pooled over the utterances) of ``mels`` against the
        transcripts of ``texts``; 0 is perfect, and insertions can take it above 1."""
        return character_error_rate([transcript(t) for t in texts], self.transcribe(mels))


def character_error_rate(references: list[str], hypotheses: list[str]) -> float:
    if not references or not all(references):
        raise ValueError("every reference transcript must hold at least one character")
    return float(jiwer.cer(references, hypotheses))


# ----------------------------------------------------------------------------------------------
# Training, with augmentation (speed, pitch, gain, noise, SpecAugment).

def _augment(mel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random perturbation of a log-mel ``[n_mels, T]``."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand((), generator=gen).item()  # noqa: E731
    n_mels, t = mel.shape
    new_t = max(4, round(t * u(0.8, 1.25)))  # speed
    mel = F.interpolate(mel[None], size=new_t, mode="linear", align_corners=False)[0]
    shift = int(torch.randint(-3, 4, (), generator=gen))  # pitch: formants and harmonics move along the mel axis
    if shift:
        mel = torch.roll(mel, shift, 0)
        edge = slice(0, shift) if shift > 0 else slice(n_mels + shift, n_mels)
        mel[edge] = mel[shift if shift > 0 else n_mels + shift - 1]
    mel = mel + u(-1.0, 1.0) + u(0.0, 0.3) * torch.randn(mel.shape, generator=gen)  # gain, noise
    for _ in range(2):  # SpecAugment: two frequency and two time masks
        width = int(torch.randint(0, 12, (), generator=gen))
        start = int(torch.randint(0, n_mels - width + 1, (), generator=gen))
        mel[start:start + width] = mel.mean()
        width = int(torch.randint(0, max(1, new_t // 10), (), generator=gen))
        start = int(torch.randint(0, new_t - width + 1, (), generator=gen))
        mel[:, start:start + width] = mel.mean()
    return mel


def _targets(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [[ALPHABET.index(c) + 1 for c in transcript(t)] for t in texts]
    return torch.tensor([i for seq in ids for i in seq]), torch.tensor([len(seq) for seq in ids])


def train_recogniser(mels: list[torch.Tensor], texts: list[str], cfg: RecogniserConfig,
                     progress: bool = True) -> CTCRecogniser:
    """Train on (log-mel ``[n_mels, T]``, text) pairs with CTC for ``cfg.steps`` Adam steps."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = CTCRecogniser(mels[0].shape[0], cfg.channels, cfg.hidden, cfg.layers)
    frames = torch.cat(mels, dim=1)
    model.mean.copy_(frames.mean(1, keepdim=True))
    model.std.copy_(frames.std(1, keepdim=True).clamp(min=1e-3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    ctc = nn.CTCLoss(zero_infinity=True)
    model.train()
    bar = tqdm(range(cfg.steps), desc="train recogniser", disable=not progress)
    for _ in bar:
        pick = torch.randint(0, len(mels), (min(cfg.batch_size, len(mels)),), generator=gen).tolist()
        batch, lengths = _pad([_augment(mels[i], gen) for i in pick])
        log_probs, out_lengths = model(batch, lengths)
        targets, target_lengths = _targets([texts[i] for i in pick])
        loss = ctc(log_probs.transpose(0, 1), targets, out_lengths, target_lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        bar.set_postfix(ctc=f"{loss.item():.3f}")
    return model.eval()


# ----------------------------------------------------------------------------------------------
# The cached recogniser of a corpus: proxy corpora share one; a user's dataset gets its own.

def _dataset_key(data: str) -> dict:
    path = Path(data).expanduser().resolve()
    return {"dataset": str(path), "metadata_sha1": hashlib.sha1((path / "metadata.csv").read_bytes()).hexdigest()}


def _cache_path(key: dict) -> Path:
    """The shipped weights when they were trained from exactly this key, else the cache's file."""
    name = f"recogniser_{content_key(key, 16)}.pt"
    return SHIPPED / name if (SHIPPED / name).is_file() else cache_root() / "asr" / name


def _training_pairs(data: str | None, cfg: RecogniserConfig, audio: AudioConfig,
                    dataset: DataConfig) -> tuple[list[torch.Tensor], list[str]]:
    if data is None:
        roots = [generate_proxy_corpus(parse_instance(name, ProxyOptions()), progress=False) for name in cfg.instances]
    else:
        roots = [Path(data).expanduser()]
    train = [u for root in roots for u in load_corpus(root, audio, dataset, progress=False).train]
    return [u.mel for u in train], [u.text for u in train]


def corpus_recogniser(corpus: Corpus, cfg: RecogniserConfig | None = None, progress: bool = True) -> Recogniser:
    """The recogniser that scores ``corpus``'s speech (see ``recogniser_for``)."""
    return recogniser_for(None if corpus.proxy else str(corpus.root), corpus.audio, corpus.cfg, cfg, progress)


def recogniser_for(data: str | None, audio: AudioConfig, dataset: DataConfig,
                   cfg: RecogniserConfig | None = None, progress: bool = True) -> Recogniser:
    """The recogniser that scores speech of ``data``: ``None`` for proxy corpora (trained on the train
    splits of ``cfg.instances``), or an LJSpeech-layout folder (trained on its own train split).
    Trained once and cached by a hash of data, audio, split and configuration (``SHIPPED`` holds the
    default proxy recogniser's)."""
    cfg = cfg or RecogniserConfig()
    if data is None:
        dataset = DataConfig()  # the proxy recogniser's own split, whatever split a run uses
    key = {"asr": asdict(cfg), "audio": asdict(audio), "split": asdict(dataset),
           **({"proxy": asdict(ProxyOptions())} if data is None else _dataset_key(data))}
    if data is not None:
        key["asr"].pop("instances")  # a user's dataset does not use the proxy voices
    path = _cache_path(key)
    if path not in _LOADED:  # one load per process, whatever the number of trainers
        _LOADED[path] = Recogniser(_load_or_train(path, data, cfg, audio, dataset, progress))
    return _LOADED[path]


_LOADED: dict[Path, Recogniser] = {}


def _load_or_train(path: Path, data: str | None, cfg: RecogniserConfig, audio: AudioConfig,
                   dataset: DataConfig, progress: bool) -> CTCRecogniser:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Parallel workers that all need it wait for the one that trains it, then load its file.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            model = CTCRecogniser(audio.n_mels, cfg.channels, cfg.hidden, cfg.layers)
            model.load_state_dict(checkpoint.load(path)["model"])
            return model.eval()
        log.info("training the CER recogniser (once; cached in %s)", path)
        model = train_recogniser(*_training_pairs(data, cfg, audio, dataset), cfg, progress)
        checkpoint.atomic_save({"model": model.state_dict()}, path)
        return model
