import json

import optuna
import pytest

from controller.baselines import OptunaConfig, optuna_search, parametric_schedule
from controller.compare import CompareConfig, compare
from env.training_env import EnvConfig
from tacotron.trainer import TrainerConfig


@pytest.fixture
def env_cfg(tiny_corpus_dir):
    return EnvConfig(instances=[str(tiny_corpus_dir)], episode_steps=4, steps_per_action=2,
                     trainer=TrainerConfig(batch_size=4, device="cpu"))


def test_quick_compare_writes_json_markdown_and_plots(tiny_corpus_dir, tmp_path):
    small = EnvConfig(instances=[str(tiny_corpus_dir)], episode_steps=6, steps_per_action=2,
                      trainer=TrainerConfig(batch_size=4, device="cpu"))
    cfg = CompareConfig(methods=["static", "hand", "optuna_tpe"], data=[str(tiny_corpus_dir)], episode_steps=6,
                        seeds=[0, 1], out_dir=str(tmp_path), quick=True, optuna=OptunaConfig(n_trials=2), env=small)
    result = compare(cfg, progress=False)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["methods"] == ["static", "hand", "optuna_tpe"] == result["methods"]
    for method in saved["methods"]:
        for key in ("final_val_mel_loss", "inference_diagonality", "gate_accuracy", "steps_to_align", "diverged"):
            assert set(saved[method][key]) == {"mean", "std"}
        assert saved[method]["runs"] == 1  # quick: one instance, one seed
    assert saved["optuna_tpe"]["search_steps"] > 0 and saved["static"]["search_steps"] == 0
    table = (tmp_path / "compare.md").read_text()
    assert table.count("\n| ") == 4 and "optuna_tpe" in table
    assert saved["optuna_tpe"]["search_curve"][-1]["steps"] == saved["optuna_tpe"]["search_steps"]
    for png in ("compare_curves.png", "compare_knobs.png", "compare_alignments.png", "compare_budget.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_optuna_study_resumes_from_storage(env_cfg, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = OptunaConfig(n_trials=2, pruner="none", storage=storage)
    optuna_search("tpe", cfg, env_cfg, env_cfg.instances, "s", default_storage="unused")
    study = optuna_search("tpe", OptunaConfig(n_trials=3, pruner="none", storage=storage), env_cfg,
                          env_cfg.instances, "s", default_storage="unused")
    assert len(study.trials) == 3  # two loaded from storage, one new
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3


@pytest.mark.parametrize("sampler", ["cmaes", "gp"])
def test_other_samplers_and_journal_storage(env_cfg, tmp_path, sampler):
    cfg = OptunaConfig(n_trials=2, pruner="median", storage=f"journal:{tmp_path / 'j.log'}")
    study = optuna_search(sampler, cfg, env_cfg, env_cfg.instances, "j", default_storage="unused")
    assert len(study.trials) == 2 and study.best_value >= 0


def test_bad_storage_url_is_a_clear_error(env_cfg):
    with pytest.raises(ValueError, match="optuna storage 'nosuchdb://x' cannot be opened"):
        optuna_search("tpe", OptunaConfig(storage="nosuchdb://x"), env_cfg, env_cfg.instances, "x", "unused")


def test_parametric_schedule_respects_its_parameters():
    p = {"ga_start": 15.0, "ga_end": 1.0, "ga_decay_frac": 0.5, "lr_peak": 1e-3, "lr_final_ratio": 0.1,
         "tf_end": 0.5, "tf_ramp_start": 0.5, "r_start": 5, "r_end": 2, "r_switch_frac": 0.4, "dropout": 0.2}
    s = parametric_schedule(p)
    first, mid, last = s(0, 100), s(50, 100), s(100, 100)
    assert (first.ga_weight, first.r, first.tf_ratio, first.lr) == (15.0, 5, 1.0, 1e-3)
    assert mid.ga_weight == 1.0 and mid.r == 2 and mid.tf_ratio == 1.0
    assert last.tf_ratio == 0.5 and last.lr == pytest.approx(1e-4) and last.dropout == 0.2


def test_nsga2_searches_mel_loss_against_steps_to_align(env_cfg, tmp_path):
    from controller.baselines import best_params
    cfg = OptunaConfig(n_trials=3, storage=f"sqlite:///{tmp_path / 'mo.db'}")
    study = optuna_search("nsga2", cfg, env_cfg, env_cfg.instances, "mo", default_storage="unused")
    assert len(study.directions) == 2 and len(study.trials) == 3
    assert all(t.values[1] in (8.0,) or t.values[1] <= 4 for t in study.trials)  # 2x episode when never aligned
    assert best_params(study) in [t.params for t in study.best_trials]
