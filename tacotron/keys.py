"""One content key for every cache: a short hash of what defines a result, so a changed input never
reuses a stale one (mel caches, recognisers, banks, obtained schedules, Optuna studies, compared runs)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no content key; pass JSON-able values or dataclasses")


def content_key(value, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``value`` as canonical JSON (sorted keys;
    dataclasses as their fields, paths as strings)."""
    text = json.dumps(value, sort_keys=True, default=_jsonable)
    return hashlib.sha1(text.encode()).hexdigest()[:length]
