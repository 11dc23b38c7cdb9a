import json
import shutil
from pathlib import Path

import pytest

from controller.cli import main
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig, load_corpus
from tacotron.knobs import Knobs
from tacotron.proxy import ProxyOptions
from tacotron.run import load_data


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "data" in out and "demo" in out


@pytest.mark.parametrize("command", [["data", "proxy"], ["train"], ["demo"], ["controller", "train"],
                                     ["controller", "deploy"], ["controller", "explain"], ["env", "build-bank"],
                                     ["bench", "compare"]])
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "Defaults (configs/" in out and "could not compose" not in out


def test_subcommand_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "max_steps: 400" in out and "schedule: hand" in out


@pytest.mark.parametrize("override,message", [
    ("max_steps=0", "max_steps=0 must be >= 1"),
    ("nonsense=1", "nonsense"),
    ("trainer.grad_clip=abc", "trainer.grad_clip"),
    ("model=huge", "model='huge'"),
    ("schedule=magic", "schedule='magic'"),
    ("dataset.val_fraction=2", "data.val_fraction=2"),
])
def test_bad_config_names_the_key(override, message, capsys):
    assert main(["train", override]) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["train", f"data={tmp_path}/nothing/"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_train_runs_and_resumes(tiny_corpus_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", f"data={tiny_corpus_dir}", "trainer.batch_size=4", "val_every=3", "ckpt_every=3",
            f"out_dir={out}", "tensorboard=false", "schedule=static"]
    assert main(args + ["max_steps=3"]) == 0
    assert main(args + ["max_steps=6", "resume=true"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [h["step"] for h in summary["history"]] == [3, 6]
    rows = (out / "knobs.csv").read_text().strip().split("\n")
    assert rows[0] == "step,lr,ga_weight,dropout,r,tf_ratio" and len(rows) == 7


def test_data_proxy_command(tmp_path):
    assert main(["data", "proxy", "voice=en-gb", "rate=200", "n_utts=3", f"out={tmp_path}"]) == 0
    (folder,) = tmp_path.iterdir()
    assert len((folder / "metadata.csv").read_text().strip().split("\n")) == 3
    assert main(["data", "proxy", "voice=xx-nope", "n_utts=2", f"out={tmp_path}"]) == 1
    assert len(list(tmp_path.iterdir())) == 1  # the failed build left nothing behind


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_on_a_tiny_budget(tmp_path):
    ctl, cmp = tmp_path / "ctl", tmp_path / "cmp"
    tiny = ["controller.env.proxy.n_utts=24", "controller.env.proxy.max_words=3", "controller.env.episode_steps=4",
            "controller.env.steps_per_action=2", "controller.env.trainer.batch_size=4",
            "controller.env.bank.run_steps=8", "controller.env.bank.save_every=4",
            "controller.env.bank.perturbed_runs=0",
            "controller.ppo.n_steps=8", "controller.ppo.batch_size=8", "controller.n_envs=1",
            "controller.time_budget_s=2", "controller.checkpoint_every=8", "controller.tensorboard=false"]
    assert main(["demo", f"controller.out_dir={ctl}", f"compare.policy={ctl}/policy", f"compare.out_dir={cmp}",
                 "compare.episode_steps=8", *tiny]) == 0
    result = json.loads((cmp / "compare.json").read_text())
    assert result["methods"] == ["static", "policy"]
    assert result["meta"]["steps_per_action"] == 2  # K fixed in optimiser steps, as in training
    policy_run = json.loads(next((cmp / "compare_runs").glob("policy__*.json")).read_text())
    untouched = {(k["dropout"], k["r"], k["tf_ratio"]) for k in policy_run["knob_trajectory"]}
    static = Knobs()  # frozen in demo.yaml, they keep static's values from scratch: the policy sets lr, ga_weight
    assert untouched == {(static.dropout, static.r, static.tf_ratio)}
    table = (cmp / "compare.md").read_text()
    assert table.count("\n| static |") == 2 and table.count("\n| policy |") == 1  # methods, then paired rows
    assert "Paired differences baseline − policy" in table


def _system_output(corpus_dir: Path, out: Path, split_ids: list[str], extra: str | None = None) -> Path:
    """A 'system' whose output is the ground truth: the corpus's own wavs of ``split_ids``."""
    out.mkdir()
    for utt_id in split_ids:
        shutil.copy(corpus_dir / "wavs" / f"{utt_id}.wav", out / f"{utt_id}.wav")
    if extra:
        shutil.copy(corpus_dir / "wavs" / f"{split_ids[0]}.wav", out / f"{extra}.wav")
    return out


def test_eval_scores_an_ljspeech_folder_and_refuses_wavs_of_no_split(tiny_corpus_dir, tmp_path, capsys, caplog):
    data = tmp_path / "mine"
    shutil.copytree(tiny_corpus_dir, data)
    (data / "proxy.json").unlink()  # a user's dataset: its own recogniser (a tiny one here, to stay quick)
    test_ids = [u.utt_id for u in load_corpus(data, AudioConfig(), DataConfig(), progress=False).test]
    tiny_asr = ["asr.channels=16", "asr.hidden=16", "asr.layers=1", "asr.steps=3", "asr.batch_size=4"]
    wavs = _system_output(data, tmp_path / "system", test_ids, extra="not-an-utterance")
    assert main(["eval", f"wavs={wavs}", f"data={data}", "dnsmos=true", *tiny_asr]) == 0
    result = json.loads((wavs / "eval.json").read_text())
    assert {"cer", "mcd_dtw_sl", "gv_ratio", "utterances", "cer_ground_truth"} <= set(result)
    assert 1.0 <= result["dnsmos_ovrl"] <= 5.0 and result["dnsmos_p808"] == result["dnsmos_p808_ground_truth"]
    assert result["utterances"] == len(test_ids) and result["mcd_dtw_sl"] == pytest.approx(0.0, abs=1e-6)
    assert result["cer"] == pytest.approx(result["cer_ground_truth"])  # the output is the ground truth
    assert "| CER |" in capsys.readouterr().out and "not-an-utterance" in caplog.text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", f"wavs={empty}", f"data={data}", *tiny_asr]) == 1
    assert "no wav in" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_scores_a_proxy_instance(tmp_path):
    instance = "en-gb-x-rp@175:1"
    corpus = load_data(instance, ProxyOptions(), AudioConfig(), DataConfig(), progress=False)
    wavs = _system_output(corpus.root, tmp_path / "system", [u.utt_id for u in corpus.test])
    assert main(["eval", f"wavs={wavs}", f"data={instance}"]) == 0
    result = json.loads((wavs / "eval.json").read_text())
    assert result["cer"] == pytest.approx(result["cer_ground_truth"]) and result["cer"] <= 0.10
    assert result["gv_ratio"] == pytest.approx(1.0)
