import json

import optuna
import pytest

from controller.baselines import LadderPruner, OptunaConfig, optuna_search, search_within, study_name
from controller.search_spaces import baseline_params, constant_schedule, parametric_schedule, schedule_from_params
from controller.compare import CompareConfig, compare, label_points
from controller.methods import Spec
from controller.report import markdown_report, summarise, verdict
from controller.statistics import censored_median, holm, mean_std, paired_ci
from env.training_env import EnvConfig
from tacotron.knobs import Knobs
from tacotron.schedules import hand, static, static_release


@pytest.fixture
def env_cfg(tiny_env):
    return tiny_env()


@pytest.mark.slow
def test_quick_compare_writes_the_documented_json_markdown_and_plots(tiny_corpus_dir, tiny_env, tmp_path):
    small = tiny_env(episode_steps=6)
    methods = ["static", "tuned_static", "hand", "optuna_tpe"]
    cfg = CompareConfig(methods=methods, data=[str(tiny_corpus_dir)], episode_steps=6, eval_every=2, seeds=[0, 1],
                        out_dir=str(tmp_path), workers=1, optuna=OptunaConfig(n_trials=2, workers=1), env=small)
    result = compare(cfg, progress=False)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["methods"] == methods == result["methods"]
    assert saved["episode_steps"] == 6 and saved["seeds"] == [0, 1] and saved["model"] == "tiny"
    for method in methods:
        for key in ("cer", "mcd_dtw_sl", "gv_ratio", "infer_diagonality", "stop_rate", "aligned_fraction"):
            assert set(saved[method][key]) == {"mean", "std", "ci95_low", "ci95_high"}
        assert saved[method]["runs"] == 2 and saved[method]["cer"]["mean"] > 0
        assert saved[method]["mcd_dtw_sl"]["mean"] > 0
        assert {"steps_to_align_median", "diverged", "search_steps", "search_cpu_s"} <= set(saved[method])
        # never-aligned runs count at the budget: the median is never below the first check or above the budget
        assert 2 <= saved[method]["steps_to_align_median"] <= 6
    assert saved["static"]["search_steps"] == 0 and saved["hand"]["search_steps"] == 0
    # two trials of one 6-step instance (multi-fidelity: the second may be pruned after a decision)
    assert 6 < saved["optuna_tpe"]["search_steps"] <= 2 * 6
    # Same seeds, data and initialisation: static and tuned static differ only in their knobs.
    runs = saved["runs"]
    assert [(r["instance"], r["seed"]) for r in runs["static"]] == [(r["instance"], r["seed"]) for r in runs["hand"]]
    table = (tmp_path / "compare.md").read_text()
    assert table.count("\n| ") == 1 + len(methods) and "tuned_static" in table
    # Figures are reproducible per machine only, so the result names the machine.
    assert saved["meta"]["machine"]["cpu"] and f"Measured on {saved['meta']['machine']['cpu']}" in table
    for png in ("compare_curves.png", "compare_knobs.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    # Resume: a second call reuses every finished run and cached search (same numbers, nothing rerun).
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "compare_runs").glob("*.json")}
    assert len(stamps) == len(methods) * 3  # a cached schedule and two runs per method
    again = compare(cfg, progress=False)
    assert again["static"]["cer"] == saved["static"]["cer"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_optuna_spends_at_most_its_step_budget_across_two_workers(env_cfg, tmp_path):
    cfg = OptunaConfig(fidelity="single", budget_steps=20, pruner="none", workers=2,
                       storage=f"journal:{tmp_path / 'j.log'}")
    study = optuna_search("tpe", cfg, env_cfg, env_cfg.instances, "b", default_storage="unused")
    state = search_within(study)
    assert state.steps <= 20 and state.steps == 4 * len(study.trials) == 4 * state.trials and state.trials >= 4
    assert state.cpu_s > 0 and state.curve[-1]["steps"] == state.steps and state.curve[-1]["cpu_s"] == state.cpu_s


def test_single_fidelity_trials_are_scored_on_every_training_instance(env_cfg, tmp_path, tiny_corpus_dir):
    instances = [str(tiny_corpus_dir), str(tiny_corpus_dir)]
    cfg = OptunaConfig(fidelity="single", n_trials=2, pruner="median", workers=1,
                       storage=f"sqlite:///{tmp_path / 's.db'}")
    study = optuna_search("tpe", cfg, env_cfg, instances, "m", default_storage="unused", space="constant")
    for trial in study.trials:
        assert trial.user_attrs["steps"] == 8 and sorted(trial.intermediate_values) == [0, 1]
    assert set(study.best_params) == {"lr", "ga_weight", "dropout", "r", "tf_ratio"}


@pytest.mark.parametrize("space", ["constant", "schedule"])
def test_multi_fidelity_search_starts_from_static_and_hand_and_keeps_to_its_cpu_budget(env_cfg, tmp_path,
                                                                                        tiny_corpus_dir, space):
    instances = [str(tiny_corpus_dir), str(tiny_corpus_dir)]
    first = optuna_search("tpe", OptunaConfig(n_trials=1, workers=1, storage=f"sqlite:///{tmp_path / 'one.db'}"),
                          env_cfg, instances, "one", default_storage="unused", space=space)
    one_trial_cpu = first.trials[0].user_attrs["cpu_s"]
    budget = 5 * one_trial_cpu
    cfg = OptunaConfig(budget_cpu_s=budget, workers=1, storage=f"sqlite:///{tmp_path / 'mf.db'}")
    study = optuna_search("tpe", cfg, env_cfg, instances, "mf", default_storage="unused", space=space)
    static, hand = baseline_params(space, env_cfg.actions)
    assert study.trials[0].params == pytest.approx(static) and study.trials[1].params == pytest.approx(hand)
    assert [t.state for t in study.trials[:2]] == [optuna.trial.TrialState.COMPLETE] * 2  # never pruned
    assert schedule_from_params(space, static)(0, 4) == Knobs()  # exactly static
    # the cheap fidelity reports at every decision of the first voice's run, a promoted trial after the second voice
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete[0].intermediate_values) == [2, 4, 8] and complete[0].user_attrs["steps"] == 8
    assert study.best_value >= study.trials[0].value  # never below static on its own training score
    spent = sum(t.user_attrs["cpu_s"] for t in study.trials)
    assert 3 <= len(study.trials) and spent <= budget + max(t.user_attrs["cpu_s"] for t in study.trials)


def test_a_shorter_cheap_run_comes_first_and_promoted_trials_report_after_each_full_voice(env_cfg, tmp_path,
                                                                                          tiny_corpus_dir):
    instances = [str(tiny_corpus_dir), str(tiny_corpus_dir)]
    cfg = OptunaConfig(n_trials=2, cheap_steps=2, workers=1, storage=f"sqlite:///{tmp_path / 'cheap.db'}")
    study = optuna_search("tpe", cfg, env_cfg, instances, "cheap", default_storage="unused")
    for trial in study.trials:  # static and hand: the 2-step cheap run, then a 4-step run on each voice
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [2, 2 + 4, 2 + 8] and trial.user_attrs["steps"] == 2 + 8
        assert trial.value == pytest.approx(trial.intermediate_values[10])  # the full runs' mean, not the cheap one
    assert study_name("c", "tpe", "schedule", cfg, env_cfg, instances) != study_name(
        "c", "tpe", "schedule", OptunaConfig(cheap_steps=4), env_cfg, instances)


def test_ladder_pruner_promotes_only_the_best_third_of_every_trial_at_a_rung():
    study = optuna.create_study(direction="maximize")
    for v in (0.5, 0.6):  # static and hand, through the cheap rung (step 10)
        study.add_trial(optuna.trial.create_trial(value=v, intermediate_values={2: v, 10: v}))
    pruner = LadderPruner(optuna.pruners.NopPruner(), promote_at=10)

    def pruned(values: dict) -> bool:
        return pruner.prune(study, optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                                             intermediate_values=values))
    assert not pruned({2: 0.0})  # below the promotion rung the inner pruner decides
    assert pruned({2: 0.9, 10: 0.55}) and not pruned({2: 0.0, 10: 0.65})  # 3 at the rung: only the best goes on
    assert pruned({10: float("nan")})
    for v in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, intermediate_values={10: v}))
    assert not pruned({10: 0.55}) and pruned({10: 0.45})  # 6 at the rung: the best two go on


def test_study_resumes_and_its_name_changes_with_the_search(env_cfg, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna_search("tpe", OptunaConfig(n_trials=2, pruner="none", storage=storage, workers=1), env_cfg,
                  env_cfg.instances, "s", default_storage="unused")
    study = optuna_search("tpe", OptunaConfig(n_trials=3, pruner="none", storage=storage, workers=1), env_cfg,
                          env_cfg.instances, "s", default_storage="unused")
    assert len(study.trials) == 3  # two loaded from storage, one new
    assert len(optuna.load_study(study_name=study.study_name, storage=storage).trials) == 3
    other = EnvConfig(**{**env_cfg.__dict__, "episode_steps": 6})
    assert study_name("s", "tpe", "schedule", OptunaConfig(), other, env_cfg.instances) != study.study_name
    assert study_name("s", "tpe", "schedule", OptunaConfig(seed=1), env_cfg, env_cfg.instances) != study.study_name


@pytest.mark.parametrize("sampler", ["cmaes", "gp"])
def test_other_samplers_and_journal_storage(env_cfg, tmp_path, sampler):
    cfg = OptunaConfig(n_trials=2, pruner="median", workers=1, storage=f"journal:{tmp_path / 'j.log'}")
    study = optuna_search(sampler, cfg, env_cfg, env_cfg.instances, "j", default_storage="unused")
    assert len(study.trials) == 2 and study.best_value >= 0


def test_bad_storage_url_is_a_clear_error(env_cfg):
    with pytest.raises(ValueError, match="optuna storage 'nosuchdb://x' cannot be opened"):
        optuna_search("tpe", OptunaConfig(storage="nosuchdb://x", n_trials=1), env_cfg, env_cfg.instances, "x",
                      "unused")


def test_nsga2_searches_cer_against_steps_to_align(env_cfg, tmp_path):
    cfg = OptunaConfig(n_trials=3, workers=1, storage=f"sqlite:///{tmp_path / 'mo.db'}")
    study = optuna_search("nsga2", cfg, env_cfg, env_cfg.instances, "mo", default_storage="unused")
    assert len(study.directions) == 2 and len(study.trials) == 3
    assert all(t.values[1] == 8.0 or t.values[1] <= 4 for t in study.trials)  # 2x episode when never aligned
    assert search_within(study).params in [t.params for t in study.best_trials]


def test_parametric_and_constant_schedules_respect_their_parameters():
    p = {"ga_start": 15.0, "ga_end": 1.0, "ga_decay_frac": 0.5, "lr_peak": 1e-3, "lr_final_ratio": 0.1,
         "tf_end": 0.5, "tf_ramp_start": 0.5, "r_start": 5, "r_end": 2, "r_switch_frac": 0.4, "dropout": 0.2}
    s = parametric_schedule(p)
    first, mid, last = s(0, 100), s(50, 100), s(100, 100)
    assert (first.ga_weight, first.r, first.tf_ratio, first.lr) == (15.0, 5, 1.0, 1e-3)
    assert mid.ga_weight == 1.0 and mid.r == 2 and mid.tf_ratio == 1.0
    assert last.tf_ratio == 0.5 and last.lr == pytest.approx(1e-4) and last.dropout == 0.2
    c = {"lr": 5e-4, "ga_weight": 3.0, "dropout": 0.05, "r": 2, "tf_ratio": 0.9}
    assert constant_schedule(c)(0, 100) == constant_schedule(c)(99, 100, 10) == Knobs(**c)


def test_hand_schedule_waits_for_alignment():
    before = [hand(s, 1500, None) for s in (0, 49, 400, 1400)]
    assert before[0].lr < before[1].lr == before[2].lr == 1e-3  # warm-up, then hold
    assert all(k.r == 5 and k.tf_ratio == 1.0 and k.ga_weight == 10.0 for k in before)  # nothing moves unaligned
    aligned_at = 300
    at, later, end = hand(300, 1500, aligned_at), hand(600, 1500, aligned_at), hand(1499, 1500, aligned_at)
    assert at.r == 3 and at.ga_weight == 10.0 and at.tf_ratio == 1.0 and at.lr == pytest.approx(1e-3)
    assert later.ga_weight == 1.0 and later.r == 3 and 0.5 < later.tf_ratio < 1.0
    assert end.r == 2 and end.tf_ratio == pytest.approx(0.5, abs=0.01) and end.lr == pytest.approx(1e-4, rel=0.01)
    assert static(700, 1500, aligned_at) == Knobs()


def test_static_release_is_static_until_aligned_then_lets_guided_attention_go():
    assert static_release(1400, 1500, None) == static_release(299, 1500, 300) == Knobs()
    assert static_release(450, 1500, 300) == Knobs(ga_weight=3.0)  # half-way 5 -> 1, the other knobs static's
    assert static_release(900, 1500, 300) == Knobs(ga_weight=1.0)


def test_censored_median_counts_never_aligned_runs_at_the_budget():
    assert censored_median([100, 200, None], 1500) == {"median": 200.0, "censored": False, "never_aligned": 1}
    # a mean over survivors would say 100; the censored median says most runs never aligned
    assert censored_median([100, None, None], 1500) == {"median": 1500.0, "censored": True, "never_aligned": 2}
    assert censored_median([1500, 1500], 1500)["censored"] is False  # aligned on the last check is not censored


def test_paired_ci_is_a_student_t_interval_of_differences():
    d = paired_ci([3.0, 4.0, 5.0, 6.0], [1.0, 1.5, 2.5, 3.0])  # differences 2, 2.5, 2.5, 3
    assert d["delta_mean"] == pytest.approx(2.5)
    assert d["ci95_low"] == pytest.approx(2.5 - 3.182446 * 0.408248 / 2, rel=1e-4)
    assert d["ci95_low"] > 0 and d["ci95_high"] == pytest.approx(5.0 - d["ci95_low"])
    assert d["p"] == pytest.approx(0.0011722, rel=1e-4)  # scipy.stats.ttest_rel on the same pairs
    with pytest.raises(ValueError, match="paired samples differ"):
        paired_ci([1.0], [1.0, 2.0])


def test_holm_adjusts_the_baselines_together_and_means_carry_intervals_over_voices():
    # sorted 0.01, 0.03, 0.04 of 3 tests: × 3, × 2, × 1, kept monotone
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03, "none": None}) == {"a": 0.03, "b": 0.06, "c": 0.06, "none": None}
    assert holm({"a": 0.6, "b": 0.9}) == {"a": 1.0, "b": 1.0}
    stat = mean_std([1.0, 2.0, 3.0, 4.0])
    assert stat["std"] == pytest.approx(1.290994)  # ddof = 1
    by_voice = mean_std([1.0, 2.0, 3.0, 4.0], ["a", "a", "b", "b"])  # voice means 1.5 and 3.5: n = 2
    assert by_voice["mean"] == 2.5 and by_voice["ci95_low"] == pytest.approx(2.5 - 12.706205 * 1.414214 / 1.414214)
    assert mean_std([1.0])["ci95_low"] is None and mean_std([1.0])["std"] is None


def test_verdict_needs_a_holm_corrected_difference():
    assert verdict({"delta_mean": 0.2, "holm_p": 0.01}) == "ahead"
    assert verdict({"delta_mean": -0.2, "holm_p": 0.01}) == "behind"
    assert verdict({"delta_mean": 0.2, "holm_p": 0.2}) == "tied"
    assert verdict({"delta_mean": 0.2, "holm_p": None}) == "tied"  # one voice: nothing to test


def test_instance_level_pairs_average_each_instances_seeds():
    def record(instance, seed, cer):
        return {"instance": instance, "seed": seed, "steps_to_align": 300, "diverged": False, "run_steps": 1500,
                "wall_s": 1.0, "final": {"cer": cer, "mcd_dtw_sl": 8.0, "gv_ratio": 0.7, "diagonality": 0.9,
                                         "stop_rate": 1.0, "stop_error_rel": 0.0, "score": 0.6}}
    # baseline − policy per run: voice a +0.1, +0.3; voice b +0.2, +0.2; voice c 0.0, +0.4
    baseline = [record(v, s, cer) for v, s, cer in [("a", 0, 1.1), ("a", 1, 1.3), ("b", 0, 1.2), ("b", 1, 1.2),
                                                    ("c", 0, 1.0), ("c", 1, 1.4)]]
    policy = [record(r["instance"], r["seed"], 1.0) for r in baseline]
    spec = {"search_steps": 0, "search_cpu_s": 0.0}
    result = summarise({"static": baseline, "policy": policy}, {"static": spec, "policy": spec}, "policy",
                       {"episode_steps": 1500, "model": "tiny", "instances": ["a", "b", "c"], "seeds": [0, 1]})
    per_run = paired_ci([1.1, 1.3, 1.2, 1.2, 1.0, 1.4], [1.0] * 6)
    assert result["paired"]["static"]["cer"] == per_run | {"holm_p": per_run["p"]}
    # one pair per voice: the mean over its two seeds (0.2 each), so the differences do not vary at all
    by_voice = result["paired_by_instance"]["static"]["cer"]
    assert by_voice["delta_mean"] == pytest.approx(0.2) and by_voice["ci95_low"] == pytest.approx(0.2)
    assert by_voice["p"] < 1e-12 and by_voice["holm_p"] == by_voice["p"]  # one baseline: Holm changes nothing
    assert result["verdict"] == {"static": "ahead"}  # static's CER is higher on every voice
    report = markdown_report(result | {"meta": {"quick": False, "steps_per_action": 20, "eval_every": 100}}, "t")
    # the headline table pairs voices and comes first; the instance × seed table is secondary
    assert report.index("each instance's mean over seeds as one pair") < report.index("Secondary")


def test_an_anytime_budget_that_found_nothing_better_shares_runs_but_keeps_its_own_cost():
    def spec(lr, cpu_s):
        return Spec("optuna_tpe", search_cpu_s=cpu_s, schedule={"params": {"lr": lr}}, search={"trials": int(cpu_s)})
    compared = spec(1e-3, 100.0)
    points = label_points("optuna_tpe", compared, [(0.25, None), (0.5, spec(2e-3, 50.0)), (1, compared),
                                                   (1.5, spec(1e-3, 140.0)), (2, spec(1e-3, 190.0))])
    assert [(label, fraction, s.search_cpu_s) for label, fraction, s in points] == [
        ("optuna_tpe", None, 100.0),  # the compared schedule, under its own name
        ("optuna_tpe@0.5x", 0.5, 50.0),  # a different schedule runs under its own label; no search yet is no point
        ("optuna_tpe", 1.5, 140.0),  # the compared schedule again, found at a higher cost: the same runs
        ("optuna_tpe", 2, 190.0)]  # the identical spec at 1x is the compared point itself
