import torch

from tacotron.model import DecoderState, ModelConfig, Tacotron2


def test_fused_location_features_equal_nvidia_conv_then_dense():
    model = Tacotron2(ModelConfig(n_symbols=40))
    att = model.decoder.attention
    b, n = 3, 17
    prev, cum = torch.rand(b, n).softmax(1), torch.rand(b, n) * 3
    state = DecoderState(*[None] * 4, prev, cum, None)
    memory = torch.randn(b, n, model.cfg.encoder_dim)
    mem = att.prepare(memory, torch.tensor([n, 10, 5]))
    reference = att.location_dense(att.location_conv(torch.stack([prev, cum], 1)).transpose(1, 2))
    torch.testing.assert_close(att.location_features(state, mem.location_weight), reference, rtol=1e-5, atol=1e-5)


def test_dropout_masks_follow_p_and_mode():
    model = Tacotron2(ModelConfig(n_symbols=40))
    dec = model.decoder
    model.set_dropout(0.3)
    att, dec_mask = dec.dropout_masks(200, 8, "cpu")
    assert att.shape == (200, 8, model.cfg.attention_rnn_dim)
    assert abs((att == 0).float().mean().item() - 0.3) < 0.02 and att.max().item() == torch.tensor(1 / 0.7).item()
    model.eval()
    assert dec.dropout_masks(5, 2, "cpu") == [None, None]
    model.train()
    model.set_dropout(0.0)
    assert dec.dropout_masks(5, 2, "cpu") == [None, None]


def test_presets_have_the_documented_sizes():
    counts = {name: sum(p.numel() for p in Tacotron2(ModelConfig.preset(name, 40)).parameters()) / 1e6
              for name in ("tiny", "small", "full")}
    assert 0.4 < counts["tiny"] < 0.7 and 1.5 < counts["small"] < 2.5 and 25 < counts["full"] < 32


def test_regotron_penalty_prefers_forward_alignments():
    from tacotron.loss import monotonic_penalty
    t, n = 30, 20
    diag = torch.zeros(1, t, n)
    diag[0, torch.arange(t), (torch.arange(t) * n) // t] = 1.0
    lengths_n, lengths_t = torch.tensor([n]), torch.tensor([t])
    forward = monotonic_penalty(diag, lengths_n, lengths_t, delta=0.5)
    backward = monotonic_penalty(diag.flip(2), lengths_n, lengths_t, delta=0.5)
    assert forward < 0.02 < backward
    soft = torch.rand(2, t, n, requires_grad=True)
    monotonic_penalty(soft.softmax(2), torch.tensor([n, 12]), torch.tensor([t, 25]), 1.0).backward()
    assert soft.grad.abs().sum() > 0
