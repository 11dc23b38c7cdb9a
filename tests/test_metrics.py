import numpy as np
import pytest
import torch

from tacotron.metrics import (alignment_stats, composite_score, free_run_stats, gate_accuracy, is_aligned,
                              gv_ratio, mcd_dtw_sl, monotonic_diagonality, steps_to_align)


def _diagonal(t: int, n: int) -> torch.Tensor:
    a = torch.zeros(t, n)
    a[torch.arange(t), (torch.arange(t) * n) // t] = 1.0
    return a


def _stats(a: torch.Tensor):
    t, n = a.shape
    return alignment_stats(a[None], torch.tensor([n]), torch.tensor([t]))


@pytest.mark.parametrize("t,n", [(30, 20), (20, 30), (60, 15), (12, 12)])
def test_sharp_diagonal(t, n):
    s = _stats(_diagonal(t, n))
    assert s["diagonality"] >= 0.9 and s["monotonicity"] >= 0.9
    assert s["focus"] == pytest.approx(1.0)
    if t >= n:  # a one-hot diagonal with fewer steps than tokens must skip some
        assert s["coverage"] >= 0.9


@pytest.mark.parametrize("t,n", [(30, 20), (40, 40)])
def test_uniform(t, n):
    s = _stats(torch.full((t, n), 1.0 / n))
    assert s["diagonality"] <= 0.3 and s["focus"] <= 0.3


@pytest.mark.parametrize("t,n", [(30, 20), (60, 20), (20, 30)])
def test_anti_diagonal(t, n):
    s = _stats(_diagonal(t, n).flip(1))
    assert s["diagonality"] <= 0.3 and s["monotonicity"] <= 0.3


def test_stuck_on_first_token():
    a = torch.zeros(30, 20)
    a[:, 0] = 1.0
    s = _stats(a)
    assert s["diagonality"] <= 0.3 and s["coverage"] <= 0.3


def test_padding_does_not_change_scores():
    sharp = _diagonal(30, 20)
    padded = torch.rand(2, 45, 33)  # garbage in the padding
    padded[0, :30, :20] = sharp
    padded[1, :30, :20] = sharp
    expected = _stats(sharp)
    got = alignment_stats(padded, torch.tensor([20, 20]), torch.tensor([30, 30]))
    assert got == pytest.approx(expected)


def test_batch_mean():
    a = torch.zeros(2, 30, 20)
    a[0] = _diagonal(30, 20)
    a[1] = 1.0 / 20
    both = alignment_stats(a, torch.tensor([20, 20]), torch.tensor([30, 30]))
    assert both["focus"] == pytest.approx((1.0 + 1.0 / 20) / 2)


def test_gate_accuracy_is_balanced():
    lengths = torch.tensor([10, 6])
    never = torch.full((2, 10), -5.0)
    perfect = never.clone()
    perfect[0, 9:] = 5.0
    perfect[1, 5:] = 5.0
    assert gate_accuracy(never, lengths) == pytest.approx(0.5)
    assert gate_accuracy(perfect, lengths) == pytest.approx(1.0)
    assert gate_accuracy(torch.full((2, 10), 5.0), lengths) == pytest.approx(0.5)


# ---- free-running figures (r-independent) ----------------------------------------------------

def _one_hot_path(positions: np.ndarray, n: int) -> np.ndarray:
    a = np.zeros((len(positions), n))
    a[np.arange(len(positions)), np.clip(np.round(positions).astype(int), 0, n - 1)] = 1.0
    return a


@pytest.mark.parametrize("t,n", [(30, 20), (20, 30), (60, 15), (12, 12)])
def test_monotonic_diagonality_scores_a_sharp_diagonal_high_and_failures_low(t, n):
    diag = _diagonal(t, n).numpy()
    assert monotonic_diagonality(diag) >= 0.95
    assert monotonic_diagonality(diag[:, ::-1]) <= 0.3  # anti-diagonal
    assert monotonic_diagonality(np.full((t, n), 1.0 / n)) <= 0.3  # blur
    stuck = np.zeros((t, n))
    stuck[:, 0] = 1.0
    assert monotonic_diagonality(stuck) <= 0.3


def test_diagonality_tolerates_tempo_changes_teacher_forced_and_free_running_alike():
    """Slow speech, a pause, then fast speech: a good alignment, which a straight band marked down to
    0.48; the teacher-forced window figure (the env's observation) uses the same tempo-tolerant one."""
    t, n = 60, 30
    positions = np.concatenate([np.linspace(0, 7, 30), np.full(10, 7.5), np.linspace(8, 29, 20)])
    a = _one_hot_path(positions, n)
    assert monotonic_diagonality(a) >= 0.85
    assert _stats(torch.tensor(a, dtype=torch.float32))["diagonality"] == pytest.approx(monotonic_diagonality(a))
    skipping = _one_hot_path(np.concatenate([np.linspace(0, 5, 30), np.linspace(25, 29, 30)]), n)
    assert monotonic_diagonality(skipping) <= 0.6  # a jump over 20 tokens is not tempo


def test_mcd_dtw_sl_forgives_timing_but_not_content_or_length():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(80, 40)).astype(np.float32)
    assert mcd_dtw_sl(target, target) == pytest.approx(0.0)
    slower = np.repeat(target, 2, axis=1)  # each frame held twice as long: DTW alone would call it exact
    assert mcd_dtw_sl(slower, target) == pytest.approx(0.0)  # 0 × the length ratio 2
    other = rng.normal(size=(80, 40)).astype(np.float32)
    assert mcd_dtw_sl(other, target) > 5.0
    noisy = target + rng.normal(0, 0.3, target.shape).astype(np.float32)
    noisy_slow = np.repeat(noisy, 2, axis=1)
    assert mcd_dtw_sl(noisy_slow, target) == pytest.approx(2 * mcd_dtw_sl(noisy, target), rel=0.05)


def test_gv_ratio_is_one_for_the_truth_and_low_for_blur():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(80, 60))
    assert gv_ratio(target, target) == pytest.approx(1.0)
    assert gv_ratio(np.repeat(target.mean(1, keepdims=True), 60, axis=1), target) == pytest.approx(0.0)
    assert gv_ratio(0.5 * target, target) == pytest.approx(0.25)


def _free_run(pred_lengths, fired, target_len=50):
    target = np.zeros((80, target_len), dtype=np.float32)
    mels = [np.zeros((80, n), dtype=np.float32) for n in pred_lengths]
    att = [_diagonal(20, 10).numpy()] * len(mels)
    window = {"focus": 1.0, "monotonicity": 1.0, "coverage": 1.0}
    return free_run_stats(mels, [target] * len(mels), att, fired, cer=0.0, window=window)


def test_stop_figures_and_the_aligned_gate():
    good = _free_run([50, 52, 48, 51], [True] * 4)
    assert good.stop_rate == 1.0 and good.stop_error == pytest.approx(1.25) and good.intelligibility == 1.0
    assert is_aligned(good) and composite_score(good) == pytest.approx(0.4 + 0.3 + 0.3 * good.stop_score)
    never_stops = _free_run([110] * 4, [False] * 4)
    assert never_stops.stop_rate == 0.0 and never_stops.stop_score == 0.0 and not is_aligned(never_stops)
    late = _free_run([60] * 4, [True] * 4)  # stops, but 20 % late
    assert late.stop_error_rel == pytest.approx(0.2) and not is_aligned(late)


def test_steps_to_align_needs_two_consecutive_aligned_checks():
    assert steps_to_align([(50, True), (100, False), (150, True), (200, True)]) == 200
    assert steps_to_align([(50, True), (100, False), (150, True)]) is None  # never held
    assert steps_to_align([]) is None
