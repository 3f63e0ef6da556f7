"""The TSS transformer exactly as Clauwaert et al. (2021) built it: ``dna.model.architecture:
clauwaert2021``.

Source: jdcla/DNA-transformer, ``run_regulon.sh`` -> ``train.py`` -> ``MemTransformerLM`` with
``RelPartialLearnableMultiHeadAttn`` in ``mem_transformer.py`` (``conv_size 7``, ``pre_conv``
off, ``mem_len 0``, ``dropatt 0``, ``clamp_len -1``, ``--not_tied``).

Conventions (what differs from the project's own architecture in :mod:`seqxai.dna_model`)
---------------------------------------------------------------------------------------
- Per layer: a bias-free ``qkv_net = Linear(d_model, 3 * n_heads * d_head)``; q, k and v are
  split into heads and each goes through its own *full* ``Conv1d(d_head, d_head, conv_width,
  padding=(conv_width - 1) // 2)`` over the sequence (``motif_net_q/k/v``), one convolution for
  all heads (heads folded into the batch axis, after the head split, as the original). The
  convolution is **centred**: key index ``j`` summarises the layer input at ``j-3..j+3``
  (:func:`seqxai.dna_model.key_receptive_field`).
- Scores: Transformer-XL relative positions, ``((q_i + r_w_bias) . k_j + (q_i + r_r_bias) .
  r_net(R_{i-j})) / sqrt(d_head)`` with ``R_d`` the sinusoid of distance ``d`` (no clamp) and
  ``r_w_bias``, ``r_r_bias[head, d_head]`` parameters of the model, shared by all layers.
  Attention is causal inside a band: query ``i`` attends keys ``i - context .. i`` (``context
  511``: 512 keys, the original's segment / evaluation window). No attention sink, no
  dropout on attention probabilities (``dropatt 0``).
- Bias-free ``o_net = Linear(n_heads * d_head, d_model)``; layer output ``LayerNorm(x +
  dropout(o_net(ctx)))`` (post-norm residual). No feed-forward block.
- Embedding: ``Embedding(4, d_model)`` scaled by ``sqrt(d_model)`` (the original's
  ``AdaptiveEmbedding.emb_scale``); N and PAD embed to the zero vector (the original has no
  such tokens). q/k/v rows at PAD positions are zeroed before the convolution, so a window
  right-padded with PAD ends exactly as an original segment ends (the convolution's zero
  padding). Dropout (``dropout``) on the embedding, each attention output and the last hidden
  state, as the original.
- Output ``out_layer = Linear(d_model, 2)``: 2-class logits ``l[..., class]``
  (:meth:`ClauwaertTransformer.class_logits`). :meth:`ClauwaertTransformer.forward` returns
  ``logit = l_1 - l_0``, so ``sigmoid(logit) = softmax(l)_1`` and the project's
  BCE-with-logits on it (``pos_weight`` 1) *is* the original's 2-class softmax cross-entropy.
- Causality, exactly: attention never reads a key after its query, but every centred
  convolution reads 3 positions ahead of its own layer input. So layer ``l``'s (1-based) q, k,
  v, attention rows and output at position ``i`` depend on tokens ``<= i + 3 l`` and never on
  later ones; the logit at ``i`` on tokens ``<= i + 3 n_layers`` (``i + 18`` with 6 layers).
  With the label of a TSS at ``t`` placed at ``t + 20``, the predicting position reads up to
  ``t + 38``. The original trains and evaluates so, and so does this model.
- Initialisation as ``train.py``'s ``weights_init``: linear weights and the embedding
  N(0, 0.02), biases 0, LayerNorm weights N(1, 0.02), ``r_w_bias``/``r_r_bias`` N(0, 0.02);
  the convolutions keep PyTorch's default.
- The attention machinery (exact chunked banded attention, attention rows for the probe,
  dense attention for tests) is :class:`seqxai.dna_model.TSSLayer`'s, with ``position xl``,
  ``attention causal`` and no sink; the model has the same interface (``forward`` with
  ``return_attention`` / ``attention_queries``, ``config``, ``key_shift``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dna_model import TSSLayer, attention_rows_only, sinusoid_encoding
from .io import DataError
from .tss_windows import PAD

ARCHITECTURE = "clauwaert2021"
#: model settings this architecture reads (other dna.model keys do not apply to it)
SETTINGS = ("n_layers", "n_heads", "d_model", "d_head", "context", "conv_width", "dropout", "label_offset",
            "attn_chunk")
INIT_STD = 0.02


class NucleotideEmbedding(nn.Module):
    """``Embedding(4, d_model)`` over A, C, G, T; N (4) and PAD (5) embed to zeros."""

    def __init__(self, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4, d_model))
        nn.init.normal_(self.weight, 0.0, INIT_STD)

    def forward(self, x):
        acgt = x < 4
        return F.embedding(torch.where(acgt, x, torch.zeros_like(x)), self.weight) * acgt[..., None]


class ClauwaertLayer(TSSLayer):
    """One ``RelPartialLearnableDecoderLayer`` of the original (module docstring): bias-free
    q/k/v map, centred full convolutions shared by the heads, Transformer-XL scores with the
    model's shared biases, bias-free output map, post-norm residual, no feed-forward."""

    def __init__(self, owner, d_model, n_heads, d_head, context, conv_width, dropout):
        nn.Module.__init__(self)  # TSSLayer's attention methods only read the attributes set here
        self._owner = [owner]     # a list: the model is not registered as a submodule of its layer
        self.sink, self.causal, self.position, self.d_min = False, True, "xl", 0
        self.h, self.dh, self.context, self.cw = n_heads, d_head, context, conv_width
        inner = n_heads * d_head
        self.qkv_net = nn.Linear(d_model, 3 * inner, bias=False)
        pad = (conv_width - 1) // 2
        self.motif_net_q = nn.Conv1d(d_head, d_head, conv_width, padding=pad)
        self.motif_net_k = nn.Conv1d(d_head, d_head, conv_width, padding=pad)
        self.motif_net_v = nn.Conv1d(d_head, d_head, conv_width, padding=pad)
        self.register_buffer("rel_enc", sinusoid_encoding(context + 1, d_model), persistent=False)
        self.r_net = nn.Linear(d_model, inner, bias=False)
        self.o_net = nn.Linear(inner, d_model, bias=False)
        self.layer_norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(0.0)           # on attention probabilities: dropatt 0, as the original
        self.out_drop = nn.Dropout(dropout)

    # TSSLayer's scores read ``u`` and ``v``: here the model's r_w_bias and r_r_bias
    @property
    def u(self):
        return self._owner[0].r_w_bias

    @property
    def v(self):
        return self._owner[0].r_r_bias

    @property
    def out(self):
        """The output map under the project's name (attribution hooks its input)."""
        return self.o_net

    def _conv(self, conv, t):
        """``t[batch, T, head, d_head]`` -> centred convolution over T, heads sharing ``conv``
        -> ``[batch, head, T, d_head]``."""
        B, T, h, dh = t.shape
        y = conv(t.permute(0, 2, 3, 1).reshape(B * h, dh, T))
        return y.view(B, h, dh, T).transpose(-1, -2)

    def forward(self, x, key_pad, need_attn=False, chunk=64, queries=None, rows_only=False):
        """``x[batch, T, d_model]`` -> (``LayerNorm(x + o_net(attention))``, attention or None);
        attention and ``rows_only`` as :meth:`seqxai.dna_model.TSSLayer.forward`."""
        B, T, _ = x.shape
        w = self.qkv_net(x) * (~key_pad)[..., None].to(x.dtype)   # PAD rows = the conv's zero padding
        wq, wk, wv = w.view(B, T, 3, self.h, self.dh).unbind(2)
        q, k, v = (self._conv(conv, t) for conv, t in
                   ((self.motif_net_q, wq), (self.motif_net_k, wk), (self.motif_net_v, wv)))
        if rows_only:
            return None, self.attention_rows(q, k, key_pad, queries)
        ctx, attn = self._attend(q, k, v, key_pad, need_attn, chunk, queries)
        return self.layer_norm(x + self.out_drop(self.o_net(ctx))), attn


class ClauwaertTransformer(nn.Module):
    """``MemTransformerLM`` of the original as configured by ``run_regulon.sh`` (module
    docstring); per-position TSS logits ``l_1 - l_0`` from nucleotide tokens."""

    def __init__(self, n_layers=6, n_heads=6, d_model=32, d_head=32, context=511, conv_width=7, dropout=0.1,
                 label_offset=20, attn_chunk=64):
        super().__init__()
        if conv_width % 2 == 0:
            raise DataError(f"dna.model.conv_width = {conv_width}: the clauwaert2021 architecture's centred "
                            "convolution (padding (conv_width - 1) / 2) needs an odd width")
        self.config = {"architecture": ARCHITECTURE, "n_layers": n_layers, "n_heads": n_heads,
                       "d_model": d_model, "d_head": d_head, "context": context, "conv_width": conv_width,
                       "dropout": dropout, "label_offset": label_offset, "attn_chunk": attn_chunk}
        self.embed = NucleotideEmbedding(d_model)
        self.emb_scale = math.sqrt(d_model)
        self.r_w_bias = nn.Parameter(torch.empty(n_heads, d_head))
        self.r_r_bias = nn.Parameter(torch.empty(n_heads, d_head))
        args = (d_model, n_heads, d_head, context, conv_width, dropout)
        self.layers = nn.ModuleList(ClauwaertLayer(self, *args) for _ in range(n_layers))
        self.out_layer = nn.Linear(d_model, 2)
        self.drop = nn.Dropout(dropout)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, INIT_STD)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, INIT_STD)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.r_w_bias, 0.0, INIT_STD)
        nn.init.normal_(self.r_r_bias, 0.0, INIT_STD)

    @property
    def key_shift(self) -> int:
        """Key index ``j`` is centred on token ``j - key_shift``: 0, the convolution is centred."""
        return 0

    def hidden(self, x, return_attention=False, attention_queries=None):
        """Last hidden state ``h[batch, T, d_model]`` (after dropout) and the attention (or None)."""
        key_pad = x == PAD
        h = self.drop(self.embed(x) * self.emb_scale)
        attns = []
        for layer in self.layers:
            h, a = layer(h, key_pad, need_attn=return_attention, chunk=self.config["attn_chunk"],
                         queries=attention_queries)
            attns.append(a)
        return self.drop(h), (torch.stack(attns, dim=1) if return_attention else None)

    def class_logits(self, x):
        """The original's 2-class logits ``l[batch, T, class]`` (class 1 = TSS label)."""
        return self.out_layer(self.hidden(x)[0])

    def forward(self, x, return_attention=False, attention_queries=None, attention_layers=None):
        """``x[batch, T]`` tokens -> ``logits[batch, T] = l_1 - l_0``; with ``return_attention``
        also ``attn[batch, layer, head, query, key]`` (rows of ``attention_queries`` only when
        given); ``attention_layers`` as :meth:`seqxai.dna_model.TSSTransformer.forward`."""
        if attention_layers is not None:
            h = self.drop(self.embed(x) * self.emb_scale)
            return None, attention_rows_only(self.layers, h, x == PAD, attention_queries, attention_layers,
                                             self.config["attn_chunk"])
        h, attn = self.hidden(x, return_attention, attention_queries)
        lg = self.out_layer(h)
        logits = lg[..., 1] - lg[..., 0]
        return (logits, attn) if return_attention else logits


def build_clauwaert(cfg: dict) -> ClauwaertTransformer:
    """The model from a full ``dna.model`` dict; settings that this architecture fixes must not
    ask for something else (the error names the key)."""
    fixed = {"position": "xl", "attention": "causal", "attention_sink": False}
    for key, want in fixed.items():
        if key in cfg and cfg[key] != want:
            raise DataError(f"dna.model.{key} = {cfg[key]!r}: architecture {ARCHITECTURE} has {key} {want!r} "
                            f"(the original model); set dna.model.{key}: {str(want).lower()}")
    return ClauwaertTransformer(**{k: cfg[k] for k in SETTINGS if k in cfg})
