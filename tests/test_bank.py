import json
import math

import numpy as np
import pytest
import torch

from env.bank import BankConfig, bank_root, build_bank, load_bank, perturbed_hand
from env.observations import LOG_STEP_SCALE
from env.training_env import EnvConfig, TrainingEnv


@pytest.fixture
def bank_env_cfg(tiny_env, tmp_path):
    return tiny_env(bank=BankConfig(run_steps=8, save_every=4, schedules=["hand"], perturbed_runs=1,
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
    # killed after step 4: it continues from there with what it had measured, and ends as before
    run = root / "run001-perturbed0"
    checks = (run / "checks.json").read_text()
    for lost in (run / "done", run / "step_8.pt", run / "checks.json"):
        lost.unlink()
    build_bank(instances, bank_env_cfg, bank_env_cfg.bank, progress=False)
    assert (run / "step_8.pt").is_file() and (run / "checks.json").read_text() == checks
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items() if p.name != "step_8.pt" or p.parent != run)
    assert json.loads((root / "manifest.json").read_text())["entries"] == entries


def test_bank_episodes_start_mid_training(bank_env_cfg):
    build_bank(list(bank_env_cfg.instances), bank_env_cfg, bank_env_cfg.bank, progress=False)
    env = TrainingEnv(bank_env_cfg, start="bank", episode_steps=2)
    torch.manual_seed(0)
    global_rng = torch.get_rng_state()
    starts = set()
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        starts.add(info["start_step"])
        assert info["start"] == "bank" and not info["start_aligned"]
        log_step = obs[env.obs_names.index("log_step")]
        assert log_step == pytest.approx(math.log1p(info["start_step"]) / LOG_STEP_SCALE)
    assert starts == {0, 4}
    assert torch.equal(torch.get_rng_state(), global_rng)  # restoring checkpoints never reseeds SB3's RNG
    env.reset(seed=next(s for s in range(20) if env.reset(seed=s)[1]["start_step"] == 4))
    _, _, term, trunc, info = env.step(np.zeros(5, dtype=np.float32))
    assert trunc and not term and env.trainer.step_count == 6  # cut short of the run's end: PPO bootstraps
    env = TrainingEnv(bank_env_cfg, start="bank", episode_steps=8)
    env.reset(seed=next(s for s in range(20) if env.reset(seed=s)[1]["start_step"] == 4))
    steps = 1
    while not any((out := env.step(np.zeros(5, dtype=np.float32)))[2:4]):
        steps += 1
    assert out[2] and not out[3] and env.trainer.step_count == 8 and steps == 2  # the run's end: the bank horizon


def test_aligned_starts_earn_no_alignment_bonus(bank_env_cfg, tmp_path):
    """A checkpoint past its run's confirmed alignment starts aligned: the bonus is for getting there."""
    build_bank(list(bank_env_cfg.instances), bank_env_cfg, bank_env_cfg.bank, progress=False)
    root = bank_root(list(bank_env_cfg.instances), bank_env_cfg, bank_env_cfg.bank)
    manifest = json.loads((root / "manifest.json").read_text())
    assert all("aligned_at" in e for e in manifest["entries"])
    for e in manifest["entries"]:  # mark every step-4 checkpoint as past alignment at step 0
        e["aligned_at"] = 0 if e["step"] == 4 else None
    (root / "manifest.json").write_text(json.dumps(manifest))
    env = TrainingEnv(bank_env_cfg, start="bank")
    obs, info = env.reset(seed=next(s for s in range(20) if env.reset(seed=s)[1]["start_step"] == 4))
    assert info["start_aligned"] and env.aligned_at == 0 and obs[env.obs_names.index("aligned")] == 1.0
    bonuses = []
    while True:
        _, _, term, trunc, info = env.step(np.zeros(5, dtype=np.float32))
        bonuses.append(info["reward/align_bonus"])
        if term or trunc:
            break
    assert bonuses == [0.0] * len(bonuses) and info["steps_to_align"] == 0


def test_scratch_and_refreshed_starts(bank_env_cfg):
    """Bank episodes mix full-length scratch runs and restarts from where this env's own episodes ended."""
    build_bank(list(bank_env_cfg.instances), bank_env_cfg, bank_env_cfg.bank, progress=False)
    env = TrainingEnv(bank_env_cfg, start="bank", episode_steps=2, scratch_share=0.3, refresh_share=0.5,
                      refresh_keep=2)
    kinds = []
    for seed in range(12):
        _, info = env.reset(seed=seed) if seed == 0 else env.reset()
        kinds.append(info["start"])
        while not any(env.step(np.zeros(5, dtype=np.float32))[2:4]):
            pass
        if info["start"] == "scratch":
            assert env.trainer.step_count == 8  # a scratch start runs the bank's whole horizon
        assert len(env._refreshed) <= 2
    assert {"scratch", "bank", "refresh"} <= set(kinds)
    refresh_dir = env._refresh_dir
    env.close()
    assert not refresh_dir.exists()


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
