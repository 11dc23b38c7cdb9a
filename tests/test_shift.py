"""The shifted-conditions benchmark end to end in quick mode, and its drift measure on known trajectories."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.train import ControllerConfig, PPOConfig, train_controller
from env.actions import ActionConfig
from env.instances import load_instance_set

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from ga_hold import first_release  # noqa: E402
from shift import CONDITIONS, METHODS, condition_config, knob_at_bound_fraction  # noqa: E402


def test_knob_at_bound_fraction_weighs_each_row_by_the_steps_it_holds():
    space = ActionConfig()
    rows = [{"step": 0, "lr": 1e-3, "ga_weight": 5.0, "dropout": 0.1, "r": 3, "tf_ratio": 1.0},
            {"step": 100, "lr": 1e-5, "ga_weight": 0.0, "dropout": 0.1, "r": 3, "tf_ratio": 1.0},
            {"step": 400, "lr": 2e-3, "ga_weight": 5.0, "dropout": 0.5, "r": 1, "tf_ratio": 0.3}]
    shares = knob_at_bound_fraction([rows], 1000, space)
    assert shares["lr"]["share"] == pytest.approx(0.9) and shares["ga_weight"]["share"] == pytest.approx(0.3)
    assert shares["dropout"]["share"] == pytest.approx(0.6) and shares["r"]["share"] == pytest.approx(0.6)
    # teacher forcing's reference, 1.0, is its upper bound: sitting there is the static choice
    assert shares["tf_ratio"] == {"share": 1.0, "reference_at_bound": True}
    assert not shares["lr"]["reference_at_bound"]


def test_a_release_counts_only_before_alignment_and_a_run_that_never_aligns_must_hold_to_the_end():
    trajectory = [{"step": s, "ga_weight": g} for s, g in [(0, 5.0), (100, 8.0), (300, 4.0), (500, 0.0)]]
    assert first_release({"steps_to_align": 400, "knob_trajectory": trajectory}) == 300
    assert first_release({"steps_to_align": 300, "knob_trajectory": trajectory}) is None  # lowered at alignment
    assert first_release({"steps_to_align": None, "knob_trajectory": trajectory}) == 300
    assert first_release({"steps_to_align": None, "knob_trajectory": trajectory[:2]}) is None


def test_each_condition_changes_only_what_it_names(tmp_path):
    args = argparse.Namespace(instance_set="heldout", instances=2, policy="p", seeds=1, steps=1500, long_steps=5000,
                              longer_steps=10000,
                              eval_every=100, workers=2, quick=False, batch_size=64, late_set="dev_late",
                              unfamiliar_set="dev_unfamiliar", methods=METHODS)
    configs = {name: condition_config(name, args, tmp_path) for name in CONDITIONS}
    base = configs["small"]
    assert base.model == "small" and base.data == load_instance_set("heldout")[:2] and base.episode_steps == 1500
    assert configs["long"].episode_steps == 5000 and configs["long"].eval_every == 200
    assert configs["longer"].episode_steps == 10000 and configs["longer"].methods == ["static", "replay", "policy"]
    assert configs["batch"].batch_size == 64 and configs["batch"].model != "small"
    assert configs["late"].data == load_instance_set("dev_late")
    assert configs["unfamiliar"].data == load_instance_set("dev_unfamiliar")
    assert len({c.name for c in configs.values()}) == len(CONDITIONS)
    args.methods = ["hand", "replay", "policy"]  # --methods: longer keeps only those of its own it names
    assert condition_config("late", args, tmp_path).methods == ["hand", "replay", "policy"]
    assert condition_config("longer", args, tmp_path).methods == ["replay", "policy"]


@pytest.mark.slow
def test_shift_quick_writes_its_json_with_replay_among_the_baselines(tiny_env, tmp_path, cache_dir):
    policy = train_controller(ControllerConfig(out_dir=str(tmp_path / "ctl"), total_timesteps=8, n_envs=1,
                                               checkpoint_every=8, tensorboard=False,
                                               env=tiny_env(actions=ActionConfig(mode="residual")),
                                               ppo=PPOConfig(n_steps=8, batch_size=8, n_epochs=1)))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "shift.py"), "--quick", "--conditions", "long",
           "--instance-set", "train", "--instances", "1", "--steps", "8", "--long-steps", "12", "--eval-every", "4",
           "--batch-size", "2", "--policy", str(policy), "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "shift.json").read_text())
    assert result["conditions"] == ["long"]
    baselines = {"static", "hand", "tuned_static", "optuna_tpe", "replay"}
    for condition in result["conditions"]:
        assert set(result[condition]["paired_by_instance"]) == baselines
        assert {"mean", "std"} <= set(result[condition]["policy"]["cer"])
    assert result["long"]["episode_steps"] == 12 and set(result["long"]["knob_at_bound_fraction"]) >= {"lr"}
    assert (tmp_path / "shift.png").read_bytes()[:4] == b"\x89PNG"
    # A later invocation that runs no condition keeps the finished ones in the combined report.
    (tmp_path / "shift.json").unlink()
    rerun = cmd[:cmd.index("--conditions") + 1] + [""] + cmd[cmd.index("--conditions") + 2:]
    done = subprocess.run(rerun, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "shift.json").read_text())["long"] == result["long"]
