"""The CUDA path, checked where a GPU exists: the small and full models train about 50 steps with AMP
on a proxy corpus, every loss is finite, a checkpoint round-trips exactly, and steps/s are printed.
Run by scripts/gpu_check.sh; exits non-zero on any failure (and when there is no CUDA device)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from tacotron.knobs import Knobs
from tacotron.run import TrainingSetup, build_trainer, load_data
from tacotron.trainer import TrainerConfig

STEPS = 50


def check(model: str) -> dict:
    setup = TrainingSetup(model=model, threads=0, trainer=TrainerConfig(device="cuda", amp=True, batch_size=16))
    corpus = load_data("en-us@170", setup.proxy, setup.audio, setup.dataset, progress=False)
    trainer = build_trainer(setup, corpus)
    trainer.set_knobs(Knobs(r=3, ga_weight=5.0))
    trainer.run(3)  # warm-up: CUDA kernels and the AMP scaler settle
    torch.cuda.synchronize()
    started = time.perf_counter()
    stats = trainer.run(STEPS)
    torch.cuda.synchronize()
    rate = STEPS / (time.perf_counter() - started)
    losses = [s.mel_post for s in stats]
    assert all(torch.isfinite(torch.tensor(losses))), f"{model}: non-finite losses {losses}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ckpt.pt"
        trainer.save(path)
        twin = build_trainer(setup, corpus)
        twin.restore(path)
        for name, tensor in trainer.model.state_dict().items():
            assert torch.equal(tensor, twin.model.state_dict()[name]), f"{model}: {name} differs after restore"
        assert trainer.step().mel_post == twin.step().mel_post, f"{model}: the restored run diverges"
    val = trainer.validate()
    return {"model": model, "steps_per_s": round(rate, 2), "first_loss": losses[0], "last_loss": losses[-1],
            "val_infer_cer": round(val.infer.cer, 3), "amp": trainer.amp}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}")
    for model in ("small", "full"):
        print(check(model))
    print("CUDA path OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
