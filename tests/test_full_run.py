"""The full-run benchmark's quick mode end to end (PBT's own contract: tests/test_methods.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.methods.pbt import POPULATION
from controller.train import ControllerConfig, PPOConfig, train_controller

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_full_run_quick_writes_every_method_with_costs_and_paired_cis(tiny_env, tmp_path, cache_dir):
    policy = train_controller(ControllerConfig(out_dir=str(tmp_path / "ctl"), total_timesteps=16, n_envs=1,
                                               checkpoint_every=16, tensorboard=False, env=tiny_env(),
                                               ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=1)))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "full_run.py"), "--quick", "--parts", "tiny", "--instances", "1",
           "--seeds", "1", "--steps", "8", "--eval-every", "4", "--policy", str(policy), "--out", str(tmp_path),
           # PB2 is PBT's population with another explore (its contract: tests/test_methods.py): cut here
           "--methods", "static,hand,tuned_static,optuna_tpe,pbt,replay,policy"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "full_run.json").read_text())
    assert set(result) >= {"episode_steps", "model", "instances", "seeds", "methods", "paired"}
    assert result["methods"] == ["static", "hand", "tuned_static", "optuna_tpe", "pbt", "replay", "policy"]
    for method in result["methods"]:
        entry = result[method]
        assert {"cer", "mcd_dtw_sl", "gv_ratio", "infer_diagonality", "stop_rate", "aligned_fraction",
                "steps_to_align_median",
                "diverged", "search_steps"} <= set(entry)
    # the policy's cost includes its PPO steps; the replay pays for the policy plus its recording
    assert result["policy"]["search_steps"] == 16 * 2
    assert result["replay"]["search_steps"] > result["policy"]["search_steps"]
    assert result["pbt"]["run_steps"] == POPULATION * result["static"]["run_steps"]
    for baseline in ("static", "hand", "tuned_static", "optuna_tpe", "pbt", "replay"):
        assert set(result["paired_by_instance"][baseline]["cer"]) == {"delta_mean", "ci95_low", "ci95_high", "p",
                                                                      "holm_p"}
    # the anytime curves: every method, the searches and the policy at fractions of the policy's cost
    assert set(result["budget_curve"]) == set(result["methods"])
    # each best-so-far point cost no more than its fraction of the policy's cost (the compared search, under
    # the method's own name, is quick mode's 2 trials whatever they cost, which timing alone sets against it)
    for point in result["budget_curve"]["optuna_tpe"]:
        if point["budget_fraction"] is not None:
            assert point["search_cpu_s"] <= point["budget_fraction"] * result["policy"]["search_cpu_s"]
    assert 0 <= result["recogniser_floor"][result["instances"][0]] < 1
    for png in ("full_run.png", "full_run_budget.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "| pbt |" in (tmp_path / "full_run.md").read_text()
