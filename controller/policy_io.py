"""A policy directory: everything deploy needs, written atomically.

``model.zip`` (SB3 PPO), ``vecnormalize.pkl`` (observation/reward statistics) and
``env_config.json`` (the EnvConfig it was trained with, instance sets included) and
``meta.json`` (env steps and training seconds so far, and the observation names it was trained on,
which are also ``EnvConfig.observations``: a policy written before that field existed gets them from here).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from env.observations import OBS_NAMES
from env.training_env import EnvConfig
from tacotron.checkpoint import CheckpointError


def save_policy(model, directory: Path, env_cfg: EnvConfig, meta: dict | None = None) -> None:
    """Write the policy directory whole or not at all (temp folder, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    if model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(tmp / "vecnormalize.pkl"))
    (tmp / "env_config.json").write_text(json.dumps(dataclasses.asdict(env_cfg), indent=2))
    (tmp / "meta.json").write_text(json.dumps({"num_timesteps": model.num_timesteps,
                                               "obs_names": list(env_cfg.observations), **(meta or {})}))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def load_policy_files(directory: Path, venv, **ppo_kwargs) -> tuple[PPO, VecNormalize]:
    """The PPO model and VecNormalize statistics of a policy directory that this tool wrote (SB3's
    loader unpickles: never point it at files from elsewhere), for ``venv``. Damage raises
    ``CheckpointError``; a policy made for other observation or action spaces, ``ValueError``."""
    directory = Path(directory)
    for name in ("model.zip", "vecnormalize.pkl"):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory} has no {name}; pass a policy directory written by controller train")
    _check_observation_names(directory)
    try:
        model = PPO.load(directory / "model.zip", **ppo_kwargs)
    except Exception as err:  # a truncated zip or pickle: one clear answer
        raise CheckpointError(f"policy directory {directory} is damaged ({type(err).__name__}: {err})") from err
    for kind in ("observation", "action"):
        want, got = getattr(model, f"{kind}_space").shape, getattr(venv, f"{kind}_space").shape
        if want != got:
            raise ValueError(f"policy {directory} expects {kind} shape {want} but this env has {got}; "
                             f"it was trained with another observation or action configuration")
    try:
        stats = VecNormalize.load(str(directory / "vecnormalize.pkl"), venv)
    except Exception as err:
        raise CheckpointError(f"policy directory {directory} is damaged ({type(err).__name__}: {err})") from err
    return model, stats


def _check_observation_names(directory: Path) -> None:
    """Same-shaped observations can mean other things (``val_infer_mel_score`` became
    ``val_infer_intelligibility``): a policy reads only observations that still exist. Features added
    since it was trained are fine: its env emits the ones it names (``load_env_config``)."""
    names = load_meta(directory).get("obs_names")
    if names is None:
        raise ValueError(f"policy {directory} records no observation names: it predates the CER yardstick "
                         "(its val_infer_mel_score observation is gone); retrain it with controller train")
    if gone := sorted(set(names) - set(OBS_NAMES)):
        raise ValueError(f"policy {directory} was trained on observations that no longer exist ({gone}); retrain it")


def load_env_config(directory: Path) -> EnvConfig:
    path = Path(directory) / "env_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a policy directory (no env_config.json)")
    values = json.loads(path.read_text())
    if "observations" not in values and "obs_names" in (meta := load_meta(directory)):
        values["observations"] = meta["obs_names"]  # written before EnvConfig.observations existed
    return env_config_from_dict(values)


def env_config_from_dict(values: dict) -> EnvConfig:
    """The typed (validated) ``EnvConfig`` from ``dataclasses.asdict`` output."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvConfig), values))


def load_meta(directory: Path) -> dict:
    path = Path(directory) / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def policy_fingerprint(directory: Path) -> str:
    """A hash of the policy's weights, normalisation statistics and env config: the same policy has the
    same fingerprint wherever it is copied, and a retrained one a new one (``meta.json`` is left out,
    since bookkeeping may be added to it later)."""
    digest = hashlib.sha1()
    for name in ("model.zip", "vecnormalize.pkl", "env_config.json"):
        path = Path(directory) / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]
