"""Proof that the quality figures measure speech, before anyone uses them (issue #27).

1. The recogniser's range on every dev and test corpus (test split): its floor (CER on the ground
   truth) and ceiling (mean spectrum, silence), and every figure on the known degradations
   (``tacotron.degradations``).
2. A learning curve: one static run from scratch on a dev voice, every figure on that voice's
   test split decoded free-running at steps 20, 300 and 1,500.

    python benchmarks/yardstick.py [--curve-steps 20 300 1500] [--curve-voice en-gb-x-rp@175:1]
"""
from __future__ import annotations

import argparse
import time

import torch

from common import write_results
from env.instances import load_instance_set
from tacotron.asr import corpus_recogniser
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig
from tacotron.degradations import score_degradations
from tacotron.model import ModelConfig
from tacotron.proxy import ProxyOptions
from tacotron.run import load_data
from tacotron.trainer import Trainer, TrainerConfig


def _corpus(name: str):
    return load_data(name, ProxyOptions(), AudioConfig(), DataConfig(), progress=False)


def degradation_rows(instances: list[str]) -> list[dict]:
    rows = []
    for name in instances:
        corpus = _corpus(name)
        for degradation, figs in score_degradations(corpus.test, corpus_recogniser(corpus)).items():
            rows.append({"corpus": name, "degradation": degradation, **figs})
    return rows


def scoring_seconds(instance: str, utterances: int = 16, repeats: int = 5) -> float:
    """Best-of-``repeats`` wall time of the recogniser's CER on ``utterances`` test utterances, one thread."""
    corpus = _corpus(instance)
    recogniser = corpus_recogniser(corpus)
    utts = (corpus.test * utterances)[:utterances]
    mels, texts = [u.mel.numpy() for u in utts], [u.text for u in utts]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        recogniser.cer(mels, texts)
        times.append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    return min(times)


def learning_curve(voice: str, steps: list[int]) -> list[dict]:
    corpus = _corpus(voice)
    trainer = Trainer(corpus, ModelConfig.preset("tiny", corpus.frontend.n_symbols), TrainerConfig(device="cpu"))
    rows, start = [], time.perf_counter()
    for step in steps:
        trainer.run(step - trainer.step_count)
        stats, _ = trainer.free_run(corpus.test)
        rows.append({"step": step, "cer": stats.cer, "mcd_dtw_sl": stats.mcd_dtw_sl, "gv_ratio": stats.gv_ratio,
                     "diagonality": stats.diagonality, "stop_rate": stats.stop_rate,
                     "wall_s": time.perf_counter() - start})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curve-steps", type=int, nargs="+", default=[20, 300, 1500])
    parser.add_argument("--curve-voice", default="en-gb-x-rp@175:1")
    args = parser.parse_args()
    torch.set_num_threads(2)
    instances = load_instance_set("heldout") + load_instance_set("dev2")
    rows = degradation_rows(instances)
    cer_16_s = scoring_seconds(instances[0])
    curve = learning_curve(args.curve_voice, args.curve_steps)
    write_results("yardstick_curve", {"voice": args.curve_voice}, curve,
                  f"Learning curve of one static run (tiny model) on {args.curve_voice}, test split free-running",
                  "Every figure should improve with training: CER and MCD-DTW-SL down, GV ratio towards 1.")
    write_results("yardstick", {"instances": instances, "cer_16_utterances_one_thread_s": cer_16_s}, rows,
                  "The quality figures on known degradations of the ground-truth test split",
                  "CER: the recogniser (tacotron/asr.py) on the log-mels; ground_truth is its floor. MCD-DTW-SL "
                  "in dB; GV ratio 1 is right. Degradations: tacotron/degradations.py. The recogniser scores 16 "
                  f"utterances in {cer_16_s:.3f} s on one CPU thread.")


if __name__ == "__main__":
    main()
