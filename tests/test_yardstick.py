"""The quality figures, proved on known degradations of ground-truth test speech and on a learning
curve before anything is judged by them (issue #27). Figures: benchmarks/results/yardstick.md."""
import pytest

from tacotron.asr import corpus_recogniser
from tacotron.audio import AudioConfig
from tacotron.data import DataConfig
from tacotron.degradations import score_degradations
from tacotron.model import ModelConfig
from tacotron.proxy import ProxyOptions
from tacotron.run import load_data
from tacotron.trainer import Trainer, TrainerConfig

BROKEN = ("temporal_blur", "mean_spectrum", "silence", "never_stops", "words_cut", "phrase_repeated")


def _corpus(instance: str):
    return load_data(instance, ProxyOptions(), AudioConfig(), DataConfig(), progress=False)


@pytest.fixture(scope="module", params=["en-gb-scotland@185:2", "en-us-nyc@195:2"])  # dev2 voices
def figures(request):
    corpus = _corpus(request.param)
    return score_degradations(corpus.test, corpus_recogniser(corpus, progress=False))


@pytest.mark.slow
def test_cer_ranks_every_degradation_below_the_ground_truth(figures):
    """The headline sees the most: every broken output loses at least 0.15 of CER to the truth."""
    cer = {name: f["cer"] for name, f in figures.items()}
    assert cer["ground_truth"] <= 0.10
    assert cer["light_noise"] <= cer["ground_truth"] + 0.10  # still intelligible
    for name in BROKEN:
        assert cer[name] >= cer["ground_truth"] + 0.15, (name, cer)
    assert cer["mean_spectrum"] >= 0.9 and cer["silence"] >= 0.9  # nothing heard
    assert cer["temporal_blur"] > cer["light_noise"]


@pytest.mark.slow
def test_mcd_dtw_sl_ranks_noise_blur_and_nothing_in_order_and_makes_length_pay(figures):
    mcd = {name: f["mcd_dtw_sl"] for name, f in figures.items()}
    assert mcd["ground_truth"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < mcd["light_noise"] < mcd["temporal_blur"] < mcd["mean_spectrum"]
    assert mcd["silence"] > mcd["temporal_blur"]
    # an output that runs on, skips or repeats pays the length ratio on top of its distortion
    for name in ("never_stops", "words_cut", "phrase_repeated"):
        assert mcd[name] > mcd["light_noise"], (name, mcd)


@pytest.mark.slow
def test_gv_ratio_sees_over_smoothing(figures):
    gv = {name: f["gv_ratio"] for name, f in figures.items()}
    assert gv["ground_truth"] == pytest.approx(1.0)
    assert gv["light_noise"] > 1.0  # noise adds variance
    assert gv["temporal_blur"] < 0.8
    assert gv["mean_spectrum"] == pytest.approx(0.0, abs=1e-9) and gv["silence"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_headline_improves_along_a_static_learning_curve():
    """One static run from scratch: CER at steps 20, 300 and 1,200 must improve in that order (the
    old mel DTW figure scored the untrained model best). 2026-12-02: 0.973, 0.811, 0.715; the curve is
    not monotone in between (0.847 at step 600), so the last check waits for the fall after 900."""
    corpus = _corpus("en-gb-x-rp@175:1")
    trainer = Trainer(corpus, ModelConfig.preset("tiny", corpus.frontend.n_symbols), TrainerConfig(device="cpu"))
    cers = []
    for step in (20, 300, 1200):
        trainer.run(step - trainer.step_count)
        cers.append(trainer.free_run(corpus.test)[0].cer)
    assert cers[0] > cers[1] > cers[2], cers
