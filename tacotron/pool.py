"""One process-pool runner for independent jobs (reference runs, compared runs, replay recordings)."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Sequence

from tqdm import tqdm


def _indexed(args: tuple) -> tuple:
    index, fn, job = args
    return index, fn(job)


def run_jobs(fn: Callable, jobs: Sequence, workers: int, desc: str, progress: bool = True,
             on_result: Callable | None = None) -> list:
    """``fn(job)`` for every job -> results in job order. With ``workers`` > 1 and more than one job, the
    jobs run in that many spawned processes, a fresh one per job (no torch state or leak carries over;
    ``fn`` must be a module-level function); otherwise in this process. ``on_result`` sees each result
    as it finishes, for progress reports."""
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress)
    results: list = [None] * len(jobs)

    def finished(index: int, result) -> None:
        results[index] = result
        bar.update(1)
        if on_result is not None:
            on_result(bar, result)

    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs)), maxtasksperchild=1) as pool:
            for index, result in pool.imap_unordered(_indexed, [(i, fn, job) for i, job in enumerate(jobs)]):
                finished(index, result)
    else:
        for index, job in enumerate(jobs):
            finished(index, fn(job))
    bar.close()
    return results
