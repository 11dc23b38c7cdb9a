"""The env's overhead over the bare trainer: the same K-step windows run through ``env.step`` and
through ``trainer.run(K)`` in one process, validation off (val_every beyond the episode), plus the
wall time of one default episode (300 steps, K=20, validation every decision).

    python benchmarks/env_overhead.py [--windows 6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import write_results
from env.training_env import EnvConfig, TrainingEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    k = 20
    cfg = EnvConfig(instances=["en-us@170"], episode_steps=10_000, steps_per_action=k, val_every=10_000)
    env = TrainingEnv(cfg)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    env.step(zero)  # warm-up
    env_s, bare_s = [], []
    for _ in range(args.windows):  # interleaved so machine drift hits both alike
        t = time.perf_counter()
        env.step(zero)
        env_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        env.trainer.run(k)
        bare_s.append(time.perf_counter() - t)
    overhead = 100 * (sum(env_s) / sum(bare_s) - 1)
    episode_env = TrainingEnv(EnvConfig(instances=["en-us@170"]))
    t = time.perf_counter()
    episode_env.reset(seed=0)
    done, n = False, 0
    while not done:
        _, _, term, trunc, _ = episode_env.step(zero)
        done, n = term or trunc, n + 1
    episode_s = time.perf_counter() - t
    rows = [{"what": "env window (K=20, no validation)", "seconds": sum(env_s) / len(env_s)},
            {"what": "bare trainer.run(20)", "seconds": sum(bare_s) / len(bare_s)},
            {"what": "env overhead %", "seconds": overhead},
            {"what": f"default episode ({n} decisions, 300 steps, val every decision)", "seconds": episode_s}]
    write_results("env_overhead", {"overhead_pct": overhead, "episode_wall_s": episode_s, "decisions": n,
                                   "episodes_per_hour_2_procs": 2 * 3600 / episode_s}, rows,
                  "Env overhead and default episode cost (tiny model, en-us@170, 2 threads)")


if __name__ == "__main__":
    main()
