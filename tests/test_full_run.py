"""The full-run benchmark's quick mode end to end, and PBT through Ray Tune on a real proxy run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.pbt import POPULATION, run_pbt
from controller.train import ControllerConfig, PPOConfig, train_controller
from env.training_env import EnvConfig
from tacotron.trainer import TrainerConfig

ROOT = Path(__file__).resolve().parents[1]


def _env(corpus_dir, **kw) -> EnvConfig:
    base = dict(instances=[str(corpus_dir)], episode_steps=4, steps_per_action=2, threads=1,
                trainer=TrainerConfig(batch_size=4, device="cpu"))
    return EnvConfig(**(base | kw))


@pytest.mark.slow
def test_pbt_exploits_through_trainer_checkpoints(tiny_corpus_dir):
    record = run_pbt({"kind": "pbt"}, _env(tiny_corpus_dir, episode_steps=8), str(tiny_corpus_dir), seed=0,
                     eval_every=2)
    assert record["run_steps"] == POPULATION * 8  # its compute: the whole population
    assert [c["step"] for c in record["curve"]] == [2, 4, 6, 8]  # the lineage's test checks, carried over
    assert record["final"]["cer"] > 0 and record["final"]["mcd_dtw_sl"] > 0 and 0 <= record["final"]["diagonality"] <= 1
    assert len(record["knob_trajectory"]) == 4 and not record["diverged"]


@pytest.mark.slow
def test_full_run_quick_writes_every_method_with_costs_and_paired_cis(tiny_corpus_dir, tmp_path, cache_dir):
    policy = train_controller(ControllerConfig(out_dir=str(tmp_path / "ctl"), total_timesteps=16, n_envs=1,
                                               checkpoint_every=16, tensorboard=False, env=_env(tiny_corpus_dir),
                                               ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=1)))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "full_run.py"), "--quick", "--parts", "tiny", "--instances", "1",
           "--seeds", "1", "--steps", "8", "--eval-every", "4", "--policy", str(policy), "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "full_run.json").read_text())
    assert set(result) >= {"episode_steps", "model", "instances", "seeds", "methods", "paired"}
    assert result["methods"] == ["static", "tuned_static", "hand", "optuna_tpe", "replay", "policy_stretched",
                                 "policy", "pbt"]
    for method in result["methods"]:
        entry = result[method]
        assert {"cer", "mcd_dtw_sl", "gv_ratio", "infer_diagonality", "stop_rate", "aligned_fraction",
                "steps_to_align_median",
                "diverged", "search_steps"} <= set(entry)
    # the policy's cost includes its PPO steps; the replay pays for the policy plus its recording
    assert result["policy"]["search_steps"] == 16 * 2
    assert result["replay"]["search_steps"] > result["policy"]["search_steps"]
    assert result["pbt"]["run_steps"] == POPULATION * result["static"]["run_steps"]
    assert result["policy_stretched"]["search_steps"] == result["policy"]["search_steps"]  # the same policy
    for baseline in ("static", "tuned_static", "hand", "optuna_tpe", "replay", "policy_stretched", "pbt"):
        assert set(result["paired"][baseline]["cer"]) == {"delta_mean", "ci95_low", "ci95_high"}
    assert (tmp_path / "full_run.png").read_bytes()[:4] == b"\x89PNG"
    assert "| pbt |" in (tmp_path / "full_run.md").read_text()
