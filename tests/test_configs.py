"""The dataclasses hold the defaults; a YAML file holds only what differs from what it builds on."""
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from controller.cli import COMMANDS, config_text, load_config
from env.instances import CONFIG_DIR

CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.parent.name != "instances")


def _leaves(node, prefix: str = ""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if OmegaConf.is_dict(value):
            yield from _leaves(value, f"{path}.")
        else:
            yield path, value


def _base(path: Path):
    """What the file builds on: its schema's defaults, or the composed parent config it names first."""
    parent = OmegaConf.load(path).defaults[0].lstrip("/")
    if parent.endswith("_schema"):
        return OmegaConf.structured(ConfigStore.instance().repo[f"{parent}.yaml"].node)
    relative = path.parent.relative_to(CONFIG_DIR) / parent
    return load_config(str(relative), [])


def test_every_command_has_a_config():
    assert CONFIGS and {c for c, _, _ in COMMANDS.values()} <= {str(p.relative_to(CONFIG_DIR))[:-5] for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_yaml_holds_only_what_differs_from_its_defaults(path):
    raw = OmegaConf.load(path)
    base = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(_base(path))))
    repeated = [key for key, value in _leaves(raw) if key != "defaults"
                and OmegaConf.select(base, key, default="<absent>") == value]
    assert not repeated, f"{path.name} repeats its defaults for {repeated}; delete those lines"
    assert "(could not compose" not in config_text(str(path.relative_to(CONFIG_DIR))[:-5])
