"""TensorBoard output of a training run: scalars every step, media at each validation."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from tacotron.audio import AudioConfig, griffin_lim
from tacotron.knobs import Knobs


def _image(x: torch.Tensor) -> np.ndarray:
    """``[H, W]`` -> ``[1, H, W]`` in [0, 1], low rows at the bottom as in alignment plots."""
    x = x.numpy()
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
    return np.flipud(x).copy()[None]


class TrainingLogger:
    def __init__(self, log_dir: Path, audio: AudioConfig):
        self.writer = SummaryWriter(str(log_dir))
        self.audio = audio

    def log_step(self, stats, knobs: Knobs) -> None:
        for key, value in asdict(stats).items():
            if key != "step":
                self.writer.add_scalar(f"train/{key}", float(value), stats.step)
        for key, value in knobs.as_dict().items():
            self.writer.add_scalar(f"knobs/{key}", float(value), stats.step)

    def log_validation(self, stats, step: int) -> None:
        for key, value in stats.flat().items():
            self.writer.add_scalar(f"val/{key}", float(value), step)
        # alignment [T_dec, N] shown with tokens on the y axis, decoder steps on the x axis
        self.writer.add_image("val/alignment", _image(stats.extras["alignment"].T), step)
        mel = stats.extras["mel"]
        self.writer.add_image("val/mel", _image(mel), step)
        if mel.shape[1] * self.audio.hop_length >= self.audio.n_fft:  # too short to invert otherwise
            wav = griffin_lim(mel.numpy(), self.audio)
            self.writer.add_audio("val/audio", torch.from_numpy(wav)[None], step, sample_rate=self.audio.sample_rate)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
