"""Trainer steps/s for tiny and small at r in {1, 3, 5}, batch 16, and the trainer's overhead
against a bare loop of the same model and loss (forward, backward, clip, step; no stats), measured
side by side in one process. A baseline row trains tiny at r=1 on the issue's original proxy
(2-8 words, as measured before the episode-economics work) for the speed-up of the proxy step.

    python benchmarks/trainer_throughput.py [--steps 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import write_results
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig, load_corpus
from tacotron.knobs import Knobs
from tacotron.loss import tacotron_loss
from tacotron.model import ModelConfig
from tacotron.proxy import ProxySpec, generate_proxy_corpus
from tacotron.trainer import Trainer, TrainerConfig


def bare_steps(trainer: Trainer, n: int) -> float:
    """The same model, data and loss without stats, snapshots or logging -> seconds per step."""
    model, opt, k = trainer.model, trainer.optimizer, trainer.knobs
    start = time.perf_counter()
    for i in range(n):
        b = trainer.sampler.batch(i)
        out = model(b.text, b.text_lengths, b.mels, k.r, k.tf_ratio)
        loss = tacotron_loss(out, b.mels, b.mel_lengths, b.text_lengths, k.r, k.ga_weight, trainer.loss_cfg).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return (time.perf_counter() - start) / n


def trainer_steps(trainer: Trainer, n: int) -> float:
    trainer.step_count = 0  # the same batches as the bare loop
    start = time.perf_counter()
    trainer.run(n)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus(generate_proxy_corpus(ProxySpec()), AudioConfig(), DataConfig(), progress=False)
    long_corpus = load_corpus(generate_proxy_corpus(ProxySpec(max_words=8)), AudioConfig(), DataConfig(),
                              progress=False)
    rows = []
    cases = [("tiny", 1, long_corpus, "2-8 words (baseline)")]
    cases += [(preset, r, corpus, "2-5 words") for preset in ("tiny", "small") for r in (1, 3, 5)]
    for preset, r, data, utterances in cases:
        cfg = ModelConfig.preset(preset, data.frontend.n_symbols)
        tr = Trainer(data, cfg, TrainerConfig(batch_size=16, device="cpu"), knobs=Knobs(r=r, ga_weight=10))
        tr.run(3)  # warm-up
        # interleave the two loops so drift on a shared machine hits both alike
        bare, full = [], []
        for _ in range(2):
            bare.append(bare_steps(tr, args.steps // 2))
            full.append(trainer_steps(tr, args.steps // 2))
        bare_s, full_s = sum(bare) / 2, sum(full) / 2
        rows.append({"model": preset, "r": r, "utterances": utterances, "steps_per_s": 1 / full_s,
                     "utts_per_s": 16 / full_s, "s_per_step": full_s, "bare_s_per_step": bare_s,
                     "overhead_pct": 100 * (full_s / bare_s - 1)})
    baseline = rows[0]["steps_per_s"]
    for row in rows:
        row["speedup_vs_baseline"] = row["steps_per_s"] / baseline
    write_results("trainer_throughput", {"steps": args.steps, "threads": args.threads, "batch_size": 16}, rows,
                  "Trainer throughput (batch 16, proxy en-us@170)",
                  "overhead_pct: trainer.step() against a bare forward/backward/clip/step loop on the same batches.")


if __name__ == "__main__":
    main()
