"""One parametrised suite over the five knobs: each really changes the computation."""
import dataclasses

import pytest
import torch

from tacotron.knobs import KNOB_NAMES, Knobs
from tacotron.loss import tacotron_loss
from tacotron.trainer import Trainer, TrainerConfig


@pytest.fixture
def trainer(tiny_corpus, tiny_model_cfg):
    return Trainer(tiny_corpus, tiny_model_cfg, TrainerConfig(batch_size=4, device="cpu"))


def _lr(trainer):
    return {g["lr"] for g in trainer.optimizer.param_groups}


def _dropout(trainer):
    d = trainer.model.decoder
    return {d.attention_dropout.p, d.decoder_dropout.p}


def _output_frames(trainer):
    batch = trainer.sampler.batch(0)
    out = trainer.model(batch.text, batch.text_lengths, batch.mels, trainer.knobs.r)
    return out.gate.shape[1], out.mel.shape[2]


def _prenet_inputs(trainer):
    """Decoder inputs fed to the prenet and the teacher frames, over one forward pass."""
    captured = []
    hook = trainer.model.decoder.prenet.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    batch = trainer.sampler.batch(0)
    torch.manual_seed(0)
    trainer.model(batch.text, batch.text_lengths, batch.mels, trainer.knobs.r, trainer.knobs.tf_ratio)
    hook.remove()
    r = trainer.knobs.r
    truth = batch.mels[:, :, r - 1::r].permute(2, 0, 1)[:-1]
    fed = captured[0] if len(captured) == 1 else torch.stack(captured)
    return fed[1:], truth


@torch.no_grad()
def _guided_share(trainer):
    batch = trainer.sampler.batch(0)
    k = trainer.knobs
    out = trainer.model(batch.text, batch.text_lengths, batch.mels, k.r)
    terms = tacotron_loss(out, batch.mels, batch.mel_lengths, batch.text_lengths, k.r, k.ga_weight, trainer.loss_cfg)
    return float(terms.total - terms.mel - terms.mel_post - terms.gate), float(k.ga_weight * terms.guided)


CHANGES = {"lr": 3e-4, "ga_weight": 12.0, "dropout": 0.3, "r": 5, "tf_ratio": 0.0}


@pytest.mark.parametrize("name", KNOB_NAMES)
def test_knob_changes_computation(trainer, name):
    params_before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.set_knobs(dataclasses.replace(trainer.knobs, **{name: CHANGES[name]}))
    if name == "lr":
        assert _lr(trainer) == {3e-4}
    elif name == "dropout":
        assert _dropout(trainer) == {0.3}
    elif name == "r":
        steps, frames = _output_frames(trainer)
        t = trainer.sampler.batch(0).mels.shape[2]
        assert steps == -(-t // 5) and frames == steps * 5
        # changing r re-initialises nothing
        assert all(torch.equal(a, b) for a, b in zip(params_before, trainer.model.parameters()))
    elif name == "tf_ratio":
        fed, truth = _prenet_inputs(trainer)
        assert not torch.allclose(fed, truth)
        trainer.set_knobs(dataclasses.replace(trainer.knobs, tf_ratio=1.0))
        fed, truth = _prenet_inputs(trainer)
        assert torch.equal(fed, truth)
    elif name == "ga_weight":
        extra, expected = _guided_share(trainer)
        assert extra == pytest.approx(expected, rel=1e-4) and expected > 0


@pytest.mark.parametrize("name,bad", [("lr", 0.0), ("ga_weight", -1.0), ("dropout", 1.0), ("r", 7),
                                      ("r", 2.5), ("tf_ratio", 1.5)])
def test_out_of_bounds_knobs_are_refused(name, bad):
    with pytest.raises(ValueError, match=f"knob {name}="):
        Knobs(**{name: bad})


def test_set_knobs_rejects_non_knobs(trainer):
    with pytest.raises(TypeError):
        trainer.set_knobs({"lr": 1e-3})


def test_each_r_trains(trainer):
    for r in range(1, 7):
        trainer.set_knobs(Knobs(r=r))
        stats = trainer.step()
        assert stats.mel > 0 and not stats.rolled_back
