"""Checkpoint files: written atomically (temp file, fsync, rename), loaded with ``weights_only=True``.

A write that fails (a full disk, a read-only folder) leaves the previous file intact and raises
``CheckpointWriteError``; a file that cannot be loaded raises ``CheckpointError`` naming it, never an
unpickler traceback, and ``restore_newest`` then falls back to the previous checkpoint with a warning.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged or of another kind."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; the previous one is intact."""


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save turns a failed write into a RuntimeError on close
        tmp.unlink(missing_ok=True)
        cause = err.__context__ if isinstance(err, RuntimeError) and isinstance(err.__context__, OSError) else err
        raise CheckpointWriteError(f"could not write {path} ({getattr(cause, 'strerror', None) or cause}); "
                                   f"the previous version, if any, is intact") from err


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old file or the whole new one."""
    _atomic_write(path, lambda fh: torch.save(obj, fh), "wb")


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, so readers never see half a file."""
    _atomic_write(path, lambda fh: fh.write(text), "w")


def load(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, garbage, a pickle that needs code: all one answer
        raise CheckpointError(f"checkpoint {path} is damaged or not a tacotune checkpoint "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


def newest_first(directory: Path, pattern: str = "step_*.pt") -> list[Path]:
    """Checkpoints in ``directory`` named ``..._<step>``, highest step first."""
    return sorted(Path(directory).glob(pattern), key=lambda p: int(p.stem.split("_")[-1]), reverse=True)


def latest(directory: Path, pattern: str = "step_*.pt") -> Path | None:
    """The checkpoint with the highest step number in ``directory``, or None."""
    found = newest_first(directory, pattern)
    return found[0] if found else None


def restore_newest(directory: Path, restore: Callable[[Path], T], pattern: str = "step_*.pt") -> tuple[Path, T] | None:
    """``restore`` the newest checkpoint that loads -> (its path, what ``restore`` returned), or None
    when there is none. A damaged newer one is skipped with a warning."""
    for path in newest_first(directory, pattern):
        try:
            return path, restore(path)
        except CheckpointError as err:
            log.warning("%s; falling back to the previous checkpoint", err)
    return None
