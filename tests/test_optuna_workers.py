"""Optuna searches survive killed workers: a journal search resumed after SIGKILL, and two workers on
PostgreSQL where one is killed mid-trial and the other takes its trial over (heartbeat + retry).

The PostgreSQL test needs a server: ``scripts/postgres.sh`` starts one on localhost (CI runs it);
``TACOTUNE_TEST_POSTGRES`` names another. Outside CI it skips, with the reason, when none answers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from controller.baselines import OptunaConfig, open_storage, optuna_search, study_name
from env.training_env import EnvConfig

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("TACOTUNE_TEST_POSTGRES", "postgresql+psycopg2:///tacotune")


def _worker(env: EnvConfig, cfg: OptunaConfig) -> subprocess.Popen:
    """One search process on ``cfg.storage`` (its own process group, so SIGKILL takes it whole)."""
    script = textwrap.dedent(f"""
        import json
        from controller.baselines import OptunaConfig, optuna_search
        from controller.policy_io import env_config_from_dict
        env = env_config_from_dict(json.loads({json.dumps(json.dumps(_asdict(env)))}))
        cfg = OptunaConfig(**json.loads({json.dumps(json.dumps(_asdict(cfg)))}))
        optuna_search("tpe", cfg, env, env.instances, "w", default_storage="unused")
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _asdict(obj) -> dict:
    import dataclasses
    return dataclasses.asdict(obj)


def _study(env: EnvConfig, cfg: OptunaConfig) -> optuna.Study:
    name = study_name("w", "tpe", "schedule", cfg, env, list(env.instances))
    return optuna.load_study(study_name=name, storage=open_storage(cfg.storage))


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the worker ended first: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _running(study_fn, pid: int) -> bool:
    """At least one trial is complete and process ``pid`` is in the middle of another."""
    try:
        trials = study_fn().get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return False
    return any(t.state == TrialState.COMPLETE for t in trials) and any(
        t.state == TrialState.RUNNING and t.user_attrs.get("worker_pid") == pid for t in trials)


def _stopped(pid: int) -> bool:
    """Every thread of process ``pid`` is stopped (so none is inside a write)."""
    tasks = Path(f"/proc/{pid}/task")
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] in "tT" for task in tasks.iterdir())


def _writes_settled(url: str) -> bool:
    """No statement of another connection is in flight on the database (a journal file is written
    synchronously, so a stopped writer has none in flight)."""
    if url.startswith("journal:"):
        return True
    import sqlalchemy
    with sqlalchemy.create_engine(url).connect() as db:
        return db.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND state = 'active' AND pid <> pg_backend_pid()")).scalar() == 0


def _kill_mid_trial(study_fn, proc: subprocess.Popen, url: str) -> None:
    """SIGKILL ``proc`` while one of its trials runs. It is frozen (SIGSTOP) before the look, and the look
    waits until it has stopped and its last write has landed, so the trial cannot end between the look
    and the kill; if it had just ended, thaw and wait again."""
    while True:
        _wait_for(lambda: _running(study_fn, proc.pid), proc)
        os.killpg(proc.pid, signal.SIGSTOP)
        _wait_for(lambda: _stopped(proc.pid) and _writes_settled(url), proc)
        if _running(study_fn, proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        os.killpg(proc.pid, signal.SIGCONT)


@pytest.mark.slow
def test_killed_journal_search_retries_its_running_trial(tiny_env, tmp_path):
    env = tiny_env(episode_steps=40, steps_per_action=20)  # trials of a few seconds, so the kill lands inside one
    cfg = OptunaConfig(n_trials=3, pruner="none", workers=1, storage=f"journal:{tmp_path / 'j.log'}")
    proc = _worker(env, cfg)
    _kill_mid_trial(lambda: _study(env, cfg), proc, cfg.storage)
    killed = next(t for t in _study(env, cfg).trials if t.state == TrialState.RUNNING)
    study = optuna_search("tpe", cfg, env, list(env.instances), "w", default_storage="unused")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states
    retried = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retried.state == TrialState.COMPLETE and retried.params == killed.params  # nothing lost


def _postgres_or_skip() -> str:
    import sqlalchemy
    try:
        with sqlalchemy.create_engine(POSTGRES).connect():
            pass
    except Exception as err:  # no driver, no server, wrong password: all mean "no database here"
        if os.environ.get("CI"):
            raise AssertionError(f"CI must provide PostgreSQL at {POSTGRES} (scripts/postgres.sh): {err}") from err
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({type(err).__name__}); run scripts/postgres.sh as root")
    return POSTGRES


@pytest.mark.slow
def test_postgres_worker_killed_mid_trial_is_taken_over(tiny_env, tmp_path):
    """Two workers on one study; one is SIGKILLed mid-trial; the other fails the silent trial after the
    grace period and runs it again with the same parameters. Prints the takeover time."""
    url = _postgres_or_skip()
    env = tiny_env(episode_steps=20, steps_per_action=10)
    cfg = OptunaConfig(n_trials=16, pruner="none", workers=1, storage=url, seed=int(time.time()))  # a fresh study
    victim, survivor = _worker(env, cfg), _worker(env, cfg)
    _kill_mid_trial(lambda: _study(env, cfg), victim, url)
    killed_at = time.time()
    assert survivor.wait(timeout=600) == 0, survivor.stderr.read()[-3000:]
    trials = _study(env, cfg).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["worker_pid"] == victim.pid for t in failed)
    for dead in failed:
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == dead.number)
        assert retry.state == TrialState.COMPLETE and retry.params == dead.params
        takeover = retry.datetime_start.timestamp() - killed_at
        print(f"takeover of trial {dead.number}: {takeover:.1f} s after the kill")
        assert takeover < 120
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 16
