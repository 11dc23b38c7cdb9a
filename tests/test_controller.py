import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from controller.baselines import OptunaConfig
from controller.deploy import DeployConfig, deploy, deployment_env_config, load_policy
from controller.episodes import policy_decider
from controller.explain import ExplainConfig, explain
from controller.methods import METHODS, PrepareContext
from controller.cli import load_config
from controller.policy_io import env_config_from_dict, load_env_config, load_meta, policy_fingerprint
from controller.support import Support
from controller.train import ControllerConfig, PPOConfig, train_controller
from env.actions import ActionConfig, KnobSpec
from env.bank import BankConfig
from env.observations import OBS_NAMES
from env.training_env import EnvConfig, TrainingEnv


def _cfg(tiny_env, out, **kw) -> ControllerConfig:
    base = dict(out_dir=str(out), total_timesteps=32, n_envs=1, checkpoint_every=16, tensorboard=False,
                ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=2), env=tiny_env())
    return ControllerConfig(**(base | kw))


@pytest.mark.slow
def test_ppo_trains_saves_reloads_and_deploys(tiny_env, tiny_corpus_dir, tmp_path):
    cfg = _cfg(tiny_env, tmp_path / "ctl", total_timesteps=256, n_envs=2, checkpoint_every=128)
    policy = train_controller(cfg)
    assert {p.name for p in policy.iterdir()} >= {"model.zip", "vecnormalize.pkl", "env_config.json",
                                                  "instances.json"}
    assert load_env_config(policy) == cfg.env
    assert json.loads((policy / "instances.json").read_text())["train"] == [str(tiny_corpus_dir)]
    out = tmp_path / "deploy"
    summary = deploy(DeployConfig(policy=str(policy), data=str(tiny_corpus_dir), max_steps=8, out_dir=str(out),
                                  tensorboard=False), progress=False)
    assert summary["steps_per_action"] == 2  # K fixed in optimiser steps, as in training
    assert 0 <= summary["final_score"] <= 1 and summary["rollbacks"] == 0
    assert 0 <= summary["shrunk_share"] <= 1 and summary["furthest_outside"]["feature"] in OBS_NAMES
    rows = (out / "knobs.csv").read_text().strip().split("\n")
    assert len(rows) == 5 and (out / "knobs.png").stat().st_size > 0
    stretched = deploy(DeployConfig(policy=str(policy), data=str(tiny_corpus_dir), max_steps=8, cadence="stretched",
                                    out_dir=str(tmp_path / "stretched"), tensorboard=False), progress=False)
    assert stretched["steps_per_action"] == 4  # 2 decisions per 4-step training episode, over 8 steps
    gated = deploy(DeployConfig(policy=str(policy), data=str(tiny_corpus_dir), max_steps=8, hold_ga_until_aligned=True,
                                out_dir=str(tmp_path / "gated"), tensorboard=False), progress=False)
    ga_weights = [float(row.split(",")[2]) for row in (tmp_path / "gated" / "knobs.csv").read_text().split()[1:]]
    assert gated["steps_to_align"] is None and min(ga_weights) >= 5.0  # 8 steps never align: held at 5 or above


def test_bank_trained_policy_is_evaluated_as_deployed_and_logs_episodes_by_start(tiny_env, tmp_path):
    """Held-out evaluation of a bank-trained policy runs from scratch on the held-out voices (no bank
    of theirs exists), and every training episode is logged with where it started."""
    cfg = _cfg(tiny_env, tmp_path / "ctl", total_timesteps=16, eval_every=8, eval_steps=2)
    env = dataclasses.replace(cfg.env, start="bank", scratch_share=0.5,
                              bank=BankConfig(run_steps=8, save_every=4, schedules=["static"], perturbed_runs=0,
                                              root=str(tmp_path / "bank")))
    policy = train_controller(dataclasses.replace(cfg, env=env))  # builds the bank first
    evals = [json.loads(line) for line in (tmp_path / "ctl" / "heldout_eval.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in evals] == [8, 16] and len(evals[0]["final_scores"]) == 3
    # the best held-out policy is kept, first of equals, and costs the whole run (choosing it took all of it)
    means = [float(np.mean(e["final_scores"])) for e in evals]
    best = load_meta(tmp_path / "ctl" / "policy_best")
    assert best["heldout_score"] == max(means) and best["num_timesteps"] == evals[means.index(max(means))]["timesteps"]
    assert best["train_seconds"] == load_meta(policy)["train_seconds"] > 0
    assert (tmp_path / "ctl" / "policy_best" / "instances.json").is_file()
    # a resumed run carries its best over: the kept policy is the best of every evaluation so far
    train_controller(dataclasses.replace(cfg, env=env, resume=True, total_timesteps=32))
    evals = [json.loads(line) for line in (tmp_path / "ctl" / "heldout_eval.jsonl").read_text().splitlines()]
    means = [float(np.mean(e["final_scores"])) for e in evals]
    assert [e["timesteps"] for e in evals] == [8, 16, 24, 32]
    assert load_meta(tmp_path / "ctl" / "policy_best")["heldout_score"] == max(means)
    episodes = [json.loads(line) for line in (tmp_path / "ctl" / "episodes.jsonl").read_text().splitlines()]
    assert episodes and {e["start"] for e in episodes} <= {"scratch_unaligned", "bank_unaligned", "bank_aligned"}
    assert all(0 <= e["final_score"] <= 1 and e["batch_size"] == 4 and e["spike_at"] is None
               and e["spikes"] == 0 for e in episodes)


def test_a_deployed_run_is_an_ordinary_run_without_trainings_variation():
    trained = EnvConfig(batch_sizes=[8, 32], spike_share=0.25, start="bank")
    deployed = deployment_env_config(trained, 1500)
    assert (deployed.batch_sizes, deployed.spike_share, deployed.start) == ([], 0.0, "scratch")


def test_a_policy_far_outside_its_training_support_falls_back_to_the_reference(tiny_env, tmp_path):
    env_cfg = dataclasses.replace(tiny_env(), actions=ActionConfig(mode="residual"))
    policy = train_controller(_cfg(tiny_env, tmp_path / "ctl", total_timesteps=16, env=env_cfg))
    env = TrainingEnv(deployment_env_config(load_env_config(policy), 4, log_dir=None))
    model, stats = load_policy(policy, env)
    support = Support.of(stats, env.obs_names)
    assert support.check(stats.obs_rms.mean) | {"feature": None} == {"z": 0.0, "feature": None, "keep": 1.0}
    obs, _ = env.reset(seed=0)
    i = OBS_NAMES.index("log_grad_norm_mean")  # a gradient blow-up no training run showed
    far = obs.copy()
    far[i] = stats.obs_rms.mean[i] + 20 * support.std[i]
    assert support.check(far) == {"z": pytest.approx(20.0, rel=1e-4), "feature": "log_grad_norm_mean", "keep": 0.0}
    # none of the action is taken there: under residual actions every knob is at its reference
    *_, info = policy_decider(model, stats)(far, env)
    assert info["support"]["keep"] == 0.0 and info["knobs"] == env.cfg.actions.reference().as_dict()


def test_resume_continues_the_step_count(tiny_env, tmp_path):
    out = tmp_path / "ctl"
    train_controller(_cfg(tiny_env, out, total_timesteps=16))
    assert PPO.load(out / "checkpoints" / "step_16" / "model.zip").num_timesteps == 16
    train_controller(_cfg(tiny_env, out, total_timesteps=32, resume=True))
    assert PPO.load(out / "policy" / "model.zip").num_timesteps == 32
    assert (out / "checkpoints" / "step_32").is_dir()


def test_deploy_refuses_a_mismatched_policy(tiny_env, tiny_corpus_dir, tmp_path):
    policy = train_controller(_cfg(tiny_env, tmp_path / "ctl", total_timesteps=16))
    env_json = policy / "env_config.json"
    cfg = json.loads(env_json.read_text())
    cfg["actions"]["r"]["frozen"] = True  # the policy was trained with 5 action dims
    env_json.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="expects action shape"):
        deploy(DeployConfig(policy=str(policy), data=str(tiny_corpus_dir), max_steps=4,
                            out_dir=str(tmp_path / "d"), tensorboard=False), progress=False)
    with pytest.raises(FileNotFoundError, match="not a policy directory"):
        deploy(DeployConfig(policy=str(tmp_path), data=str(tiny_corpus_dir)), progress=False)


def test_stretched_interval_follows_each_run_length_in_a_shared_search_cache(tiny_env, tmp_path):
    policy = train_controller(_cfg(tiny_env, tmp_path / "ctl", total_timesteps=16))
    trained = load_env_config(policy)  # K = 2 over a 4-step proxy horizon
    ks = [METHODS["policy_stretched"].obtain(PrepareContext(
        run_env=dataclasses.replace(trained, episode_steps=steps), search_env=trained, policy=policy,
        optuna=OptunaConfig(), dev_instances=[], cache_dir=tmp_path / "searches")).schedule["steps_per_action"]
        for steps in (4, 40)]
    assert ks == [2, 20]  # a cached 4-step spec is not reused for a 40-step run


def test_frozen_knob_spec_roundtrips_through_a_policy_config_and_the_cli():
    cfg = EnvConfig(actions=ActionConfig(dropout=KnobSpec(0.0, 0.4, 0.05, frozen=True), mode="absolute"))
    again = env_config_from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))  # as a policy dir stores it
    assert again == cfg and again.actions.active == ["lr", "ga_weight", "r", "tf_ratio"]
    assert isinstance(again.actions, ActionConfig) and again.actions.dropout.high == 0.4
    from_cli = load_config("controller/ppo", ["env.actions.dropout.frozen=true", "env.actions.dropout.high=0.4",
                                              "env.actions.mode=absolute"]).env
    assert from_cli.actions == cfg.actions


def test_explain_writes_sensitivity_and_trajectories(tiny_env, tmp_path):
    policy = train_controller(_cfg(tiny_env, tmp_path / "ctl", total_timesteps=16))
    result = explain(ExplainConfig(policy=str(policy), instance_set="heldout", episodes=1, max_steps=6,
                                   out_dir=str(tmp_path / "ex"), counterfactual_every=2))
    assert set(result["top_features"]) == {"lr", "ga_weight", "dropout", "r", "tf_ratio"}
    assert all(v >= 0 for v in result["sensitivity"]["lr"].values())
    assert set(result["mean_action_by_phase"]["ga_weight"]) == {"before_aligned", "after_aligned"}
    assert [row["step"] for row in result["runs"][0]["knobs"]] == [0, 2, 4]  # K fixed in steps, as deployed
    changes = result["counterfactuals"]
    assert changes["states"] == 2 and set(changes["spike_minus_calm"]) == set(result["top_features"])
    # the states differ (a peeked spike moves the window features; the flag moves the run features) and the
    # policy reads both
    for name in ("spike_minus_calm", "aligned_minus_unaligned"):
        assert any(v != 0 for v in changes[name].values())
    for png in ("sensitivity.png", "alignment_0.png", "knobs_since_alignment.png"):
        assert (tmp_path / "ex" / png).read_bytes()[:4] == b"\x89PNG"
    saved = np.load(tmp_path / "ex" / "counterfactual_states.npz")  # for tests on fixed checkpoints
    assert sorted(saved) == ["aligned", "calm", "spike", "unaligned"] and saved["spike"].shape == (2, len(OBS_NAMES))


def test_time_budget_stops_training_and_is_recorded(tiny_env, tmp_path):
    out = tmp_path / "ctl"
    policy = train_controller(_cfg(tiny_env, out, total_timesteps=100_000, checkpoint_every=8,
                                   time_budget_s=3.0))
    steps = PPO.load(policy / "model.zip").num_timesteps
    assert 0 < steps < 100_000
    meta = load_meta(policy)
    assert meta["num_timesteps"] == steps and meta["train_seconds"] >= 3.0
    first = load_meta(out / "checkpoints" / "step_8")
    assert 0 < first["train_seconds"] <= meta["train_seconds"]
    # A policy's identity for cached searches: its files, not where it lies or what its meta says.
    copy = tmp_path / "copy"
    shutil.copytree(policy, copy)
    (copy / "meta.json").write_text(json.dumps(meta | {"bank_cost": {"steps": 1, "cpu_seconds": 1.0}}))
    assert policy_fingerprint(copy) == policy_fingerprint(policy)
    config = json.loads((copy / "env_config.json").read_text())
    (copy / "env_config.json").write_text(json.dumps(config | {"steps_per_action": 3}))
    assert policy_fingerprint(copy) != policy_fingerprint(policy)


@pytest.mark.slow
def test_training_for_a_step_count_is_reproducible(tiny_env, tmp_path):
    """The demo trains for a step count, not a time budget, so the policy it deploys on the test voice
    is the one chosen on the dev voices (on one machine): one seed gives the same weights, another seed
    other weights."""
    def weights(name: str, seed: int) -> dict:
        policy = train_controller(_cfg(tiny_env, tmp_path / name, n_envs=2, seed=seed))
        return PPO.load(policy / "model.zip").policy.state_dict()

    first, again, other = weights("a", 0), weights("b", 0), weights("c", 1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
