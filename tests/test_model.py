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


def test_uniform_mask_dropout_matches_inverted_dropout():
    from tacotron.model import _dropout
    x = torch.ones(200_000)
    y = _dropout(x, 0.3, training=True)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01 and abs(y.mean().item() - 1.0) < 0.01
    assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / 0.7).item()}
    assert _dropout(x, 0.3, training=False) is x and _dropout(x, 0.0, training=True) is x


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


def test_decoder_step_equals_the_two_nn_lstm_cells():
    dec = Tacotron2(ModelConfig(n_symbols=40)).decoder
    cfg, b, n = dec.cfg, 3, 11
    mem = dec.attention.prepare(torch.randn(b, n, cfg.encoder_dim), torch.tensor([n, 7, 4]))
    state = DecoderState(torch.randn(b, cfg.attention_rnn_dim), torch.randn(b, cfg.attention_rnn_dim),
                         torch.randn(b, cfg.decoder_rnn_dim), torch.randn(b, cfg.decoder_rnn_dim),
                         torch.rand(b, n).softmax(1), torch.rand(b, n), torch.randn(b, cfg.encoder_dim))
    prenet_out = torch.randn(b, cfg.prenet_dim)
    w = dec.cell_weights()
    new = dec.step(dec.prenet_gates(prenet_out, w), state, mem, w)
    ah, ac = dec.attention_rnn(torch.cat([prenet_out, state.context], 1), (state.attention_hidden, state.attention_cell))
    dh, dc = dec.decoder_rnn(torch.cat([ah, new.context], 1), (state.decoder_hidden, state.decoder_cell))
    for got, want in ((new.attention_hidden, ah), (new.attention_cell, ac), (new.decoder_hidden, dh),
                      (new.decoder_cell, dc)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_teacher_forced_pass_equals_the_step_by_step_path():
    """tf_ratio = 1 projects all steps at once; tf_ratio just below 1 takes the per-step path, which
    then still feeds ground truth. Without random dropout both must give the same outputs and grads."""
    torch.manual_seed(0)
    model = Tacotron2(ModelConfig(n_symbols=40, prenet_dropout=0.0, conv_dropout=0.0)).eval()
    text, lengths = torch.randint(1, 40, (2, 9)), torch.tensor([9, 6])
    mels = torch.randn(2, 80, 24)
    outs, grads = [], []
    for tf in (1.0, 1 - 1e-9):
        model.zero_grad()
        out = model(text, lengths, mels, r=3, tf_ratio=tf)
        out.mel_post.square().mean().add(out.gate.sigmoid().mean()).backward()
        outs.append(out)
        grads.append(model.decoder.attention_rnn.weight_ih.grad.clone())
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
