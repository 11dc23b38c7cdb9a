"""Data pipeline speed: espeak-ng proxy generation (audio s per wall s), mel extraction
(audio s per wall s), and cached loading + collation (batches/s), against a tiny training step.

    python benchmarks/data_pipeline.py [--utts 80]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from common import write_results
from tacotron.audio import AudioConfig
from tacotron.data import BatchSampler, DataConfig, load_corpus
from tacotron.knobs import Knobs
from tacotron.model import ModelConfig
from tacotron.proxy import ProxySpec, generate_proxy_corpus
from tacotron.trainer import Trainer, TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TACOTUNE_CACHE"] = tmp  # cold caches
        generate_proxy_corpus(ProxySpec(n_utts=2, seed=99), progress=False)  # imports and JIT warm-up
        t = time.perf_counter()
        root = generate_proxy_corpus(ProxySpec(n_utts=args.utts), progress=False)
        gen_s = time.perf_counter() - t
        audio_s = sum(sf.info(p).duration for p in Path(root, "wavs").glob("*.wav"))
        t = time.perf_counter()
        corpus = load_corpus(root, AudioConfig(), DataConfig(), progress=False)
        mel_s = time.perf_counter() - t
        t = time.perf_counter()
        cached = load_corpus(root, AudioConfig(), DataConfig(), progress=False)
        cached_s = time.perf_counter() - t
        sampler = BatchSampler(cached.train, 16, seed=0)
        t = time.perf_counter()
        n_batches = 200
        for i in range(n_batches):
            sampler.batch(i)
        batch_s = (time.perf_counter() - t) / n_batches
        tr = Trainer(corpus, ModelConfig.preset("tiny", corpus.frontend.n_symbols), TrainerConfig(device="cpu"),
                     knobs=Knobs(r=3))
        tr.run(2)
        t = time.perf_counter()
        tr.run(10)
        step_s = (time.perf_counter() - t) / 10
    rows = [{"stage": "espeak-ng generation", "audio_s_per_wall_s": audio_s / gen_s, "wall_s": gen_s},
            {"stage": "mel extraction (cold cache)", "audio_s_per_wall_s": audio_s / mel_s, "wall_s": mel_s},
            {"stage": "load from mel cache", "audio_s_per_wall_s": audio_s / cached_s, "wall_s": cached_s},
            {"stage": "collate one batch of 16", "audio_s_per_wall_s": float("nan"), "wall_s": batch_s},
            {"stage": "tiny training step, r=3, batch 16", "audio_s_per_wall_s": float("nan"), "wall_s": step_s}]
    write_results("data_pipeline", {"utterances": args.utts, "audio_seconds": audio_s,
                                    "batches_per_s": 1 / batch_s, "batch_share_of_step_pct": 100 * batch_s / step_s},
                  rows, f"Data pipeline ({args.utts} proxy utterances, {audio_s:.0f} s of audio)",
                  f"Collating a batch costs {100 * batch_s / step_s:.1f}% of a tiny r=3 training step.")


if __name__ == "__main__":
    main()
