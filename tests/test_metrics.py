import pytest
import torch

from tacotron.metrics import alignment_stats, gate_accuracy


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
