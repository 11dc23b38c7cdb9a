"""Proxy step speed against the issue's r=1 baseline, side by side in one process.

Every row times the same bare loop (forward, loss, backward, clip, Adam step) on batches of 16:

* **baseline**: the model code as first committed (``REFERENCE_COMMIT``, read from git history),
  tiny at r=1 on the issue's original 2-8 word utterances;
* the current code on the same setting, then on the proxy's 2-5 word utterances at r in {1, 3, 5},
  for tiny and small;
* tiny at r=3 and r=5 as the env runs it: 2 processes of 1 thread each, timed concurrently
  (their summed steps/s: the machine's throughput, which is what PPO's experience costs).

The reference and current models share parameter names, so the script also loads the same
weights into both and reports the largest output difference (dropout off): the faster step must
compute the same function. ``overhead_pct`` is the Trainer's cost over the bare loop (stats,
snapshots) on the same batches.

    python benchmarks/trainer_throughput.py [--steps 30] [--threads 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import write_results
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig, load_corpus
from tacotron.knobs import Knobs
from tacotron.loss import LossConfig, tacotron_loss
from tacotron.model import ModelConfig, Tacotron2
from tacotron.proxy import ProxySpec, generate_proxy_corpus
from tacotron.trainer import Trainer, TrainerConfig

REFERENCE_COMMIT = "d2d85e5"  # tacotron/model.py before the episode-economics work (issue #7)
BATCH = 16


def reference_model_class():
    """``Tacotron2`` from ``REFERENCE_COMMIT``'s model.py, or None without git history."""
    repo = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "show", f"{REFERENCE_COMMIT}:tacotron/model.py"], cwd=repo, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"no reference row: cannot read {REFERENCE_COMMIT} from git ({err})", file=sys.stderr)
        return None
    path = Path(tempfile.mkdtemp()) / "reference_model.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("reference_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module.Tacotron2


def bare_steps(model, optimizer, batches, knobs: Knobs, loss_cfg: LossConfig) -> float:
    """Seconds per step of forward, loss, backward, clip and Adam on ``batches``."""
    start = time.perf_counter()
    for b in batches:
        out = model(b.text, b.text_lengths, b.mels, knobs.r, knobs.tf_ratio)
        loss = tacotron_loss(out, b.mels, b.mel_lengths, b.text_lengths, knobs.r, knobs.ga_weight, loss_cfg).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return (time.perf_counter() - start) / len(batches)


def trainer_steps(trainer: Trainer, n: int) -> float:
    trainer.step_count = 0  # the same batches as the bare loop
    start = time.perf_counter()
    trainer.run(n)
    return (time.perf_counter() - start) / n


def max_output_difference(reference_cls, cfg: ModelConfig, batch) -> float:
    """Largest |difference| of every output of the reference and current model on the same weights."""
    cfg = ModelConfig(**{**vars(cfg), "prenet_dropout": 0.0, "conv_dropout": 0.0})
    current = Tacotron2(cfg).eval()
    reference = reference_cls(cfg).eval()
    reference.load_state_dict(current.state_dict())
    with torch.no_grad():
        outs = [m(batch.text, batch.text_lengths, batch.mels, 3) for m in (reference, current)]
    return max((a - b).abs().max().item() for a, b in zip(*outs))


def warmed_up(model, trainer: Trainer, knobs: Knobs, n: int) -> tuple[list, torch.optim.Optimizer]:
    """The first ``n`` batches of ``trainer``'s sampler and an Adam for ``model``, after two warm-up steps."""
    batches = [trainer.sampler.batch(i) for i in range(n)]
    optimizer = torch.optim.Adam(model.parameters(), lr=knobs.lr)
    bare_steps(model, optimizer, batches[:2], knobs, trainer.loss_cfg)
    return batches, optimizer


def measure(model, trainer: Trainer, knobs: Knobs, steps: int) -> dict:
    """Bare-loop and trainer seconds per step, interleaved so machine drift hits both alike."""
    batches, optimizer = warmed_up(model, trainer, knobs, steps // 2)
    bare, full = [], []
    for _ in range(2):
        bare.append(bare_steps(model, optimizer, batches, knobs, trainer.loss_cfg))
        if model is trainer.model:
            full.append(trainer_steps(trainer, len(batches)))
    bare_s = sum(bare) / len(bare)
    row = {"s_per_step": bare_s, "steps_per_s": 1 / bare_s, "utts_per_s": BATCH / bare_s}
    row["overhead_pct"] = 100 * (sum(full) / len(full) / bare_s - 1) if full else float("nan")
    return row


def build(preset: str, r: int, data) -> tuple[Trainer, Knobs]:
    knobs = Knobs(r=r, ga_weight=10)
    torch.manual_seed(0)
    cfg = ModelConfig.preset(preset, data.frontend.n_symbols)
    return Trainer(data, cfg, TrainerConfig(batch_size=BATCH, device="cpu"), knobs=knobs), knobs


def proxy_corpus(max_words: int = 5):
    return load_corpus(generate_proxy_corpus(ProxySpec(max_words=max_words)), AudioConfig(), DataConfig(),
                       progress=False)


def _parallel_worker(r: int, steps: int, barrier, results) -> None:
    torch.set_num_threads(1)
    trainer, knobs = build("tiny", r, proxy_corpus())
    batches, optimizer = warmed_up(trainer.model, trainer, knobs, steps)
    barrier.wait()  # both processes time the same stretch of wall time
    results.put(bare_steps(trainer.model, optimizer, batches, knobs, trainer.loss_cfg))


def parallel_row(r: int, steps: int, processes: int = 2) -> dict:
    """Summed steps/s of ``processes`` single-thread trainers running at once."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_parallel_worker, args=(r, steps, barrier, results)) for _ in range(processes)]
    for w in workers:
        w.start()
    seconds = [results.get() for _ in workers]
    for w in workers:
        w.join()
    steps_per_s = sum(1 / s for s in seconds)
    return {"code": "current", "model": "tiny", "r": r, "utterances": "2-5 words", "processes": f"{processes}x1 thread",
            "s_per_step": 1 / steps_per_s, "steps_per_s": steps_per_s, "utts_per_s": BATCH * steps_per_s,
            "overhead_pct": float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    short, long = proxy_corpus(), proxy_corpus(max_words=8)
    reference_cls = reference_model_class()
    cases = [("reference", "tiny", 1, long, "2-8 words")] if reference_cls else []
    cases += [("current", "tiny", 1, long, "2-8 words")]
    cases += [("current", preset, r, short, "2-5 words") for preset in ("tiny", "small") for r in (1, 3, 5)]
    rows, difference = [], float("nan")
    for code, preset, r, data, utterances in cases:
        trainer, knobs = build(preset, r, data)
        model = trainer.model
        if code == "reference":
            difference = max_output_difference(reference_cls, trainer.model_cfg, trainer.sampler.batch(0))
            model = reference_cls(trainer.model_cfg)
        rows.append({"code": code, "model": preset, "r": r, "utterances": utterances,
                     "processes": f"1x{args.threads} threads", **measure(model, trainer, knobs, args.steps)})
    rows += [parallel_row(r, args.steps) for r in (3, 5)]
    for row in rows:
        row["speedup_vs_baseline"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    write_results("trainer_throughput",
                  {"steps": args.steps, "threads": args.threads, "batch_size": BATCH,
                   "reference_commit": REFERENCE_COMMIT, "max_output_difference_vs_reference": difference}, rows,
                  f"Proxy step speed (batch {BATCH}, en-us@170, {args.threads} threads)",
                  f"Baseline: row 1 ({rows[0]['code']} code, tiny, r=1, 2-8 words). Bare loop seconds per step; "
                  f"overhead_pct = Trainer over the bare loop. Current vs reference model on the same weights: "
                  f"max output difference {difference:.2e}.")


if __name__ == "__main__":
    main()
