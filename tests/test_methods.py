"""The method contract, run on every registered method: a real tiny policy, real searches, real runs.

The env freezes ga_weight, which every method would otherwise move (hand sets 10, the searches and
PBT sample it), so the same runs also show that every method leaves a frozen knob at its reference.
"""
import dataclasses
import json
import math

import pytest

from controller.baselines import OptunaConfig
from controller.compare import CompareConfig, compare, run_cells
from controller.deploy import deployment_env_config, proxy_horizon
from controller.methods import METHODS, PrepareContext, RunRecord, Spec
from controller.methods.base import CURVE_FIGURES, Cell, run_key
from controller.methods.policy import policy_cost
from controller.policy_io import load_env_config
from controller.train import ControllerConfig, PPOConfig, train_controller
from env.actions import ActionConfig
from tacotron.knobs import KNOB_NAMES, Knobs, KnobSpec

STEPS, EVAL_EVERY, TRIALS = 4, 2, 2
FROZEN = "ga_weight"


@pytest.fixture(scope="module")
def frozen_policy(tiny_env, tmp_path_factory):
    actions = ActionConfig(**{FROZEN: dataclasses.replace(KnobSpec.default(FROZEN), frozen=True)})
    return train_controller(ControllerConfig(out_dir=str(tmp_path_factory.mktemp("ctl")), total_timesteps=8,
                                             n_envs=1, checkpoint_every=4, tensorboard=False,
                                             env=tiny_env(actions=actions),
                                             ppo=PPOConfig(n_steps=8, batch_size=8, n_epochs=1)))


def _context(policy, cache_dir) -> PrepareContext:
    trained = load_env_config(policy)
    return PrepareContext(run_env=deployment_env_config(trained, STEPS, log_dir=None, threads=1),
                          search_env=deployment_env_config(trained, proxy_horizon(trained), log_dir=None),
                          # the trial count alone ends the searches: the tiny policy's CPU budget fits one
                          # trial or two depending on the machine's speed (that rule has tests of its own)
                          policy=policy, optuna=OptunaConfig(n_trials=TRIALS, budget_cpu_s=math.inf, workers=1),
                          dev_instances=list(trained.instances), cache_dir=cache_dir)


METHOD_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if METHODS[name].population > 1 else name
                 for name in METHODS]


@pytest.mark.parametrize("name", METHOD_PARAMS)
def test_every_method_keeps_the_contract(name, frozen_policy, tmp_path):
    method = METHODS[name]
    ctx = _context(frozen_policy, tmp_path / "specs")
    instance = ctx.run_env.instances[0]

    spec = method.obtain(ctx)
    # the spec: JSON round trip, its method, its cost
    assert spec.method == name and Spec.from_json(spec.to_json()) == spec
    assert isinstance(spec.search_steps, int) and spec.search_steps >= 0 and spec.search_cpu_s >= 0
    if method.needs_policy:  # a policy's methods pay for the policy (and the replay for its recording)
        assert spec.search_steps >= policy_cost(frozen_policy)["search_steps"] > 0
    if "params" in spec.schedule:  # a search: every trial's steps (a pruned one's fewer), nothing for a frozen knob
        assert STEPS < spec.search_steps <= TRIALS * STEPS and spec.search_cpu_s > 0
        assert spec.search["trials"] == TRIALS and not any(p.startswith("ga") for p in spec.schedule["params"])
    # cached: a second obtain reads the same spec back instead of searching again
    cached = sorted((tmp_path / "specs").glob(f"method_{name}_*.json"))
    assert len(cached) == 1 and method.obtain(ctx) == spec

    runs_dir = tmp_path / "runs"
    # a population's run is a Ray Tune experiment (a minute or more): one seed, and resuming, which
    # run_cells does alike for every method, is checked on the single-run methods
    seeds = (0, 1) if method.population == 1 else (0,)
    cells = [(name, spec, instance, seed) for seed in seeds]
    records = run_cells(cells, ctx.run_env, EVAL_EVERY, runs_dir, workers=1, progress=False)[name]
    # the record schema, with real figures
    for record, seed in zip(records, seeds):
        assert set(record) == {f.name for f in dataclasses.fields(RunRecord)} | {"run_key"}
        assert record["seed"] == seed and record["instance"] == instance
        assert record["run_steps"] == method.population * STEPS and not record["diverged"]
        assert [c["step"] for c in record["curve"]] == [2, 4] and set(record["curve"][0]) == set(CURVE_FIGURES)
        assert record["final"]["cer"] > 0 and record["final"]["mcd_dtw_sl"] > 0
        assert record["knob_trajectory"] and all(set(KNOB_NAMES) <= set(row) for row in record["knob_trajectory"])
        # the frozen knob stays at its reference under every method
        assert {row[FROZEN] for row in record["knob_trajectory"]} == {getattr(Knobs(), FROZEN)}

    # the resume key: a run that would run otherwise today is not kept
    cell = Cell(instance, 0, ctx.run_env, EVAL_EVERY)
    assert records[0]["run_key"] == run_key(spec, cell)
    assert run_key(spec, dataclasses.replace(cell, eval_every=1)) != run_key(spec, cell)
    assert run_key(dataclasses.replace(spec, search_steps=spec.search_steps + 1), cell) != run_key(spec, cell)

    if method.population > 1:
        return
    # a killed comparison resumes: the finished run is kept, the lost one runs again
    kept, lost = runs_dir / f"{name}__{instance.replace('/', '_')}__0.json", \
        runs_dir / f"{name}__{instance.replace('/', '_')}__1.json"
    stamp = kept.stat().st_mtime_ns
    lost.unlink()
    again = run_cells(cells, ctx.run_env, EVAL_EVERY, runs_dir, workers=1, progress=False)[name]
    assert kept.stat().st_mtime_ns == stamp and lost.is_file()
    assert again[1]["final"] == records[1]["final"]  # a single run is deterministic on one thread
    assert json.loads(kept.read_text())["final"] == records[0]["final"]


def test_anytime_reads_the_policy_at_its_checkpoints_and_a_search_at_smaller_budgets(frozen_policy, tmp_path):
    ctx = _context(frozen_policy, tmp_path / "specs")
    policy = METHODS["policy"].obtain(ctx)
    checkpoint = frozen_policy.parent / "checkpoints" / "step_4"
    first_cost = policy_cost(checkpoint)["search_cpu_s"]
    assert 0 < first_cost < policy.search_cpu_s
    at = METHODS["policy"].at_budgets(ctx, [0.0, first_cost, policy.search_cpu_s, 2 * policy.search_cpu_s])
    assert at[0] is None  # nothing is free
    assert at[1].schedule["path"] == str(checkpoint) and at[1].search_cpu_s == first_cost
    assert at[2] == at[3] == policy  # the trained policy is the last point: PPO ran no longer
    # one search continued: read at the shorter search's cost, it is the shorter search
    search = METHODS["tuned_static"]
    short = search.obtain(ctx)
    longer = dataclasses.replace(ctx, optuna=dataclasses.replace(ctx.optuna, n_trials=TRIALS + 2))
    at = search.at_budgets(longer, [0.0, short.search_cpu_s, 1e9])
    assert at[0] is None and at[1] == short
    assert at[2].search["trials"] == TRIALS + 2 and at[2].search_cpu_s > short.search_cpu_s
    best = lambda spec: spec.search["search_curve"][-1]["best_train_score"]  # noqa: E731
    assert best(at[2]) >= best(short)


def test_compare_draws_anytime_curves(frozen_policy, tmp_path):
    trained = load_env_config(frozen_policy)
    cfg = CompareConfig(methods=["static", "tuned_static", "policy"], policy=str(frozen_policy),
                        data=[trained.instances[0]], seeds=[0, 1], episode_steps=STEPS, eval_every=EVAL_EVERY,
                        workers=1, out_dir=str(tmp_path), name="any",
                        optuna=OptunaConfig(n_trials=TRIALS + 1, workers=1), budget_fractions=[0.5, 1, 2])
    result = compare(cfg, progress=False)
    curve = result["budget_curve"]
    assert [p["search_cpu_s"] for p in curve["static"]] == [0.0] and curve["static"][0]["runs"] == 1  # seed 0 only
    assert curve["policy"][-1]["label"] == "policy"  # the trained policy; earlier points are checkpoints
    budget = result["policy"]["search_cpu_s"]
    for method in ("tuned_static", "policy"):
        costs = [p["search_cpu_s"] for p in curve[method]]
        assert costs == sorted(costs) and costs[-1] <= 2 * budget
        assert all(p["cer"]["mean"] > 0 for p in curve[method])
    assert (tmp_path / "any_budget.png").read_bytes()[:4] == b"\x89PNG"
    assert "Anytime" in (tmp_path / "any.md").read_text()
