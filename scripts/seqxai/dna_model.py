"""TSS-labelling transformer (after Clauwaert et al. 2021): the architecture, built, saved and
loaded here; the data windows and split: :mod:`seqxai.tss_windows`; training and metrics:
:mod:`seqxai.tss_training`.

Conventions
-----------
- Attention: ``attn[layer, head, query, key]`` (a batch axis in front when batched). Banded;
  ``attention: causal`` (default, the paper's): query ``i`` may attend key index ``j`` iff
  ``0 <= i - j <= context``; ``attention: bidirectional``: iff ``|i - j| <= context``, so the
  output at ``i`` also reads up to ``context`` positions downstream. The q/k/v convolution
  stays causal in both modes, so key index ``j`` keeps its meaning (centre ``j - 3``) and the
  probe's mapping holds; the Transformer-XL table then covers distances ``-context..context``.
  The training/evaluation windows (:func:`seqxai.tss_windows.window_spans`) are cut for the causal model: each
  scored position gets its ``context`` upstream positions, so in bidirectional mode the
  positions near a window's right end see fewer than ``context`` downstream positions.
- Width-7 convolution on queries, keys and values: a depthwise convolution over the
  sequence, applied to the q/k/v projections. To keep the model strictly causal it is a
  *causal* convolution (key index ``j`` summarises tokens ``j-6..j``). Its receptive field
  is centred on token ``j - KEY_SHIFT`` (``KEY_SHIFT = (conv_width - 1) // 2 = 3``), so
  attention on key index ``j`` reflects tokens ``c-3..c+3`` with ``c = j - 3``. The probe
  maps key indices to token positions with this shift (:func:`key_token_index`).
- Positional scheme (``position``; the choice is **xl**, the default): the Transformer-XL
  relative position encoding of the original model (Dai et al. 2019),
  ``score[h, i, j] = ((q_i + u_h) . k_j + (q_i + v_h) . W_R R_{i-j}) / sqrt(d_head)`` with
  ``R_d`` the sinusoidal encoding of the distance ``d = i - j`` (``0..context``), ``W_R`` a
  learned projection and ``u``, ``v`` learned per-head vectors; no absolute positions, one
  learning rate for all weights. ``position: rotary`` (RoPE, Su et al. 2021) turns pairs of
  q/k dimensions by ``t * 10000^(-2m/d_head)``, so positions act only through q.k and there
  is no content-free ``v . W_R R`` term. Measured on quick 1-layer demo runs: xl learns the
  TSS task better (test PR AUC 0.10-0.12 vs 0.005-0.03); with plain softmax attention, in
  both, a trained -10 head attends at a fixed distance whatever the sequence (its profile
  peak is as high around random non-TSS positions as around TSSs), which the probe's
  background profile reports (see the attention sink below). Both replace an earlier free
  per-head distance-bias table trained at 10x learning rate.
- Attention sink (``attention_sink``, default on; off in the Clauwaert preset, as the
  original): every softmax gets one extra key with score 0 and value 0 ("softmax off by
  one", Miller 2023; cf. the sink tokens of Xiao et al. 2023):
  ``attn[i, j] = exp(s_ij) / (1 + sum_j' exp(s_ij'))``. A head can then attend to nothing
  when its motif is absent instead of spreading its mass over fixed offsets, so rows sum to
  at most 1 (the rest is the sink's). Measured on the demo genome (demo model, 3 training
  seeds; benchmarks/dna_position_encoding.py): without the sink every -10 head keeps its peak around random non-TSS positions
  (TSS / background at the peak 0.8-1.0x); with it every seed has a -10 head whose peak
  falls in the background (1.5x, 2.2x, 3.2x). A learned sink score per head did no better
  (1.2x, 1.8x, 4.8x).
- Head width ``d_head`` is its own setting (default 32, as the original model), so
  ``n_heads * d_head`` need not equal ``d_model`` (the paper's 6 heads with d_model 32).
- Probe attention: :meth:`TSSTransformer.forward` with ``attention_queries`` computes only
  those attention rows (``attn[batch, layer, head, query, key]`` with one query per entry),
  never a dense ``T x T`` matrix.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .io import DataError
from .tss_windows import N_TOKENS, PAD

DEFAULT_MODEL = {"architecture": "seqxai", "n_layers": 2, "n_heads": 4, "d_model": 32, "d_head": 32,
                 "context": 128, "conv_width": 7,
                 "ff_mult": 2, "dropout": 0.0, "label_offset": 20, "attn_chunk": 64,
                 "position": "xl", "attention": "causal", "attention_sink": True}
ATTENTION_MODES = ("causal", "bidirectional")
#: ``seqxai``: this module's TSSTransformer; ``clauwaert2021``: the original (:mod:`seqxai.dna_clauwaert`)
ARCHITECTURES = ("seqxai", "clauwaert2021")


def sinusoid_encoding(n_positions: int, dim: int, start: int = 0) -> torch.Tensor:
    """Transformer-XL relative encoding ``R[d, :] = [sin(d * f), cos(d * f)]`` for distances
    ``d = start..start+n_positions-1`` with ``f_k = 10000^(-2k / dim)`` (``dim`` columns)."""
    half = -(-dim // 2)
    inv_freq = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) * 2 / dim))
    ang = torch.arange(start, start + n_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat([ang.sin(), ang.cos()], dim=1)[:, :dim]


def rotate(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) of ``x[..., T, d]`` at positions ``0..T-1``:
    pairs ``(x_2m, x_2m+1)`` turned by ``t * base^(-2m/d)``, so ``rotate(q)_i . rotate(k)_j``
    depends on positions only through ``i - j``."""
    T, d = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class TSSLayer(nn.Module):
    """Pre-norm transformer layer: banded attention (causal or bidirectional) with a
    width-``conv_width`` causal depthwise convolution on q, k, v and Transformer-XL relative
    position scores; then a feed-forward block. Heads have their own width ``d_head`` (not ``d_model / n_heads``)."""

    #: bytes of one attention-score tensor per group of query chunks (bounds probe memory)
    SCORE_BYTES = 128 * 2**20

    def __init__(self, d_model, n_heads, d_head, context, conv_width, ff_mult, dropout, position="xl",
                 attention="causal", attention_sink=False):
        super().__init__()
        self.sink = bool(attention_sink)
        if position not in ("rotary", "xl"):
            raise DataError(f"dna.model.position: '{position}' (expected rotary or xl)")
        if attention not in ATTENTION_MODES:
            raise DataError(f"dna.model.attention: '{attention}' (expected causal or bidirectional)")
        self.causal = attention == "causal"
        if position == "rotary" and d_head % 2:
            raise DataError(f"dna.model: rotary position encoding needs an even d_head (got {d_head})")
        self.position = position
        self.h, self.dh, self.context, self.cw = n_heads, d_head, context, conv_width
        inner = n_heads * d_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * inner)
        self.conv = nn.Conv1d(3 * inner, 3 * inner, conv_width, groups=3 * inner)
        # distances 0..context (causal) or -context..context (bidirectional), row = d - d_min
        self.d_min = 0 if self.causal else -context
        self.register_buffer("rel_enc", sinusoid_encoding(context + 1 - self.d_min, d_model, self.d_min),
                             persistent=False)
        self.r_net = nn.Linear(d_model, inner, bias=False)          # W_R of Transformer-XL
        self.u = nn.Parameter(torch.zeros(n_heads, d_head))         # global content bias
        self.v = nn.Parameter(torch.zeros(n_heads, d_head))         # global position bias
        self.out = nn.Linear(inner, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(),
                                nn.Linear(ff_mult * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_pad, need_attn=False, chunk=64, queries=None, rows_only=False):
        """``x[batch, T, d]`` -> (``x'``, attention or None).

        The layer output always comes from a chunked banded attention (queries in chunks of
        ``chunk``, each against its ``chunk + context`` preceding keys), exact and
        ~T/(chunk+context) times cheaper than dense T x T attention. With ``need_attn`` the
        attention is also returned: only the rows of the query indices ``queries``
        (``attn[batch, head, len(queries), key]``) when given, else the dense matrix
        ``attn[batch, head, query, key]`` (small inputs and tests only). ``rows_only`` (with
        ``queries``): return ``(None, rows)`` without computing the layer's output."""
        B, T, _ = x.shape
        qkv = self.qkv(self.ln1(x)).transpose(1, 2)                      # B, 3*h*dh, T
        qkv = self.conv(F.pad(qkv, (self.cw - 1, 0))).transpose(1, 2)    # causal conv
        q, k, v = qkv.reshape(B, T, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)  # each B,h,T,dh
        if self.position == "rotary":
            q, k = rotate(q), rotate(k)
        if rows_only:
            return None, self.attention_rows(q, k, key_pad, queries)
        ctx, attn = self._attend(q, k, v, key_pad, need_attn, chunk, queries)
        x = x + self.drop(self.out(ctx))
        x = x + self.drop(self.ff(self.ln2(x)))
        return x, attn

    def _softmax(self, scores):
        """Softmax over keys; with the sink one more score 0 (value 0) joins every row, so
        ``attn = exp(s) / (1 + sum exp(s))`` and a row of all -inf scores is all zeros."""
        if not self.sink:
            return torch.softmax(scores, dim=-1)
        # = softmax(cat([scores, 0]))[..., :-1] without copying the scores: shift by
        # m = max(0, max_j s_j) for stability, the sink contributes exp(0 - m)
        m = scores.amax(dim=-1, keepdim=True).clamp(min=0.0).detach()
        e = torch.exp(scores - m)
        return e / (e.sum(dim=-1, keepdim=True) + torch.exp(-m))

    def _pos_scores(self, q):
        """``(q_i + v) . W_R R_d`` for every query and distance ``d = d_min..context``:
        ``pos[batch, head, query, d - d_min]``."""
        r = self.r_net(self.rel_enc).view(len(self.rel_enc), self.h, self.dh).permute(1, 0, 2)
        return (q + self.v[:, None, :]) @ r.transpose(-1, -2)

    def _scores(self, q, k, dist, mask):
        """Scores ``((q_i + u) . k_j + (q_i + v) . r_{i-j}) / sqrt(d_head) + mask`` for
        ``q[..., Q, dh]``, ``k[..., K, dh]`` and distances ``dist[Q, K] = i - j``."""
        if self.position == "rotary":
            return (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh)) + mask
        pos = self._pos_scores(q)
        row = (dist - self.d_min).clamp(0, len(self.rel_enc) - 1)
        pos = pos.gather(-1, row.expand(*pos.shape[:-1], dist.shape[-1]))
        return ((q + self.u[:, None, :]) @ k.transpose(-1, -2) + pos) * (1.0 / math.sqrt(self.dh)) + mask

    def _mask(self, dist, key_negative, key_pad):
        """Additive mask: -inf outside ``0 <= i - j <= context`` (bidirectional: ``|i - j| <=
        context``) and on keys at negative indices (``key_negative``, broadcastable to dist);
        PAD keys (``key_pad[..., K]``, also the keys past the end) a large finite penalty (not
        -inf, so all-PAD rows stay finite). Shape ``key_pad.shape[:-1] + (1, Q, K)``."""
        bad = (dist < self.d_min) | (dist > self.context) | key_negative
        static = torch.zeros(bad.shape, device=dist.device).masked_fill(bad, float("-inf"))
        return static + (key_pad.float() * -1e9)[..., None, None, :]

    def _attend(self, q, k, v, key_pad, need_attn, chunk, queries):
        """(context ``[B, T, h * dh]``, attention or None) of ``q, k, v[B, h, T, dh]``: dense when
        the whole map is asked for, else chunked over queries, with the ``queries`` rows alone."""
        attn = None
        if need_attn and queries is None:
            ctx, attn = self._dense(q, k, v, key_pad)
        else:
            ctx = self._chunked(q, k, v, key_pad, chunk)
            if need_attn:
                attn = self.attention_rows(q, k, key_pad, queries)
        B, _, T, _ = q.shape
        return ctx.transpose(1, 2).reshape(B, T, self.h * self.dh), attn

    def _dense(self, q, k, v, key_pad):
        idx = torch.arange(q.shape[2], device=q.device)
        dist = idx[:, None] - idx[None, :]
        mask = self._mask(dist, torch.zeros((), dtype=torch.bool, device=q.device), key_pad)
        attn = self._softmax(self._scores(q, k, dist, mask))                 # B,h,query,key
        return self.drop(attn) @ v, attn

    def attention_rows(self, q, k, key_pad, queries):
        """Attention rows of the query indices ``queries`` only: ``attn[batch, head, len(queries), key]``,
        equal to those rows of the dense attention at ``len(queries) / T`` of its memory."""
        qi = torch.as_tensor(queries, device=q.device, dtype=torch.long).reshape(-1)
        dist = qi[:, None] - torch.arange(k.shape[2], device=q.device)[None, :]
        mask = self._mask(dist, torch.zeros((), dtype=torch.bool, device=q.device), key_pad)
        return self._softmax(self._scores(q[:, :, qi], k, dist, mask))

    def _chunked(self, q, k, v, key_pad, c):
        B, h, T, dh = q.shape
        C = self.context
        n = -(-T // c)
        Tp = n * c
        if Tp != T:  # right padding: PAD keys (and, when causal, future keys of every real query)
            q, k, v = (F.pad(t, (0, 0, 0, Tp - T)) for t in (q, k, v))
            key_pad = F.pad(key_pad, (0, Tp - T), value=True)
        # k/v of chunk i: sequence positions i*c - C .. i*c + c - 1 (+ C when bidirectional);
        # negative ones: left padding, -inf; past the end: right padding, PAD
        R = 0 if self.causal else C
        Kw = c + C + R
        ku = F.pad(k, (0, 0, C, R)).unfold(2, Kw, c).permute(0, 2, 1, 4, 3)    # B,n,h,Kw,dh
        vu = F.pad(v, (0, 0, C, R)).unfold(2, Kw, c).permute(0, 2, 1, 4, 3)
        kp = F.pad(key_pad, (C, R), value=True).unfold(1, Kw, c)               # B, n, Kw
        qc = q.reshape(B, h, n, c, dh).permute(0, 2, 1, 3, 4)                   # B,n,h,c,dh
        dev = q.device
        dist = (torch.arange(c, device=dev)[:, None] + C) - torch.arange(Kw, device=dev)[None, :]
        kglob = torch.arange(n, device=dev)[:, None] * c - C + torch.arange(Kw, device=dev)[None, :]
        # groups of chunks keep one score tensor under SCORE_BYTES (exact; bounds no-grad memory)
        g = max(1, self.SCORE_BYTES // max(1, B * h * c * Kw * q.element_size()))
        outs = []
        for i in range(0, n, g):
            sl = slice(i, min(i + g, n))
            mask = self._mask(dist, (kglob[sl] < 0)[:, None, None, :], kp[:, sl])   # B,g,1,c,c+C
            if self.position == "rotary":  # no q-dependent position term: the fused kernel applies
                G = sl.stop - sl.start
                kk, vv = ku[:, sl].reshape(B * G, h, Kw, dh), vu[:, sl].reshape(B * G, h, Kw, dh)
                mm = mask.reshape(B * G, 1, c, Kw)
                if self.sink:  # the sink as one more key: q . 0 = score 0, value 0
                    kk, vv, mm = F.pad(kk, (0, 0, 0, 1)), F.pad(vv, (0, 0, 0, 1)), F.pad(mm, (0, 1))
                outs.append(F.scaled_dot_product_attention(
                    qc[:, sl].reshape(B * G, h, c, dh), kk, vv, attn_mask=mm,
                    dropout_p=self.drop.p if self.training else 0.0).reshape(B, G, h, c, dh))
                continue
            scores = self._scores(qc[:, sl], ku[:, sl], dist, mask)
            outs.append(self.drop(self._softmax(scores)) @ vu[:, sl])
        o = torch.cat(outs, dim=1)                                              # B,n,h,c,dh
        return o.permute(0, 2, 1, 3, 4).reshape(B, h, Tp, dh)[:, :, :T]


def attention_rows_only(layers, h, key_pad, queries, n_layers: int, chunk: int) -> torch.Tensor:
    """``attn[batch, layer, head, len(queries), key]`` of the first ``n_layers`` of ``layers``
    from their input ``h``: the layers below the last run whole, the last computes only its rows."""
    if queries is None or not 1 <= n_layers <= len(layers):
        raise ValueError(f"attention_layers = {n_layers} needs attention_queries and 1..{len(layers)} layers")
    attns = []
    for i, layer in enumerate(layers[:n_layers]):
        h, a = layer(h, key_pad, need_attn=True, chunk=chunk, queries=queries, rows_only=i == n_layers - 1)
        attns.append(a)
    return torch.stack(attns, dim=1)


class TSSTransformer(nn.Module):
    """Per-position TSS logits from nucleotide tokens (see module docstring)."""

    def __init__(self, n_layers=2, n_heads=4, d_model=32, d_head=32, context=128, conv_width=7, ff_mult=2,
                 dropout=0.0, label_offset=20, attn_chunk=64, position="xl", attention="causal",
                 attention_sink=False):
        super().__init__()
        self.config = dict(architecture="seqxai", n_layers=n_layers, n_heads=n_heads, d_model=d_model,
                           d_head=d_head, context=context,
                           conv_width=conv_width, ff_mult=ff_mult, dropout=dropout,
                           label_offset=label_offset, attn_chunk=attn_chunk, position=position,
                           attention=attention, attention_sink=bool(attention_sink))
        self.embed = nn.Embedding(N_TOKENS, d_model)
        self.layers = nn.ModuleList(
            TSSLayer(d_model, n_heads, d_head, context, conv_width, ff_mult, dropout, position, attention,
                     attention_sink)
            for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    @property
    def key_shift(self) -> int:
        return (self.config["conv_width"] - 1) // 2

    def forward(self, x, return_attention=False, attention_queries=None, attention_layers=None):
        """``x[batch, T]`` tokens -> ``logits[batch, T]``; with ``return_attention`` also
        ``attn[batch, layer, head, query, key]``: only the rows of the query indices in
        ``attention_queries`` when given (computed as rows, never as a T x T matrix), else
        the dense matrix. ``attention_layers = n`` (with ``attention_queries``): the attention
        rows of the first ``n`` layers only, and no logits (``(None, attn)``): the layers
        above are never run and layer ``n - 1`` computes its rows, not its output (the probe's
        cost)."""
        key_pad = x == PAD
        h = self.embed(x)
        if attention_layers is not None:
            return None, attention_rows_only(self.layers, h, key_pad, attention_queries, attention_layers,
                                             self.config["attn_chunk"])
        attns = []
        for layer in self.layers:
            h, a = layer(h, key_pad, need_attn=return_attention, chunk=self.config["attn_chunk"],
                         queries=attention_queries)
            attns.append(a)
        logits = self.head(self.ln(h)).squeeze(-1)
        if return_attention:
            return logits, torch.stack(attns, dim=1)
        return logits


def key_token_index(key_index, conv_width: int = 7):
    """Token (sequence) index at the centre of key index ``j``'s receptive field:
    ``j - (conv_width - 1) // 2`` (see module docstring)."""
    return key_index - (conv_width - 1) // 2


def key_receptive_field(model_cfg: dict) -> pd.DataFrame:
    """Per layer (0-based, as the probe's tables): the layer-input positions a key's own q/k/v
    convolution covers, relative to the key index ``j``: ``lo..hi`` (inclusive), ``centre``,
    ``width``; ``seqxai`` (causal conv): ``-(w-1)..0``, centre ``-(w-1)//2``; ``clauwaert2021``
    (centred conv): ``-(w-1)//2..(w-1)//2``, centre 0 (``centre = hi - (w-1)//2``, an integer:
    for an even width the later of the two middle positions, as :func:`key_token_index`).

    Only layer 0 reads the tokens themselves. A key of layer ``l >= 1`` also mixes the context
    the earlier layers attended to: ``token_lo..token_hi`` is every token offset (from ``j``)
    that can change it, ``token_lo = (l+1) lo - l context`` and ``token_hi = (l+1) hi + l d``
    (``d = context`` with bidirectional attention, else 0): the centred convolutions of
    ``clauwaert2021`` add 3 nt of lookahead per layer. ``mixes_context`` = ``l >= 1``.
    """
    cfg = {**DEFAULT_MODEL, **(model_cfg or {})}
    w, n, ctx = int(cfg["conv_width"]), int(cfg["n_layers"]), int(cfg["context"])
    if cfg["architecture"] == "clauwaert2021":
        lo, hi = -((w - 1) // 2), (w - 1) // 2
    else:
        lo, hi = -(w - 1), 0
    down = ctx if cfg.get("attention", "causal") == "bidirectional" else 0
    layer = np.arange(n)
    return pd.DataFrame({"layer": layer, "lo": lo, "hi": hi, "centre": hi - (w - 1) // 2, "width": w,
                         "token_lo": (layer + 1) * lo - layer * ctx,
                         "token_hi": (layer + 1) * hi + layer * down, "mixes_context": layer >= 1})


def build_model(model_cfg: dict) -> nn.Module:
    """The model of ``dna.model``: ``architecture`` ``seqxai`` (:class:`TSSTransformer`) or
    ``clauwaert2021`` (:class:`seqxai.dna_clauwaert.ClauwaertTransformer`)."""
    cfg = {**DEFAULT_MODEL, **(model_cfg or {})}
    if cfg["architecture"] == "clauwaert2021":
        from .dna_clauwaert import build_clauwaert

        return build_clauwaert(cfg)
    if cfg["architecture"] != "seqxai":
        raise DataError(f"dna.model.architecture: '{cfg['architecture']}' (expected one of "
                        f"{', '.join(ARCHITECTURES)})")
    return TSSTransformer(**{k: cfg[k] for k in DEFAULT_MODEL if k != "architecture"})


def save_model(path, model: nn.Module, extra: dict | None = None) -> None:
    """Save ``{"state_dict", "config", **extra}`` with torch.save (atomic)."""
    from .io import atomic_path

    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                    "config": model.config, **(extra or {})}, tmp)


def load_model(path, device="cpu") -> tuple[nn.Module, dict]:
    """Load a model written by :func:`save_model` (its ``config`` records the architecture;
    checkpoints without one are ``seqxai``); returns (model in eval mode, checkpoint)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        cfg = dict(ckpt["config"])
        arch = cfg.pop("architecture", "seqxai")   # checkpoints before the choice: seqxai
        if arch == "clauwaert2021":
            from .dna_clauwaert import ClauwaertTransformer

            model = ClauwaertTransformer(**cfg)
        else:
            model = TSSTransformer(**cfg)
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise DataError(f"{path}: not a TSS model checkpoint ({exc})") from exc
    return model.to(device).eval(), ckpt
