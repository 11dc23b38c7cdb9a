import json

import numpy as np
import pytest

from env.bank import BankConfig, bank_root, build_bank, load_bank, perturbed_hand
from env.training_env import EnvConfig, TrainingEnv
from tacotron.trainer import TrainerConfig


@pytest.fixture
def bank_env_cfg(tiny_corpus_dir, tmp_path):
    return EnvConfig(instances=[str(tiny_corpus_dir)], episode_steps=4, steps_per_action=2,
                     trainer=TrainerConfig(batch_size=4, device="cpu"),
                     bank=BankConfig(run_steps=8, save_every=4, schedules=["hand"], perturbed_runs=1,
                                     root=str(tmp_path / "bank")))


def test_build_bank_is_cached_and_resumable(bank_env_cfg):
    instances = list(bank_env_cfg.instances)
    root = build_bank(instances, bank_env_cfg, bank_env_cfg.bank, progress=False)
    run_steps, entries = load_bank(root)
    assert run_steps == 8 and sorted({e["schedule"] for e in entries}) == ["hand", "perturbed0"]
    assert sorted(e["step"] for e in entries) == [0, 0, 4, 4]
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*.pt")}
    (root / "run001-perturbed0" / "done").unlink()  # an interrupted run resumes from its last checkpoint
    build_bank(instances, bank_env_cfg, bank_env_cfg.bank, progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    assert json.loads((root / "manifest.json").read_text())["entries"] == entries


def test_bank_episodes_start_mid_training(bank_env_cfg):
    build_bank(list(bank_env_cfg.instances), bank_env_cfg, bank_env_cfg.bank, progress=False)
    env = TrainingEnv(bank_env_cfg, start="bank")
    starts = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        starts.add(info["start_step"])
        progress = obs[env.obs_names.index("progress")]
        assert progress == pytest.approx(info["start_step"] / 8)
    assert starts == {0, 4}
    obs, info = env.reset(seed=next(s for s in range(20) if env.reset(seed=s)[1]["start_step"] == 4))
    done, steps = False, 0
    while not done:
        obs, _, term, trunc, info = env.step(np.zeros(5, dtype=np.float32))
        done, steps = term or trunc, steps + 1
    assert env.trainer.step_count == 8 and steps == 2  # stops at the bank horizon


def test_missing_bank_is_a_clear_error(bank_env_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="build-bank"):
        TrainingEnv(bank_env_cfg, start="bank")


def test_bank_root_ignores_env_only_fields(bank_env_cfg):
    cfg = BankConfig(run_steps=8, save_every=4)
    a = bank_root(["x"], bank_env_cfg, cfg)
    b = bank_root(["x"], EnvConfig(**{**bank_env_cfg.__dict__, "episode_steps": 99, "start": "bank"}), cfg)
    assert a == b


def test_perturbed_schedules_are_seeded():
    assert perturbed_hand(3)(10, 100) == perturbed_hand(3)(10, 100)
    assert perturbed_hand(3)(10, 100) != perturbed_hand(4)(10, 100)
