import math

import pytest
import torch

from tacotron import checkpoint
from tacotron.knobs import Knobs
from tacotron.trainer import Trainer, TrainerConfig


def _trainer(corpus, model_cfg, **kw):
    return Trainer(corpus, model_cfg, TrainerConfig(batch_size=4, device="cpu", **kw), knobs=Knobs(r=3, ga_weight=10))


def test_loss_falls(tiny_corpus, tiny_model_cfg):
    tr = _trainer(tiny_corpus, tiny_model_cfg)
    first = tr.run(3)
    last = tr.run(40)[-3:]
    assert sum(s.mel_post for s in last) < 0.5 * sum(s.mel_post for s in first)
    s = last[-1]
    assert s.grad_norm > 0 and isinstance(s.clipped, bool) and 0 <= s.gate_accuracy <= 1
    assert 0 <= s.diagonality <= 1 and 0 <= s.focus <= 1 and 0 <= s.coverage <= 1


def test_validation_reports_teacher_forced_and_inference(tiny_corpus, tiny_model_cfg):
    tr = _trainer(tiny_corpus, tiny_model_cfg)
    tr.run(5)
    v1, v2 = tr.validate(), tr.validate()
    assert v1.mel_loss > 0 and 0 <= v1.infer.diagonality <= 1 and 0 <= v1.infer.stop_rate <= 1
    assert v1.infer.cer > 0 and v1.infer.mcd_dtw_sl > 0 and v1.infer.gv_ratio >= 0
    assert v1.infer.intelligibility == max(0.0, 1.0 - v1.infer.cer) and 0 <= v1.score <= 1
    assert v1.infer.utterances == len(tiny_corpus.val)  # the whole split, free-running
    assert v1.flat() == v2.flat()  # deterministic
    assert v1.extras["alignment"].ndim == 2
    # another seed draws other prenet masks (benchmarks/reward_noise.py measures that noise); a seed repeats.
    # The first frame comes from the go frame, which no mask changes: a stop token that never fires decodes on.
    with torch.no_grad():
        tr.model.decoder.gate_layer.bias.fill_(-100.0)
    v1 = tr.validate()
    other, again = tr.free_run(tiny_corpus.val, seed=7), tr.free_run(tiny_corpus.val, seed=7)
    assert not torch.equal(other[1]["mel"], v1.extras["mel"]) and torch.equal(other[1]["mel"], again[1]["mel"])


def test_trainer_owns_its_random_stream(tiny_corpus, tiny_model_cfg, tmp_path):
    """Creating, stepping and restoring a trainer leave torch's global RNG (which SB3 samples actions
    from) alone, and global draws between steps do not change training."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _trainer(tiny_corpus, tiny_model_cfg)
    a.run(2)
    a.save(tmp_path / "a.pt")
    a.restore(tmp_path / "a.pt")
    a.reseed(5)
    assert torch.equal(torch.get_rng_state(), before)
    reference = [s.mel for s in _trainer(tiny_corpus, tiny_model_cfg).run(3)]
    b = _trainer(tiny_corpus, tiny_model_cfg)
    interleaved = []
    for _ in range(3):
        torch.rand(1000)  # e.g. an action sampled between optimiser steps
        interleaved.append(b.step().mel)
    assert interleaved == reference


def test_validation_does_not_shift_training_randomness(tiny_corpus, tiny_model_cfg):
    third_step = _trainer(tiny_corpus, tiny_model_cfg).run(3)[-1].mel
    b = _trainer(tiny_corpus, tiny_model_cfg)
    b.run(2)
    b.validate()
    assert b.step().mel == third_step


def test_non_finite_loss_rolls_back_without_poisoning(tiny_corpus, tiny_model_cfg):
    tr = _trainer(tiny_corpus, tiny_model_cfg, snapshot_every=2)
    tr.run(4)
    good = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with torch.no_grad():
        tr.model.decoder.frame_projection.weight[0, 0] = float("nan")
    stats = tr.step()
    assert stats.rolled_back and math.isnan(stats.grad_norm) and tr.rollbacks == 1
    assert all(torch.equal(good[k], v) for k, v in tr.model.state_dict().items())
    after = tr.step()
    assert not after.rolled_back and math.isfinite(after.mel)


def test_exploding_lr_never_crashes(tiny_corpus, tiny_model_cfg):
    tr = Trainer(tiny_corpus, tiny_model_cfg, TrainerConfig(batch_size=4, device="cpu", grad_clip=1e6),
                 knobs=Knobs(lr=1.0, r=3))
    stats = tr.run(15)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert all(math.isfinite(s.grad_norm) or s.rolled_back for s in stats)


def test_resume_is_exact(tiny_corpus, tiny_model_cfg, tmp_path):
    straight = _trainer(tiny_corpus, tiny_model_cfg)
    straight.set_knobs(Knobs(r=3, ga_weight=10, tf_ratio=0.7))  # scheduled sampling draws random numbers
    straight.run(6)

    first = _trainer(tiny_corpus, tiny_model_cfg)
    first.set_knobs(Knobs(r=3, ga_weight=10, tf_ratio=0.7))
    first.run(3)
    first.save(tmp_path / "step_3.pt")
    resumed = _trainer(tiny_corpus, tiny_model_cfg, seed=0)
    resumed.restore(tmp_path / "step_3.pt")
    assert resumed.step_count == 3 and resumed.knobs.tf_ratio == 0.7
    resumed.run(3)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_is_atomic_and_weights_only(tiny_corpus, tiny_model_cfg, tmp_path):
    tr = _trainer(tiny_corpus, tiny_model_cfg)
    path = tmp_path / "ckpt" / "step_0.pt"
    tr.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["step_0.pt"]  # no temp file left
    state = torch.load(path, weights_only=True)
    assert state["step"] == 0 and state["knobs"]["r"] == 3
    assert checkpoint.latest(path.parent) == path


def test_restore_refuses_other_model(tiny_corpus, tiny_model_cfg, tmp_path):
    import dataclasses
    _trainer(tiny_corpus, tiny_model_cfg).save(tmp_path / "a.pt")
    other = _trainer(tiny_corpus, dataclasses.replace(tiny_model_cfg, decoder_rnn_dim=64))
    with pytest.raises(ValueError, match="decoder_rnn_dim"):
        other.restore(tmp_path / "a.pt")


def test_tensorboard_logs(tiny_corpus, tiny_model_cfg, tmp_path):
    tr = Trainer(tiny_corpus, tiny_model_cfg, TrainerConfig(batch_size=4, device="cpu"), log_dir=tmp_path)
    tr.run(2)
    val = tr.validate()
    tr.logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "audio": 0}).Reload()
    tags = acc.Tags()
    assert {"train/mel_post", "knobs/lr", "knobs/ga_weight", "val/infer_diagonality"} <= set(tags["scalars"])
    assert {"val/alignment", "val/mel"} <= set(tags["images"])
    assert ("val/audio" in tags["audio"]) == (val.extras["mel"].shape[1] >= 4)


@pytest.mark.slow
def test_tiny_model_aligns_on_a_proxy_voice(align_corpus):
    """The proof that it learns: r=3 with strong guided attention aligns within 250 steps."""
    from tacotron.model import ModelConfig
    cfg = ModelConfig.preset("tiny", align_corpus.frontend.n_symbols)
    tr = Trainer(align_corpus, cfg, TrainerConfig(batch_size=16, device="cpu"), knobs=Knobs(r=3, ga_weight=10))
    tr.run(250)
    v = tr.validate()
    assert v.diagonality >= 0.7 and v.infer.diagonality >= 0.6, v
