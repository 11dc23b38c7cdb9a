"""Proof that the tiny model learns to align on the CPU: train on one espeak-ng proxy voice at
r=3 with guided attention until validation diagonality >= 0.7; write JSON and the alignment PNG.

    python benchmarks/align_proxy.py [--max-steps 600] [--r 3] [--ga-weight 10]
"""
from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from common import RESULTS, write_results  # noqa: E402
from tacotron.audio import AudioConfig  # noqa: E402
from tacotron.data import DataConfig, load_corpus  # noqa: E402
from tacotron.knobs import Knobs  # noqa: E402
from tacotron.model import ModelConfig  # noqa: E402
from tacotron.proxy import ProxySpec, generate_proxy_corpus  # noqa: E402
from tacotron.trainer import Trainer, TrainerConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=800)
    parser.add_argument("--r", type=int, default=3)
    parser.add_argument("--ga-weight", type=float, default=10.0)
    parser.add_argument("--val-every", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(2)
    corpus = load_corpus(generate_proxy_corpus(ProxySpec()), AudioConfig(), DataConfig(), progress=False)
    cfg = ModelConfig.preset("tiny", corpus.frontend.n_symbols)
    knobs = Knobs(r=args.r, ga_weight=args.ga_weight)
    tr = Trainer(corpus, cfg, TrainerConfig(batch_size=16, device="cpu"), knobs=knobs)
    rows, aligned_at, infer_aligned_at, start = [], None, None, time.perf_counter()
    while tr.step_count < args.max_steps:
        tr.run(args.val_every)
        v = tr.validate()
        rows.append({"step": tr.step_count, "wall_s": time.perf_counter() - start, "val_mel_loss": v.mel_loss,
                     "val_diagonality": v.diagonality, "infer_diagonality": v.infer.diagonality,
                     "infer_focus": v.infer.focus, "infer_cer": v.infer.cer, "gate_accuracy": v.gate_accuracy})
        aligned_at = aligned_at or (rows[-1] if v.diagonality >= 0.7 else None)
        if v.infer.diagonality >= 0.7:  # free-running too: the stricter test
            infer_aligned_at = rows[-1]
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.imshow(v.extras["alignment"].numpy().T, origin="lower", aspect="auto", interpolation="none")
            ax.set(xlabel="decoder step", ylabel="token", title=f"free-running alignment, step {tr.step_count}")
            fig.tight_layout()
            fig.savefig(RESULTS / "align_proxy.png", dpi=90)
            plt.close(fig)
            break
    write_results("align_proxy", {"aligned": aligned_at is not None, "steps_to_diagonality_0.7":
                                  aligned_at and aligned_at["step"], "wall_s": aligned_at and aligned_at["wall_s"],
                                  "steps_to_inference_diagonality_0.7": infer_aligned_at and infer_aligned_at["step"],
                                  "inference_wall_s": infer_aligned_at and infer_aligned_at["wall_s"],
                                  "params_millions": sum(p.numel() for p in tr.model.parameters()) / 1e6,
                                  "r": args.r, "ga_weight": args.ga_weight}, rows,
                  f"Tiny Tacotron2 aligning on en-us@170 (r={args.r}, guided attention x{args.ga_weight})")


if __name__ == "__main__":
    main()
