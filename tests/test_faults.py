"""Faults really injected: SIGKILL to real subprocesses, damaged and unwritable checkpoints, NaN/Inf in
a subprocess run end to end. Each resumes or fails clearly, and loses nothing beyond the last
checkpoint interval. The table of these cases is tests/README.md."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from tacotron import checkpoint
from tacotron.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["trainer.batch_size=4", "trainer.device=cpu", "threads=1", "tensorboard=false"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "controller.cli", *args]


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _kill_when(cmd: list[str], ready, timeout: float = 600) -> None:
    """Start ``cmd``, SIGKILL it (and its children) as soon as ``ready()`` holds; it must not have ended."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state, ppid, ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _spawned_workers(pid: int) -> list[int]:
    """The live multiprocessing workers that ``pid`` spawned."""
    return [int(d.name) for d in Path("/proc").glob("[0-9]*") if (s := _proc_stat(int(d.name))) and int(s[1]) == pid
            and b"spawn_main" in (d / "cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_spawned_workers_exit_when_their_parent_is_killed():
    """kill -9 of a benchmark's main process alone (not its group) leaves no worker holding a core."""
    script = ("import time; from tacotron.pool import run_jobs; "
              "run_jobs(time.sleep, [600, 600], workers=2, desc='sleep', progress=False)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(workers := _spawned_workers(parent.pid)) < 2:
        assert time.monotonic() < deadline and parent.poll() is None, "the workers never started"
        time.sleep(0.1)
    time.sleep(1.0)  # both are inside their 600-s jobs
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while alive := [w for w in workers if (s := _proc_stat(w)) and s[0] not in "ZX"]:
        if time.monotonic() > deadline:
            for w in alive:
                os.kill(w, signal.SIGKILL)
            pytest.fail(f"workers {alive} outlived their killed parent by 30 s")
        time.sleep(0.2)


# --- kill -9, then resume ----------------------------------------------------------------------

def _whole_and_killed_then_resumed(args: list[str], tmp_path: Path, kill_at: str) -> tuple[dict, dict]:
    """Run the CLI command whole into ``whole/``; run it into ``killed/``, SIGKILL it once
    ``checkpoints/<kill_at>`` exists, resume it -> both ``summary.json``s."""
    _run(_cli(*args, f"out_dir='{tmp_path / 'whole'}'"))
    out = tmp_path / "killed"
    _kill_when(_cli(*args, f"out_dir='{out}'"), lambda: (out / "checkpoints" / kill_at).exists())
    _run(_cli(*args, f"out_dir='{out}'", "resume=true"))
    return tuple(json.loads((tmp_path / name / "summary.json").read_text()) for name in ("whole", "killed"))


@pytest.mark.slow
def test_killed_train_resumes_to_the_uninterrupted_result(tiny_corpus_dir, tmp_path):
    args = ["train", f"data='{tiny_corpus_dir}'", "schedule=hand", "max_steps=30", "val_every=5", "ckpt_every=10", *TINY]
    whole, resumed = _whole_and_killed_then_resumed(args, tmp_path, "step_10.pt")
    assert resumed == whole  # the same history, final figures and knobs as the uninterrupted run


@pytest.fixture(scope="module")
def tiny_policy(tiny_env, tmp_path_factory):
    from controller.train import ControllerConfig, PPOConfig, train_controller
    env = tiny_env()
    return train_controller(ControllerConfig(out_dir=str(tmp_path_factory.mktemp("ctl")), total_timesteps=16,
                                             n_envs=1, checkpoint_every=16, tensorboard=False, env=env,
                                             ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=1)))


@pytest.mark.slow
def test_killed_deploy_resumes_with_what_it_had_measured(tiny_corpus_dir, tiny_policy, tmp_path):
    args = ["controller", "deploy", f"policy='{tiny_policy}'", f"data='{tiny_corpus_dir}'", "max_steps=16",
            "ckpt_every=1", "threads=1", "tensorboard=false"]
    whole, resumed = _whole_and_killed_then_resumed(args, tmp_path, "step_8.pt")
    for key in ("final_score", "steps_to_align", "final_val", "score_history"):
        assert resumed[key] == whole[key], key
    assert (tmp_path / "killed" / "knobs.csv").read_text() == (tmp_path / "whole" / "knobs.csv").read_text()


@pytest.mark.slow
def test_killed_controller_train_resumes_from_its_last_checkpoint(tiny_corpus_dir, tmp_path):
    from stable_baselines3 import PPO
    out = tmp_path / "ctl"
    args = ["controller", "train", f"env.instances=['{tiny_corpus_dir}']", "env.instance_set=train",
            "env.episode_steps=4", "env.steps_per_action=2", "env.threads=1", "env.trainer.batch_size=4",
            "env.trainer.device=cpu", "n_envs=1", "checkpoint_every=8", "total_timesteps=32", "tensorboard=false",
            "ppo.n_steps=8", "ppo.batch_size=8", "ppo.n_epochs=1", f"out_dir='{out}'"]
    _kill_when(_cli(*args), lambda: (out / "checkpoints" / "step_16").is_dir())
    kept = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert kept >= 16  # nothing beyond the last checkpoint interval is lost
    done = _run(_cli(*args, "resume=true"))
    assert f"resumed PPO from {out / 'checkpoints' / f'step_{kept}'}" in done.stderr
    assert PPO.load(out / "policy" / "model.zip").num_timesteps == 32


@pytest.mark.slow
def test_killed_full_run_benchmark_keeps_its_finished_runs(tiny_corpus_dir, tiny_policy, tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "full_run.py"), "--quick", "--parts", "tiny", "--instances", "1",
           "--seeds", "1", "--steps", "8", "--eval-every", "4", "--methods", "static,hand,policy",
           "--policy", str(tiny_policy), "--out", str(tmp_path)]
    runs = tmp_path / "full_run" / "full_run_tiny_runs"
    _kill_when(cmd, lambda: runs.is_dir() and any(runs.glob("*.json")))
    first = {p: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    _run(cmd)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # finished runs were not redone
    result = json.loads((tmp_path / "full_run.json").read_text())
    assert result["methods"] == ["static", "hand", "policy"]


# --- damaged and unwritable checkpoints ---------------------------------------------------------

def test_damaged_checkpoints_give_a_clear_error(tmp_path):
    checkpoint.atomic_save({"x": torch.ones(1000)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    for name in ("truncated.pt", "garbage.pt", "missing.pt"):
        with pytest.raises(CheckpointError, match=name):
            checkpoint.load(tmp_path / name)


@pytest.mark.slow
def test_train_resume_falls_back_past_a_truncated_latest_checkpoint(tiny_corpus_dir, tmp_path, caplog):
    from tacotron.run import RunConfig, train_run
    from tacotron.trainer import TrainerConfig
    cfg = RunConfig(data=str(tiny_corpus_dir), max_steps=20, val_every=5, ckpt_every=5, out_dir=str(tmp_path / "a"),
                    threads=1, tensorboard=False, trainer=TrainerConfig(batch_size=4, device="cpu"))
    whole = train_run(cfg, progress=False)
    latest = tmp_path / "a" / "checkpoints" / "step_20.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # e.g. a disk that filled up under another tool
    resumed = train_run(RunConfig(**{**cfg.__dict__, "resume": True}), progress=False)
    assert "step_20.pt is damaged" in caplog.text and "falling back" in caplog.text
    assert resumed.final == whole.final  # redone from step 15, deterministically


def test_damaged_policy_directory_is_a_clear_error(tiny_policy, tmp_path, tiny_corpus_dir):
    import shutil

    from controller.deploy import DeployConfig, deploy
    for name in ("model.zip", "vecnormalize.pkl"):
        broken = tmp_path / f"broken_{name}"
        shutil.copytree(tiny_policy, broken)
        (broken / name).write_bytes((broken / name).read_bytes()[:200])
        with pytest.raises(CheckpointError, match=f"policy directory .*broken_{name}.* is damaged"):
            deploy(DeployConfig(policy=str(broken), data=str(tiny_corpus_dir), max_steps=2,
                                out_dir=str(tmp_path / "d"), tensorboard=False), progress=False)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) stops the write midway, like a full disk."""
    target = tmp_path / "ckpt.pt"
    checkpoint.atomic_save({"v": torch.zeros(10)}, target)
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from tacotron import checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            checkpoint.atomic_save({{"v": torch.ones(1_000_000)}}, {str(target)!r})
        except checkpoint.CheckpointWriteError as err:
            print(err)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "could not write" in done.stdout and "previous version" in done.stdout
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


# --- NaN and Inf, injected into a whole run in a subprocess -------------------------------------

@pytest.mark.slow
def test_injected_nan_and_inf_roll_back_and_saved_weights_stay_finite(tiny_corpus_dir, tmp_path):
    """A gradient hook poisons one gradient with NaN at step 4, a forward hook the postnet's output (so the
    loss) with Inf at step 7; the run goes on to the end, rolls back twice, and every checkpoint it saved is finite."""
    script = textwrap.dedent(f"""
        import json, torch
        from tacotron.run import RunConfig, train_run
        from tacotron import trainer as trainer_module
        from tacotron.trainer import TrainerConfig

        cfg = RunConfig(data={str(tiny_corpus_dir)!r}, max_steps=12, val_every=6, ckpt_every=3,
                        out_dir={str(tmp_path / "run")!r}, threads=1, tensorboard=False,
                        trainer=TrainerConfig(batch_size=4, device="cpu", snapshot_every=2))
        original_init = trainer_module.Trainer.__init__

        def poisoned_init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            weight = self.model.decoder.frame_projection.weight
            weight.register_hook(lambda g: g * float("nan") if self.step_count == 4 else g)
            self.model.postnet.register_forward_hook(
                lambda m, i, out: out * float("inf") if self.step_count == 7 and m.training else out)
        trainer_module.Trainer.__init__ = poisoned_init
        summary = train_run(cfg, progress=False)
        print(json.dumps({{"rollbacks": summary.rollbacks, "steps": summary.history[-1]["step"]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rollbacks": 2, "steps": 12}
    for path in (tmp_path / "run" / "checkpoints").glob("step_*.pt"):
        state = checkpoint.load(path)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point()), path


class _FeatureEnv(gym.Env):
    """Stands for the env of a policy trained on other observations: ``n`` features."""

    action_space = gym.spaces.Box(-1, 1, (5,), np.float32)

    def __init__(self, n: int):
        self.observation_space = gym.spaces.Box(-1, 1, (n,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, True, {}


def test_policy_from_another_observation_space_is_refused(tiny_policy, tmp_path, tiny_corpus_dir):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from controller.deploy import DeployConfig, deploy
    from controller.policy_io import load_env_config, save_policy
    old = PPO("MlpPolicy", VecNormalize(DummyVecEnv([lambda: _FeatureEnv(30)])), n_steps=8, batch_size=8)
    save_policy(old, tmp_path / "old", load_env_config(tiny_policy))  # names today's features: 30 do not fit
    with pytest.raises(ValueError, match="expects observation shape"):
        deploy(DeployConfig(policy=str(tmp_path / "old"), data=str(tiny_corpus_dir), max_steps=2,
                            out_dir=str(tmp_path / "d"), tensorboard=False), progress=False)


def test_a_policy_trained_before_a_feature_was_added_reads_the_features_it_knows(tiny_policy, tmp_path,
                                                                                 tiny_corpus_dir):
    """Its env_config.json predates ``EnvConfig.observations``, so its features come from meta.json."""
    import dataclasses
    import json

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from controller.deploy import DeployConfig, deploy
    from controller.policy_io import load_env_config, save_policy
    from env.observations import OBS_NAMES
    known = [name for name in OBS_NAMES if name != "log_mel_above_best"]
    old = PPO("MlpPolicy", VecNormalize(DummyVecEnv([lambda: _FeatureEnv(len(known))])), n_steps=8, batch_size=8)
    save_policy(old, tmp_path / "old", dataclasses.replace(load_env_config(tiny_policy), observations=known))
    config_path = tmp_path / "old" / "env_config.json"
    config = json.loads(config_path.read_text())
    del config["observations"]
    config_path.write_text(json.dumps(config))
    assert load_env_config(tmp_path / "old").observations == known
    summary = deploy(DeployConfig(policy=str(tmp_path / "old"), data=str(tiny_corpus_dir), max_steps=4,
                                  out_dir=str(tmp_path / "d"), tensorboard=False), progress=False)
    assert summary["max_steps"] == 4 and summary["furthest_outside"]["feature"] in known


def test_policy_trained_on_observations_of_another_meaning_is_refused(tiny_policy, tmp_path, tiny_corpus_dir):
    """Same shape, other meaning: a policy from before the CER yardstick read val_infer_mel_score."""
    import json
    import shutil

    from controller.deploy import DeployConfig, deploy
    names = json.loads((tiny_policy / "meta.json").read_text())["obs_names"]
    renamed = [n.replace("intelligibility", "mel_score") for n in names]
    for name, obs_names, message in (("renamed", renamed, "val_infer_mel_score"),
                                     ("unnamed", None, "records no observation names")):
        old = tmp_path / name
        shutil.copytree(tiny_policy, old)
        meta = json.loads((old / "meta.json").read_text())
        meta.pop("obs_names")
        if obs_names:
            meta["obs_names"] = obs_names
        (old / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=message):
            deploy(DeployConfig(policy=str(old), data=str(tiny_corpus_dir), max_steps=2,
                                out_dir=str(tmp_path / "d"), tensorboard=False), progress=False)


def test_bad_inputs_exit_non_zero_with_a_clear_message(tmp_path, tiny_corpus_dir, capsys):
    from controller.cli import main
    empty = tmp_path / "empty"
    (empty / "wavs").mkdir(parents=True)
    (empty / "metadata.csv").write_text("a||\nb| |\n")
    cases = [
        (["train", f"data={empty}"], 1, "0 usable"),
        (["controller", "train", "env.actions.lr.low=0"], 2, "actions.lr.low=0"),
        (["controller", "train", "env.scratch_share=2"], 2, "scratch_share=2"),
        (["controller", "deploy", f"policy={tmp_path}"], 1, "not a policy directory"),
        (["bench", "compare", f"data=[{tiny_corpus_dir}]", "methods=[tuned_static]", "optuna.n_trials=1",
          "optuna.storage=postgresql+psycopg2://nobody@127.0.0.1:1/none", f"out_dir={tmp_path / 'c'}"], 1,
         "cannot be opened"),
    ]
    for args, code, message in cases:
        assert main(args) == code, args
        assert message in capsys.readouterr().err, args
