"""Named instance sets (DACBench's idea): lists of proxy instances 'VOICE@RATE' in configs/instances/."""
from __future__ import annotations

from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def instance_set_names() -> list[str]:
    """The names of every instance set in configs/instances/, sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / "instances").glob("*.yaml"))


def load_instance_set(name: str) -> list[str]:
    path = CONFIG_DIR / "instances" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"instance_set={name!r} is unknown; choose one of {instance_set_names()}")
    instances = yaml.safe_load(path.read_text()).get("instances") or []
    if not instances:
        raise ValueError(f"instance set {path} lists no instances")
    return [str(i) for i in instances]


def is_sealed(name: str) -> bool:
    """Whether instance set ``name`` is a sealed test set (``test`` and its variants ``test_*``): read by
    nothing but its scoring run, once, at the end, with the design frozen (benchmarks/README.md)."""
    return name == "test" or name.startswith("test_")


def sealed_instances() -> set[str]:
    """Every instance of every sealed test set."""
    return {i for name in instance_set_names() if is_sealed(name) for i in load_instance_set(name)}
