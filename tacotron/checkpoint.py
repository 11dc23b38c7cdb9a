"""Atomic checkpoint files: temp file, fsync, rename; loaded with ``weights_only=True``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def latest(directory: Path, pattern: str = "step_*.pt") -> Path | None:
    """The checkpoint with the highest step number in ``directory``, or None."""
    found = sorted(Path(directory).glob(pattern), key=lambda p: int(p.stem.split("_")[-1]))
    return found[-1] if found else None
