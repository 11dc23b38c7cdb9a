"""Shared fixtures: a private cache folder, tiny real espeak-ng corpora and a tiny env factory."""
from __future__ import annotations

import os

import pytest
import torch

from env.training_env import EnvConfig
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig, load_corpus
from tacotron.model import ModelConfig
from tacotron.proxy import ProxySpec, generate_proxy_corpus
from tacotron.trainer import TrainerConfig

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tacotune-cache")
    old = os.environ.get("TACOTUNE_CACHE")
    os.environ["TACOTUNE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TACOTUNE_CACHE")
    else:
        os.environ["TACOTUNE_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_corpus_dir(cache_dir):
    return generate_proxy_corpus(ProxySpec(voice="en-us", rate=180, n_utts=24, max_words=3), progress=False)


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_dir):
    return load_corpus(tiny_corpus_dir, AudioConfig(), DataConfig(val_fraction=0.2), progress=False)


@pytest.fixture(scope="session")
def align_corpus(cache_dir):
    """The default proxy instance at its default size, for runs that must really learn."""
    spec = ProxySpec()
    return load_corpus(generate_proxy_corpus(spec, progress=False), AudioConfig(), DataConfig(), progress=False)


@pytest.fixture
def tiny_model_cfg(tiny_corpus):
    return ModelConfig.preset("tiny", tiny_corpus.frontend.n_symbols)


@pytest.fixture(scope="session")
def tiny_env(tiny_corpus_dir):
    """A factory of tiny real env configs on the tiny corpus: 4 optimiser steps, a decision every 2,
    batches of 4, one torch thread; keyword arguments override any EnvConfig field."""
    def make(**overrides) -> EnvConfig:
        base = dict(instances=[str(tiny_corpus_dir)], episode_steps=4, steps_per_action=2, threads=1,
                    trainer=TrainerConfig(batch_size=4, device="cpu"))
        return EnvConfig(**(base | overrides))
    return make
