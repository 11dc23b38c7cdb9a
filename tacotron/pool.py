"""One process-pool runner for independent jobs (reference runs, compared runs, replay recordings)."""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from typing import Callable, Sequence

from tqdm import tqdm


def exit_with_parent(poll_s: float = 1.0) -> None:
    """Make this worker process exit as soon as the process that started it is gone (killed): an orphaned
    worker would run its job to the end, holding a core and writing results that nobody collects (a
    resumed benchmark redoes the job). Only for spawned workers: a main process outlives its shell."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # a dead parent's children are handed to another process
            time.sleep(poll_s)
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def as_worker(fn: Callable, *args):
    """``fn(*args)`` in a spawned worker process that exits with its parent (``mp.Process``'s target)."""
    exit_with_parent()
    return fn(*args)


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
        with mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=exit_with_parent,
                                          maxtasksperchild=1) as pool:
            for index, result in pool.imap_unordered(_indexed, [(i, fn, job) for i, job in enumerate(jobs)]):
                finished(index, result)
    else:
        for index, job in enumerate(jobs):
            finished(index, fn(job))
    bar.close()
    return results
