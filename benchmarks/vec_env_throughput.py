"""Env steps per second of the two ways to run proxy envs in parallel, side by side in one run:
SB3's ``SubprocVecEnv`` (local processes) and ``RayVecEnv`` (Ray actors on a local cluster).

Both run 2 envs × 1 torch thread on the same proxy instance, the same episode length and the same
zero actions (the static knobs), for the same number of vec-env steps after one warm-up episode;
the interleaving repeats so that machine drift hits both alike. Writes
``results/vec_env_throughput.{json,md}``.

    python benchmarks/vec_env_throughput.py [--steps 60] [--repeats 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import write_results  # noqa: E402
from controller.vec_env import VEC_ENVS, proxy_vec_env  # noqa: E402
from env.training_env import EnvConfig  # noqa: E402

INSTANCE = "en-us@170"


def env_steps_per_s(backend: str, steps: int) -> float:
    env = EnvConfig(instances=[INSTANCE], episode_steps=100, steps_per_action=10, threads=1)
    venv = proxy_vec_env(env, 2, seed=0, backend=backend)
    venv.reset()
    actions = np.zeros((2, venv.action_space.shape[0]), dtype=np.float32)
    for _ in range(10):  # warm-up: one whole episode (corpus loading, first validations)
        venv.step(actions)
    started = time.perf_counter()
    for _ in range(steps):
        venv.step(actions)
    rate = steps * 2 / (time.perf_counter() - started)
    venv.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="vec-env steps timed per backend and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rates = {backend: [] for backend in VEC_ENVS}
    for _ in range(args.repeats):
        for backend in VEC_ENVS:
            rates[backend].append(env_steps_per_s(backend, args.steps))
    ratio = float(np.mean(rates["ray"]) / np.mean(rates["subprocess"]))
    rows = [{"backend": b, "env_steps_per_s": float(np.mean(r)), "each_repeat": ", ".join(f"{x:.2f}" for x in r)}
            for b, r in rates.items()]
    payload = {"instance": INSTANCE, "n_envs": 2, "threads_per_env": 1, "steps_per_action": 10,
               "timed_vec_steps": args.steps, "repeats": args.repeats, "ray_over_subprocess": ratio}
    write_results("vec_env_throughput", payload, rows, "Parallel proxy envs: env steps per second, one run",
                  f"2 envs × 1 thread, K = 10 optimiser steps per env step plus a validation, {INSTANCE}, tiny "
                  f"model, static knobs. Ray / subprocess: {ratio:.2f}×.")

if __name__ == "__main__":
    main()
