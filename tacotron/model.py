"""Tacotron2 (Shen et al. 2018) following NVIDIA's tacotron2 ``model.py``, with two additions
that let a schedule change knobs while it trains:

* the reduction factor ``r`` is an argument of ``forward``: the frame projection is sized for
  ``R_MAX`` frames and its first ``r * n_mels`` rows are used, as coqui's gradual training does,
  so changing ``r`` never re-initialises anything;
* ``tf_ratio`` < 1 enables scheduled sampling (Bengio et al. 2015) in the teacher-forced pass.

Decoder state is passed explicitly (``DecoderState``), never kept on ``self``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tacotron.data import R_MAX


@dataclass
class ModelConfig:
    """Layer sizes. ``preset()`` gives tiny (~0.5M), small (~2M) and full (NVIDIA, ~28M)."""

    n_symbols: int = 0  # filled from the text frontend
    n_mels: int = 80
    embedding_dim: int = 64
    encoder_dim: int = 64
    attention_rnn_dim: int = 128
    decoder_rnn_dim: int = 128
    prenet_dim: int = 64
    attention_dim: int = 32
    location_filters: int = 32
    location_kernel: int = 31
    postnet_dim: int = 64
    postnet_convs: int = 3
    # Fixed dropouts: NVIDIA keeps the prenet's on at inference (variation) and uses 0.5 in the
    # encoder and postnet. The scheduled `dropout` knob drives attention and decoder dropout.
    prenet_dropout: float = 0.5
    conv_dropout: float = 0.5
    max_decoder_steps: int = 1000
    gate_threshold: float = 0.5

    @staticmethod
    def preset(name: str, n_symbols: int, n_mels: int = 80) -> "ModelConfig":
        sizes = {
            "tiny": {},
            "small": dict(embedding_dim=128, encoder_dim=128, attention_rnn_dim=256, decoder_rnn_dim=256,
                          prenet_dim=128, attention_dim=64, postnet_dim=128, postnet_convs=5),
            "full": dict(embedding_dim=512, encoder_dim=512, attention_rnn_dim=1024, decoder_rnn_dim=1024,
                         prenet_dim=256, attention_dim=128, postnet_dim=512, postnet_convs=5),
        }
        if name not in sizes:
            raise ValueError(f"model={name!r} is not a preset; choose one of {sorted(sizes)}")
        return ModelConfig(n_symbols=n_symbols, n_mels=n_mels, **sizes[name])


class ModelOutput(NamedTuple):
    mel: torch.Tensor  # [B, n_mels, T_dec * r] before the postnet
    mel_post: torch.Tensor  # [B, n_mels, T_dec * r]
    gate: torch.Tensor  # [B, T_dec] logits, one per decoder step
    alignments: torch.Tensor  # [B, T_dec, N]


class DecoderState(NamedTuple):
    attention_hidden: torch.Tensor
    attention_cell: torch.Tensor
    decoder_hidden: torch.Tensor
    decoder_cell: torch.Tensor
    attention: torch.Tensor  # [B, N]
    attention_cum: torch.Tensor  # [B, N]
    context: torch.Tensor  # [B, encoder_dim]


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout from a uniform mask: the same distribution as ``F.dropout``, whose CPU
    Bernoulli sampling is ~4x slower and was ~8% of a proxy step."""
    if not training or p == 0:
        return x
    return x * ((torch.rand_like(x) >= p).to(x.dtype) / (1 - p))


def _conv_bn(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.BatchNorm1d(c_out))


class Encoder(nn.Module):
    """3 × (conv k5 + BN + ReLU + dropout) and a BiLSTM: ``[B, N]`` ids -> ``[B, N, encoder_dim]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.n_symbols, cfg.embedding_dim)
        dims = [cfg.embedding_dim] + [cfg.encoder_dim] * 3
        self.convs = nn.ModuleList(_conv_bn(dims[i], dims[i + 1], 5) for i in range(3))
        self.dropout = cfg.conv_dropout
        self.lstm = nn.LSTM(cfg.encoder_dim, cfg.encoder_dim // 2, batch_first=True, bidirectional=True)

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding(text).transpose(1, 2)
        for conv in self.convs:
            x = _dropout(F.relu(conv(x)), self.dropout, self.training)
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), text_lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=text.shape[1])[0]


class Prenet(nn.Module):
    """2 × (linear + ReLU + dropout); dropout stays on at inference, as in Tacotron2."""

    def __init__(self, n_in: int, dim: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(n_in, dim, bias=False), nn.Linear(dim, dim, bias=False)])
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = _dropout(F.relu(layer(x)), self.dropout, training=True)
        return x


class AttentionMemory(NamedTuple):
    """What every decoder step reads from the encoder side (computed once per batch)."""

    memory: torch.Tensor  # [B, N, encoder_dim]
    processed: torch.Tensor  # [B, N, attention_dim]
    pad_mask: torch.Tensor  # [B, N], True on padding
    location_weight: torch.Tensor  # [attention_dim, 2 * location_kernel]


class LocationSensitiveAttention(nn.Module):
    """Additive attention with location features from the previous and cumulative weights.

    NVIDIA's location conv (2 -> filters, kernel k, no bias) and the dense layer after it
    (filters -> attention_dim, no bias) are both linear, so each step applies their product once to
    unfolded windows: the same function and parameters, without a tiny convolution per decoder
    step, which was a quarter of the CPU profile.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.query_layer = nn.Linear(cfg.attention_rnn_dim, cfg.attention_dim, bias=False)
        self.memory_layer = nn.Linear(cfg.encoder_dim, cfg.attention_dim, bias=False)
        self.v = nn.Linear(cfg.attention_dim, 1, bias=False)
        self.location_conv = nn.Conv1d(2, cfg.location_filters, cfg.location_kernel,
                                       padding=cfg.location_kernel // 2, bias=False)
        self.location_dense = nn.Linear(cfg.location_filters, cfg.attention_dim, bias=False)

    def prepare(self, memory: torch.Tensor, text_lengths: torch.Tensor) -> AttentionMemory:
        pad_mask = torch.arange(memory.shape[1], device=memory.device)[None, :] >= text_lengths[:, None]
        conv = self.location_conv.weight  # [filters, 2, k]
        location_weight = self.location_dense.weight @ conv.reshape(conv.shape[0], -1)
        return AttentionMemory(memory, self.memory_layer(memory), pad_mask, location_weight)

    def location_features(self, state: "DecoderState", location_weight: torch.Tensor) -> torch.Tensor:
        """``[B, N, attention_dim]`` = location_dense(location_conv([previous; cumulative]))."""
        k = self.location_conv.kernel_size[0]
        x = F.pad(torch.stack([state.attention, state.attention_cum], dim=1), (k // 2, k // 2))
        windows = x.unfold(2, k, 1).permute(0, 2, 1, 3).flatten(2)  # [B, N, 2k], channel-major as in conv
        return windows @ location_weight.T

    def forward(self, query, mem: AttentionMemory, state: "DecoderState"):
        """query ``[B, attention_rnn_dim]`` -> (context ``[B, encoder_dim]``, weights ``[B, N]``)."""
        energies = self.v(torch.tanh(self.query_layer(query)[:, None, :]
                                     + self.location_features(state, mem.location_weight) + mem.processed))
        weights = torch.softmax(energies.squeeze(-1).masked_fill(mem.pad_mask, float("-inf")), dim=1)
        return torch.bmm(weights[:, None, :], mem.memory).squeeze(1), weights


class CellWeights(NamedTuple):
    """The decoder LSTMs' parameters regrouped once per pass, so a step does one matmul per cell.

    ``nn.LSTMCell`` multiplies input and hidden state separately (two matmuls, four in backward).
    Concatenating them gives the same function with half the small matmuls, and the attention
    LSTM's prenet part, which does not depend on the recurrence, becomes one matmul over all
    teacher-forced steps. The parameters stay those of the two ``nn.LSTMCell`` modules.
    """

    attention_prenet: torch.Tensor  # [4H_att, prenet_dim]
    attention_bias: torch.Tensor  # [4H_att], both biases
    attention_recurrent: torch.Tensor  # [4H_att, encoder_dim + H_att] for [context; hidden]
    decoder: torch.Tensor  # [4H_dec, H_att + encoder_dim + H_dec] for [attention hidden; context; hidden]
    decoder_bias: torch.Tensor  # [4H_dec]


def _lstm(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM update from pre-activations in ``nn.LSTMCell``'s (input, forget, cell, output) order."""
    i, f, g, o = gates.chunk(4, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class Decoder(nn.Module):
    """Autoregressive decoder emitting ``r`` frames and one stop logit per step."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.prenet = Prenet(cfg.n_mels, cfg.prenet_dim, cfg.prenet_dropout)
        self.attention_rnn = nn.LSTMCell(cfg.prenet_dim + cfg.encoder_dim, cfg.attention_rnn_dim)
        self.attention = LocationSensitiveAttention(cfg)
        self.decoder_rnn = nn.LSTMCell(cfg.attention_rnn_dim + cfg.encoder_dim, cfg.decoder_rnn_dim)
        self.attention_dropout = nn.Dropout(0.1)
        self.decoder_dropout = nn.Dropout(0.1)
        self.frame_projection = nn.Linear(cfg.decoder_rnn_dim + cfg.encoder_dim, cfg.n_mels * R_MAX)
        self.gate_layer = nn.Linear(cfg.decoder_rnn_dim + cfg.encoder_dim, 1)

    def initial_state(self, memory: torch.Tensor) -> DecoderState:
        b, n, _ = memory.shape
        zeros = memory.new_zeros
        return DecoderState(zeros(b, self.cfg.attention_rnn_dim), zeros(b, self.cfg.attention_rnn_dim),
                            zeros(b, self.cfg.decoder_rnn_dim), zeros(b, self.cfg.decoder_rnn_dim),
                            zeros(b, n), zeros(b, n), zeros(b, self.cfg.encoder_dim))

    def dropout_masks(self, n_steps: int, batch: int, device) -> list:
        """Inverted-dropout masks ``[n_steps, B, H]`` for the attention and decoder LSTM outputs, drawn
        in two calls per batch instead of two per step (per-step sampling was ~8% of a CPU step).
        An entry is None when not training or p = 0."""
        masks = []
        for module, dim in ((self.attention_dropout, self.cfg.attention_rnn_dim),
                            (self.decoder_dropout, self.cfg.decoder_rnn_dim)):
            p = module.p
            use = self.training and p > 0
            masks.append(_dropout(torch.ones(n_steps, batch, dim, device=device), p, True) if use else None)
        return masks

    def cell_weights(self) -> CellWeights:
        att, dec, p = self.attention_rnn, self.decoder_rnn, self.cfg.prenet_dim
        return CellWeights(att.weight_ih[:, :p], att.bias_ih + att.bias_hh,
                           torch.cat([att.weight_ih[:, p:], att.weight_hh], dim=1),
                           torch.cat([dec.weight_ih, dec.weight_hh], dim=1), dec.bias_ih + dec.bias_hh)

    @staticmethod
    def prenet_gates(prenet_out: torch.Tensor, w: CellWeights) -> torch.Tensor:
        """The attention LSTM's pre-activations from the prenet output (any leading shape)."""
        return F.linear(prenet_out, w.attention_prenet, w.attention_bias)

    def step(self, prenet_gates, state: DecoderState, mem: AttentionMemory, w: CellWeights,
             masks=(None, None)) -> DecoderState:
        """One decoder step of the two LSTMs and the attention -> new state."""
        ah, ac = _lstm(prenet_gates + F.linear(torch.cat([state.context, state.attention_hidden], dim=1),
                                               w.attention_recurrent), state.attention_cell)
        if masks[0] is not None:
            ah = ah * masks[0]
        context, weights = self.attention(ah, mem, state)
        dh, dc = _lstm(F.linear(torch.cat([ah, context, state.decoder_hidden], dim=1), w.decoder, w.decoder_bias),
                       state.decoder_cell)
        if masks[1] is not None:
            dh = dh * masks[1]
        return DecoderState(ah, ac, dh, dc, weights, state.attention_cum + weights, context)

    def project(self, states: list[DecoderState], r: int):
        """Frames ``[B, len(states) * r, n_mels]`` and gate logits ``[B, len(states)]`` of decoder steps.

        Projection is not part of the recurrence, so a teacher-forced pass applies it once to all
        steps: two large matmuls instead of two small ones per step, forward and backward.
        """
        out = torch.stack([torch.cat([s.decoder_hidden, s.context], dim=1) for s in states], dim=1)
        rows = r * self.cfg.n_mels  # the first r frames of the R_MAX-sized projection
        frames = F.linear(out, self.frame_projection.weight[:rows], self.frame_projection.bias[:rows])
        return frames.reshape(out.shape[0], -1, self.cfg.n_mels), self.gate_layer(out).squeeze(2)

    def forward(self, memory, text_lengths, mels, r: int, tf_ratio: float):
        """Teacher-forced pass over ``mels`` ``[B, n_mels, T]`` (T a multiple of r).

        With ``tf_ratio`` < 1, each step feeds the model's own previous frame (detached) instead of
        the ground truth with probability 1 - tf_ratio, per item.
        """
        b, n_mels, t = mels.shape
        n_steps = t // r
        mem = self.attention.prepare(memory, text_lengths)
        att_masks, dec_masks = self.dropout_masks(n_steps, b, mels.device)
        # Input of step i is the last frame of step i-1; step 0 gets a zero "go" frame.
        targets = mels[:, :, r - 1::r].permute(2, 0, 1)  # [n_steps, B, n_mels]
        inputs = torch.cat([mels.new_zeros(1, b, n_mels), targets[:-1]], dim=0)
        w = self.cell_weights()
        # unbind, not indexing: indexing step i back-propagates a zero-filled copy of the whole tensor
        gates_all = self.prenet_gates(self.prenet(inputs), w).unbind(0) if tf_ratio >= 1.0 else None
        state = self.initial_state(memory)
        states, last_frame = [], None
        for i in range(n_steps):
            if gates_all is not None:
                prenet_gates = gates_all[i]
            else:
                prev = inputs[i]
                if i > 0:
                    use_truth = torch.rand(b, 1, device=mels.device) < tf_ratio
                    prev = torch.where(use_truth, prev, last_frame)
                prenet_gates = self.prenet_gates(self.prenet(prev), w)
            masks = (None if att_masks is None else att_masks[i], None if dec_masks is None else dec_masks[i])
            state = self.step(prenet_gates, state, mem, w, masks)
            states.append(state)
            if gates_all is None:  # scheduled sampling feeds the model's own (detached) frame back
                last_frame = self.project([state], r)[0][:, -1].detach()
        frames, gates = self.project(states, r)
        return frames.transpose(1, 2), gates, torch.stack([s.attention for s in states], dim=1)

    @torch.no_grad()
    def infer(self, memory, text_lengths, r: int, max_steps: int):
        """Free-running decode until every item's gate fires -> (mel, gate, alignments, n_steps ``[B]``)."""
        b = memory.shape[0]
        mem = self.attention.prepare(memory, text_lengths)
        state = self.initial_state(memory)
        w = self.cell_weights()
        prev = memory.new_zeros(b, self.cfg.n_mels)
        lengths = torch.full((b,), max_steps, dtype=torch.long, device=memory.device)
        frames, gates, alignments = [], [], []
        for i in range(max_steps):
            state = self.step(self.prenet_gates(self.prenet(prev), w), state, mem, w)
            f, g = self.project([state], r)
            frames.append(f)
            gates.append(g)
            alignments.append(state.attention)
            prev = f[:, -1]
            stopped = (torch.sigmoid(g[:, 0]) > self.cfg.gate_threshold) & (lengths == max_steps)
            lengths[stopped] = i + 1
            if bool((lengths < max_steps).all()):
                break
        mel = torch.cat(frames, dim=1).transpose(1, 2)
        return mel, torch.cat(gates, dim=1), torch.stack(alignments, dim=1), lengths


class Postnet(nn.Module):
    """Residual conv stack refining the decoder's mel: ``[B, n_mels, T]`` -> same."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dims = [cfg.n_mels] + [cfg.postnet_dim] * (cfg.postnet_convs - 1) + [cfg.n_mels]
        self.convs = nn.ModuleList(_conv_bn(dims[i], dims[i + 1], 5) for i in range(cfg.postnet_convs))
        self.dropout = cfg.conv_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            x = _dropout(torch.tanh(x) if i < len(self.convs) - 1 else x, self.dropout, self.training)
        return x


class Tacotron2(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.n_symbols <= 0:
            raise ValueError("ModelConfig.n_symbols must be set from the text frontend")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.postnet = Postnet(cfg)

    def set_dropout(self, p: float) -> None:
        """Attention and decoder dropout probability, changed in place."""
        self.decoder.attention_dropout.p = p
        self.decoder.decoder_dropout.p = p

    def forward(self, text, text_lengths, mels, r: int, tf_ratio: float = 1.0) -> ModelOutput:
        """Teacher-forced pass. ``mels`` ``[B, n_mels, T]`` is padded here to a multiple of ``r``."""
        if mels.shape[2] % r:
            mels = F.pad(mels, (0, r - mels.shape[2] % r))
        memory = self.encoder(text, text_lengths)
        mel, gate, alignments = self.decoder(memory, text_lengths, mels, r, tf_ratio)
        return ModelOutput(mel, mel + self.postnet(mel), gate, alignments)

    @torch.no_grad()
    def infer(self, text, text_lengths, r: int, max_steps: int | None = None):
        """Free-running synthesis -> (ModelOutput, decoder steps per item ``[B]``)."""
        memory = self.encoder(text, text_lengths)
        mel, gate, alignments, lengths = self.decoder.infer(
            memory, text_lengths, r, max_steps or self.cfg.max_decoder_steps)
        return ModelOutput(mel, mel + self.postnet(mel), gate, alignments), lengths
