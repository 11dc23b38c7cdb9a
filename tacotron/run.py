"""A whole training run driven by a knob schedule: data, trainer, validation, checkpoints, resume.

``tacotune train`` calls ``train_run``. The run folder holds
``checkpoints/step_*.pt``, TensorBoard events, ``knobs.csv`` and ``summary.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from tacotron.audio import AudioConfig
from tacotron.data import Corpus, DataConfig, load_corpus
from tacotron.driver import drive
from tacotron.knobs import write_knob_csv
from tacotron.loss import LossConfig
from tacotron.model import ModelConfig
from tacotron.proxy import ProxyOptions, generate_proxy_corpus, parse_instance
from tacotron.schedules import Schedule, get_schedule
from tacotron.trainer import Trainer, TrainerConfig


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


def train_run(cfg: RunConfig, knob_fn: Schedule | None = None, progress: bool = True) -> RunSummary:
    """Train ``cfg.max_steps`` steps, setting knobs from ``knob_fn(step, max_steps, aligned_at)`` (default:
    the ``cfg.schedule`` named) before each step (``tacotron.driver``).

    With ``cfg.resume`` the run continues from the newest checkpoint in ``out_dir``; a killed run
    loses at most ``ckpt_every`` steps.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_data(cfg.data, cfg.proxy, cfg.audio, cfg.dataset, progress)
    trainer = build_trainer(cfg, corpus, out / "tb" if cfg.tensorboard else None)

    def show(bar, row: dict, stats) -> None:
        bar.set_postfix(cer=f"{row['infer_cer']:.3f}", diag=f"{row['infer_diagonality']:.2f}", loss=f"{stats.mel_post:.3f}")
    state = drive(trainer, knob_fn or get_schedule(cfg.schedule), cfg.max_steps, cfg.val_every, cfg.ckpt_every,
                  out / "checkpoints", resume=cfg.resume, on_validation=show, desc=f"train {cfg.model} on {cfg.data}",
                  progress=progress)
    summary = RunSummary(final=state.history[-1], steps_to_align=state.aligned_at, rollbacks=trainer.rollbacks,
                         history=state.history)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    write_knob_csv(state.knobs, out / "knobs.csv")
    if trainer.logger:
        trainer.logger.close()
    return summary
