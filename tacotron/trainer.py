"""A plain PyTorch training loop whose knobs can change between any two optimiser steps.

``Trainer.set_knobs`` is the only writer of the optimiser's learning rate, the dropout ``p``,
``r`` and the teacher-forcing ratio. ``step()`` returns a ``StepStats`` computed from tensors the
step already has (no extra forward pass). A non-finite loss or gradient skips the update and
restores the last good in-memory snapshot of model and optimiser; so does a finite loss above
``max_loss`` (an explosion that would otherwise poison Adam's moments).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from tacotron import checkpoint
from tacotron.asr import Recogniser, RecogniserConfig, corpus_recogniser
from tacotron.data import BatchSampler, Corpus, collate
from tacotron.knobs import Knobs
from tacotron.loss import LossConfig, decoder_lengths, tacotron_loss
from tacotron.metrics import (FreeRunStats, alignment_stats, attention_shape_stats, composite_score, free_run_stats,
                              gate_accuracy)
from tacotron.model import ModelConfig, Tacotron2
from tacotron.tb_logging import TrainingLogger

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    batch_size: int = 16
    grad_clip: float = 1.0
    weight_decay: float = 1e-6
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision, only on CUDA
    snapshot_every: int = 10  # steps between in-memory rollback snapshots
    max_loss: float = 1000.0  # a finite loss above this is an explosion, rolled back like a NaN

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"trainer.batch_size={self.batch_size} must be >= 1")
        if self.grad_clip <= 0:
            raise ValueError(f"trainer.grad_clip={self.grad_clip} must be > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device={self.device!r} must be auto, cpu or cuda")
        if self.max_loss <= 0:
            raise ValueError(f"trainer.max_loss={self.max_loss} must be > 0")
        if self.snapshot_every < 1:
            raise ValueError(f"trainer.snapshot_every={self.snapshot_every} must be >= 1")


@dataclass
class StepStats:
    step: int
    mel: float
    mel_post: float
    gate: float
    guided: float
    grad_norm: float  # before clipping; nan when the step was rolled back
    clipped: bool
    gate_accuracy: float
    diagonality: float
    focus: float
    monotonicity: float
    coverage: float
    rolled_back: bool = False


@dataclass
class ValStats:
    """Teacher-forced figures (at the current r) and the free-running ``infer`` figures (r-independent)."""

    mel_loss: float  # teacher-forced post-net MSE
    gate_loss: float
    gate_accuracy: float
    diagonality: float  # teacher-forced
    infer: FreeRunStats  # the whole split decoded free-running: where exposure bias shows
    extras: dict = field(default_factory=dict, repr=False)  # tensors for TensorBoard media

    @property
    def score(self) -> float:
        return composite_score(self.infer)

    def flat(self) -> dict[str, float]:
        """Plain figures, free-running ones prefixed ``infer_``, plus the composite ``score``."""
        tf = {k: getattr(self, k) for k in ("mel_loss", "gate_loss", "gate_accuracy", "diagonality")}
        return tf | {f"infer_{k}": v for k, v in self.infer.as_dict().items()} | {"score": self.score}


def yardstick_key() -> dict:
    """What a free-running check measures and with which recogniser: part of every cache key of
    scored runs and searches, so that none is reused across a change of the figures."""
    return {"figures": [f.name for f in fields(FreeRunStats)], "recogniser": asdict(RecogniserConfig())}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device=cuda but no CUDA device is available; use device=auto or cpu")
    return torch.device(name)


def _rng_states(device: torch.device) -> tuple:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_states(states: tuple, device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda" and states[1] is not None:
        torch.cuda.set_rng_state(states[1], device)


class Trainer:
    def __init__(self, corpus: Corpus, model_cfg: ModelConfig, cfg: TrainerConfig,
                 loss_cfg: LossConfig | None = None, knobs: Knobs | None = None, log_dir: Path | None = None):
        self.corpus, self.model_cfg, self.cfg = corpus, model_cfg, cfg
        self.loss_cfg = loss_cfg or LossConfig()
        self.device = resolve_device(cfg.device)
        self.amp = cfg.amp and self.device.type == "cuda"
        # The trainer's own random stream (initialisation here; dropout and teacher-forcing draws in
        # ``step``), swapped in around each step, so that whoever else draws from torch's global RNG
        # (SB3 sampling actions) neither shifts training nor is shifted by it.
        with self._forked_rng(cfg.seed):
            self.model = Tacotron2(model_cfg).to(self.device)
            self._rng = _rng_states(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
                                          weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sampler = BatchSampler(corpus.train, cfg.batch_size, cfg.seed)
        self.step_count = 0
        self.rollbacks = 0
        self._recogniser: Recogniser | None = None  # loaded (or trained once) at the first free run
        self.logger = TrainingLogger(log_dir, corpus.audio) if log_dir else None
        self.set_knobs(knobs or Knobs())
        self._snapshot = self._take_snapshot()

    def set_knobs(self, knobs: Knobs) -> None:
        if not isinstance(knobs, Knobs):
            raise TypeError(f"set_knobs needs a Knobs, got {type(knobs).__name__}")
        for group in self.optimizer.param_groups:
            group["lr"] = knobs.lr
        self.model.set_dropout(knobs.dropout)
        self.knobs = knobs

    def _take_snapshot(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _roll_back(self) -> None:
        self.model.load_state_dict(self._snapshot["model"])
        self.optimizer.load_state_dict(self._snapshot["optimizer"])
        self.set_knobs(self.knobs)  # the snapshot's param groups carry an old lr
        self.rollbacks += 1
        log.warning("step %d: exploding or non-finite loss or gradient; rolled back to the last good snapshot",
                    self.step_count)

    @property
    def _cuda_devices(self) -> list:
        return [self.device] if self.device.type == "cuda" else []

    @contextlib.contextmanager
    def _own_rng(self):
        with torch.random.fork_rng(devices=self._cuda_devices):
            _set_rng_states(self._rng, self.device)
            try:
                yield
            finally:
                self._rng = _rng_states(self.device)

    def reseed(self, seed: int) -> None:
        """Restart the trainer's own random stream (episodes from one checkpoint differ in dropout)."""
        with self._forked_rng(seed):
            self._rng = _rng_states(self.device)

    def step(self) -> StepStats:
        """One optimiser step at the current knobs, drawing from the trainer's own random stream."""
        with self._own_rng():
            return self._step()

    def _step(self) -> StepStats:
        k = self.knobs
        batch = self.sampler.batch(self.step_count).to(self.device)
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(batch.text, batch.text_lengths, batch.mels, k.r, k.tf_ratio)
            terms = tacotron_loss(out, batch.mels, batch.mel_lengths, batch.text_lengths, k.r, k.ga_weight,
                                  self.loss_cfg)
        self.optimizer.zero_grad(set_to_none=True)
        finite_loss = bool(torch.isfinite(terms.total)) and terms.total.item() <= self.cfg.max_loss
        grad_norm = math.nan
        if finite_loss:
            self.scaler.scale(terms.total).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        # With AMP, an overflowing gradient is the GradScaler's business (it skips and rescales).
        rolled_back = not finite_loss or (not math.isfinite(grad_norm) and not self.amp)
        if rolled_back:
            self._roll_back()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if (self.step_count + 1) % self.cfg.snapshot_every == 0:
                self._snapshot = self._take_snapshot()
        dec_lengths = decoder_lengths(batch.mel_lengths, k.r)
        stats = StepStats(
            step=self.step_count, mel=terms.mel.item(), mel_post=terms.mel_post.item(), gate=terms.gate.item(),
            guided=terms.guided.item(), grad_norm=grad_norm, clipped=grad_norm > self.cfg.grad_clip,
            gate_accuracy=gate_accuracy(out.gate, dec_lengths),
            **alignment_stats(out.alignments.detach(), batch.text_lengths, dec_lengths), rolled_back=rolled_back)
        self.step_count += 1
        if self.logger:
            self.logger.log_step(stats, k)
        return stats

    def run(self, n_steps: int) -> list[StepStats]:
        return [self.step() for _ in range(n_steps)]

    @torch.inference_mode()  # no autograd bookkeeping at all (cheaper than no_grad)
    def validate(self) -> ValStats:
        """Teacher-forced losses on the val split and a free-running decode of the whole val split.

        Runs under a forked, fixed RNG, so it is deterministic and never shifts the training random
        stream (prenet dropout stays on at inference).
        """
        with self._forked_rng():
            totals = self._teacher_forced_val()
            infer, extras = self.free_run(self.corpus.val)
        stats = ValStats(mel_loss=totals["mel"], gate_loss=totals["gate"], gate_accuracy=totals["gate_accuracy"],
                         diagonality=totals["diagonality"], infer=infer, extras=extras)
        if self.logger:
            self.logger.log_validation(stats, self.step_count)
        return stats

    @contextlib.contextmanager
    def _forked_rng(self, seed: int | None = None):
        with torch.random.fork_rng(devices=self._cuda_devices):
            torch.manual_seed(self.cfg.seed + 1 if seed is None else seed)
            yield

    def _teacher_forced_val(self) -> dict[str, float]:
        k, val = self.knobs, self.corpus.val
        self.model.eval()
        totals = {"mel": 0.0, "gate": 0.0, "gate_accuracy": 0.0, "diagonality": 0.0}
        for chunk in self._chunks(val):
            b = collate(chunk).to(self.device)
            out = self.model(b.text, b.text_lengths, b.mels, k.r)
            terms = tacotron_loss(out, b.mels, b.mel_lengths, b.text_lengths, k.r, 0.0, self.loss_cfg)
            dec_lengths = decoder_lengths(b.mel_lengths, k.r)
            share = len(chunk) / len(val)
            totals["mel"] += terms.mel_post.item() * share
            totals["gate"] += terms.gate.item() * share
            totals["gate_accuracy"] += gate_accuracy(out.gate, dec_lengths) * share
            totals["diagonality"] += alignment_stats(out.alignments, b.text_lengths, dec_lengths)["diagonality"] * share
        return totals

    def _chunks(self, utts: list) -> list[list]:
        return [utts[i:i + self.cfg.batch_size] for i in range(0, len(utts), self.cfg.batch_size)]

    @torch.inference_mode()
    def free_run(self, utts: list, seed: int | None = None) -> tuple[FreeRunStats, dict]:
        """Decode ``utts`` without teacher forcing and score them against their ground truth
        -> (stats, the first utterance's alignment and mel for TensorBoard).

        Runs under a forked, fixed RNG, so it is deterministic and never shifts the training random
        stream (prenet dropout stays on at inference); another ``seed`` draws other prenet masks. The
        decoding limit is twice the longest target plus 10 steps; an utterance that reaches it has not
        stopped. The CER comes from the corpus's recogniser reading the predicted post-net log-mels
        directly (no vocoder).
        """
        r = self.knobs.r
        self.model.eval()
        mels, targets, attentions, fired, window = [], [], [], [], {"focus": 0.0, "monotonicity": 0.0, "coverage": 0.0}
        with self._forked_rng(seed):
            for chunk in self._chunks(utts):
                b = collate(chunk).to(self.device)
                limit = int(2 * b.mel_lengths.max().item() / r) + 10
                out, lengths = self.model.infer(b.text, b.text_lengths, r, limit)
                share = len(chunk) / len(utts)
                # diagonality comes per utterance from free_run_stats, so only the shape figures here
                for key, value in attention_shape_stats(out.alignments, b.text_lengths, lengths).items():
                    window[key] += value * share
                for i, u in enumerate(chunk):
                    n = int(lengths[i])
                    mels.append(out.mel_post[i, :, : n * r].float().cpu().numpy())
                    targets.append(u.mel.numpy())
                    attentions.append(out.alignments[i, :n, : len(u.text_ids)].float().cpu().numpy())
                    fired.append(n < limit)
        cer = self.recogniser.cer(mels, [u.text for u in utts])
        stats = free_run_stats(mels, targets, attentions, fired, cer, window)
        return stats, {"alignment": torch.from_numpy(attentions[0]), "mel": torch.from_numpy(mels[0])}

    @property
    def recogniser(self) -> Recogniser:
        if self._recogniser is None:
            self._recogniser = corpus_recogniser(self.corpus)
        return self._recogniser

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "knobs": self.knobs.as_dict(), "step": self.step_count,
            "rollbacks": self.rollbacks, "rng": self._rng[0], "cuda_rng": self._rng[1],
            "config": {"model": asdict(self.model_cfg), "trainer": asdict(self.cfg), "loss": asdict(self.loss_cfg)},
        }

    def save(self, path: Path, extra: dict | None = None) -> None:
        """Write a checkpoint; ``extra`` (JSON-able: a run's history, an episode's state) travels in it,
        so each checkpoint is self-contained and an older one is as good a resume point as the newest."""
        checkpoint.atomic_save(self.state_dict() | {"extra": json.dumps(extra or {})}, path)

    def restore(self, path: Path) -> dict:
        """Continue exactly from a checkpoint written by ``save`` (same corpus and config) -> its extra."""
        state = checkpoint.load(path)
        saved_model = state["config"]["model"]
        if saved_model != asdict(self.model_cfg):
            changed = {f.name for f in fields(ModelConfig)
                       if saved_model.get(f.name) != getattr(self.model_cfg, f.name)}
            raise ValueError(f"checkpoint {path} was made with a different model config (differs in {sorted(changed)})")
        self._load_state(state)
        self._snapshot = self._take_snapshot()
        return json.loads(state.get("extra", "{}"))

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step_count, self.rollbacks = state["step"], state["rollbacks"]
        self._rng = (state["rng"], state["cuda_rng"] if self.device.type == "cuda" else None)
        self.set_knobs(Knobs(**state["knobs"]))

    @contextlib.contextmanager
    def undone(self):
        """Whatever happens to the run inside (steps, a spike) is undone on exit, and nothing is logged: a
        counterfactual leaves the run exactly as it was (weights, optimiser, random streams, step count,
        rollback snapshot)."""
        state, snapshot, logger = copy.deepcopy(self.state_dict()), self._snapshot, self.logger
        self.logger = None
        try:
            yield self
        finally:
            self._load_state(state)
            self._snapshot, self.logger = snapshot, logger
