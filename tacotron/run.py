"""A whole training run driven by a knob schedule: data, trainer, validation, checkpoints, resume.

``tacotune train`` and the baselines call ``train_run``. The run folder holds
``checkpoints/step_*.pt``, TensorBoard events, ``knobs.csv`` and ``summary.json``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from tacotron import checkpoint
from tacotron.audio import AudioConfig
from tacotron.data import Corpus, DataConfig, load_corpus
from tacotron.knobs import write_knob_csv
from tacotron.loss import LossConfig
from tacotron.metrics import is_aligned, steps_to_align
from tacotron.model import ModelConfig
from tacotron.proxy import ProxyOptions, generate_proxy_corpus, parse_instance
from tacotron.schedules import Schedule, get_schedule
from tacotron.trainer import Trainer, TrainerConfig, ValStats

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """What every training run needs besides its data and its knob source (shared by the env)."""

    model: str = "tiny"
    threads: int = 2  # torch CPU threads; 0 leaves torch's default
    proxy: ProxyOptions = field(default_factory=ProxyOptions)
    audio: AudioConfig = field(default_factory=AudioConfig)
    dataset: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        ModelConfig.preset(self.model, n_symbols=1)  # fails early on an unknown preset


@dataclass
class RunConfig(TrainingSetup):
    """One training run. ``data`` is a proxy instance 'VOICE@RATE' or an LJSpeech-layout folder."""

    data: str = "en-us@170"
    schedule: str = "hand"
    max_steps: int = 400
    val_every: int = 50
    ckpt_every: int = 100
    out_dir: str = "runs/train"
    resume: bool = False
    tensorboard: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("max_steps", "val_every", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")
        get_schedule(self.schedule)


def load_data(data: str, proxy: ProxyOptions, audio: AudioConfig, dataset: DataConfig,
              progress: bool = True) -> Corpus:
    """An existing folder is read as LJSpeech; anything else must be a proxy instance name."""
    path = Path(data).expanduser()
    if path.exists() or "/" in data:
        return load_corpus(path, audio, dataset, progress)
    if audio.sample_rate != 22050:
        raise ValueError(f"proxy corpora are 22050 Hz; audio.sample_rate={audio.sample_rate} needs a real dataset")
    return load_corpus(generate_proxy_corpus(parse_instance(data, proxy), progress=progress), audio, dataset, progress)


def build_trainer(setup: TrainingSetup, corpus: Corpus, log_dir: Path | None = None,
                  seed: int | None = None) -> Trainer:
    if setup.threads > 0:
        torch.set_num_threads(setup.threads)
    model_cfg = ModelConfig.preset(setup.model, corpus.frontend.n_symbols, setup.audio.n_mels)
    trainer_cfg = setup.trainer if seed is None else replace(setup.trainer, seed=seed)
    return Trainer(corpus, model_cfg, trainer_cfg, setup.loss, log_dir=log_dir)


@dataclass
class RunSummary:
    final: dict  # the last validation's history row
    steps_to_align: int | None  # confirmed by two consecutive aligned validations
    rollbacks: int
    history: list[dict]  # {"step": ..., **ValStats}


def val_record(step: int, val: ValStats) -> dict:
    """One validation as a history row: its flat figures and whether it passes the aligned gate."""
    return {"step": step, **val.flat(), "aligned": is_aligned(val.infer)}


def history_steps_to_align(history: list[dict]) -> int | None:
    return steps_to_align([(h["step"], h["aligned"]) for h in history])


def train_run(cfg: RunConfig, knob_fn: Schedule | None = None, progress: bool = True) -> RunSummary:
    """Train ``cfg.max_steps`` steps, setting knobs from ``knob_fn(step, max_steps, aligned_at)``
    before each step (``aligned_at`` from the validations so far).

    With ``cfg.resume`` the run continues from the newest checkpoint in ``out_dir``; a killed run
    loses at most ``ckpt_every`` steps.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    knob_fn = knob_fn or get_schedule(cfg.schedule)
    corpus = load_data(cfg.data, cfg.proxy, cfg.audio, cfg.dataset, progress)
    trainer = build_trainer(cfg, corpus, out / "tb" if cfg.tensorboard else None)
    history, knob_rows = [], []
    resumed = checkpoint.restore_newest(out / "checkpoints", trainer.restore) if cfg.resume else None
    if resumed is not None:
        path, saved = resumed
        history, knob_rows = saved["history"], saved["knobs"]
        log.info("resumed %s at step %d", path, trainer.step_count)
    bar = tqdm(total=cfg.max_steps, initial=trainer.step_count, desc=f"train {cfg.model} on {cfg.data}",
               disable=not progress)
    while trainer.step_count < cfg.max_steps:
        step = trainer.step_count
        trainer.set_knobs(knob_fn(step, cfg.max_steps, history_steps_to_align(history)))
        knob_rows.append({"step": step, **trainer.knobs.as_dict()})
        stats = trainer.step()
        bar.update(1)
        done = trainer.step_count == cfg.max_steps
        if trainer.step_count % cfg.val_every == 0 or done:
            history.append(val_record(trainer.step_count, trainer.validate()))
            bar.set_postfix(cer=f"{history[-1]['infer_cer']:.3f}",
                            diag=f"{history[-1]['infer_diagonality']:.2f}", loss=f"{stats.mel_post:.3f}")
        if trainer.step_count % cfg.ckpt_every == 0 or done:
            trainer.save(out / "checkpoints" / f"step_{trainer.step_count}.pt",
                         extra={"history": history, "knobs": knob_rows})
    bar.close()
    summary = RunSummary(final=history[-1], steps_to_align=history_steps_to_align(history),
                         rollbacks=trainer.rollbacks, history=history)
    _write_outputs(out, summary, knob_rows)
    if trainer.logger:
        trainer.logger.close()
    return summary


def _write_outputs(out: Path, summary: RunSummary, knob_rows: list[dict]) -> None:
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    write_knob_csv(knob_rows, out / "knobs.csv")
