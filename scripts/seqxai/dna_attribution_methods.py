"""AttnLRP and gradient x input of the TSS transformer's predicting logit, beside integrated
gradients (:mod:`seqxai.dna_attribution`), in the same arrays and tables.

Conventions
-----------
- Windows, one-hot input, offsets and the baseline letter distribution ``R`` are those of
  :mod:`seqxai.dna_attribution`; ``g[window, T, d]`` is the (rule-modified) gradient of the
  logit at the embedding output ``e``, ``grad[window, T, ACGT] = g @ E[ACGT]^T`` its gradient
  at the one-hot input.
- ``grad_x_input``: the plain gradient at the input, ``contribution[i] = sum_b (X - R)_ib
  grad_ib`` (integrated gradients with one node at alpha = 1); ``f_baseline`` = F(x'),
  ``delta = sum contribution - (F(x) - F(x'))`` (no completeness: how far one node is from
  the path integral).
- ``attnlrp``: the AttnLRP-modified gradient (rules below), ``contribution[i] = e_i . g_i``
  (the LRP relevance of token i; at A/C/G/T this is ``sum_b X_ib grad_ib``, at N/PAD the
  relevance of their own embedding); ``f_baseline`` = R_bias, the biases' share of F(x);
  ``delta = sum contribution - (F(x) - R_bias) = -R_softmax``, the relevance the softmax
  rule absorbs (docs/attribution_methods.md). No baseline.
- ``hypothetical[i, b] = grad_ib - sum_c R_c grad_ic`` (the mean-centred gradient for the
  uniform reference), as the IG rule: exactly the contribution for ``grad_x_input``
  (``sum_b X_ib hyp_ib = contribution[i]``); for ``attnlrp`` ``sum_b X_ib hyp_ib =
  contribution[i] - sum_c R_c grad_ic``. 0 at N/PAD.
- Neither method integrates a path, so every window is ``converged`` (TF-MoDISco takes all);
  ``n_steps`` is 0.
- Per head (``heads``): attnlrp, the relevance arriving at each head's context output
  ``h . g``; grad_x_input, ``(h - h') . g`` at the input; ``layer_delta[window, layer]``:
  attnlrp, the relevance of layer l's output minus (F(x) - R_bias of the biases after it);
  grad_x_input, ``(o_l - o_l') . g - (F(x) - F(x'))``.

AttnLRP rules for this model (Achtibat et al. 2024; the protein encoders' rules,
:mod:`seqxai.attnlrp`, as gradient modifications whose forward value is the model's own bit
for bit): LayerNorm identity rule (std a constant); GELU identity rule; the attention
``softmax(s) v`` with the uniform rule (half the output's relevance to v, half to the
attention weights); the softmax's plain gradient (the paper's softmax rule); the bilinear
score ``(q + u) . k`` with the uniform rule (half to q + u, half to k); Transformer-XL's
position term ``(q + v) . r_{i-j}`` linear in q (r does not depend on the input); the q/k/v
projection, the causal depthwise convolution, rotary embedding, the output map, the
feed-forward and head ``Linear`` plain (epsilon -> 0). Biases (every Linear, Conv1d and
LayerNorm bias, and u, v as biases of q) absorb their share ``b . g``. So
``F(x) = sum_i contribution[i] + R_bias + R_softmax`` (tests: to 1e-4 of the absolute parts).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

from .attnlrp import _IdentityRule, _layer_norm_identity, _same_value, _scaled_gradient
from .dna_attribution import _hooks, one_hot, prepare_windows

METHODS = ("ig", "attnlrp", "grad_x_input")
#: forward+backward-equivalent passes per window (a no-grad forward counted as 1/3 of one)
PASSES = {"attnlrp": 1.0, "grad_x_input": 1.0 + 1.0 / 3}


class _Recorder:
    """Per-window bias and softmax relevance: tensors whose gradient is taken with the input's."""

    def __init__(self):
        self.bias = []       # (tensor y, bias broadcastable to y, channel axis, block)
        self.softmax = []    # (attention weights before the uniform rule's halving, scores, block)

    def tensors(self):
        return [t for t, *_ in self.bias] + [t for a, s, _ in self.softmax for t in (a, s)]


def _attention_lin(layer, q, k, v, key_pad, rec: _Recorder, block: int):
    """The AttnLRP linearisation of ``softmax(score + mask) v`` (dense over the window; value
    equal to the chunked attention up to rounding, only its gradient is used)."""
    T, scale = q.shape[2], 1.0 / math.sqrt(layer.dh)
    idx = torch.arange(T, device=q.device)
    dist = idx[:, None] - idx[None, :]
    mask = layer._mask(dist, torch.zeros((), dtype=torch.bool, device=q.device), key_pad)
    if layer.position == "rotary":
        score = (0.5 * (q @ k.detach().transpose(-1, -2)) + 0.5 * (q.detach() @ k.transpose(-1, -2))) * scale
    else:
        u = layer.u[None, :, None, :].expand_as(q)
        vb = layer.v[None, :, None, :].expand_as(q)
        rec.bias += [(u, 1.0, None, block), (vb, 1.0, None, block)]
        qu = q + u
        content = 0.5 * (qu @ k.detach().transpose(-1, -2)) + 0.5 * (qu.detach() @ k.transpose(-1, -2))
        r = layer.r_net(layer.rel_enc).detach().view(len(layer.rel_enc), layer.h, layer.dh).permute(1, 0, 2)
        pos = (q + vb) @ r.transpose(-1, -2)
        row = (dist - layer.d_min).clamp(0, len(layer.rel_enc) - 1)
        pos = pos.gather(-1, row.expand(*pos.shape[:-1], T))
        score = (content + pos) * scale
    attn = layer._softmax(score + mask)
    rec.softmax.append((attn, score, block))
    return _scaled_gradient(attn, 2.0) @ _scaled_gradient(v, 2.0)


@contextlib.contextmanager
def attnlrp_rules(model, rec: _Recorder):
    """Apply the AttnLRP rules (module docstring) to a TSS model inside the block; ``rec``
    collects the bias and softmax tensors of each forward pass."""
    handles, patched = [], []
    owner = {}
    for l, layer in enumerate(model.layers):
        for m in layer.modules():
            owner[id(m)] = l
    n_layers = len(model.layers)
    skip = {id(m) for m in model.embed.modules()}
    try:
        for m in model.modules():
            if id(m) in skip:
                continue
            if isinstance(m, nn.LayerNorm):
                handles.append(m.register_forward_hook(_layer_norm_identity))
            elif isinstance(m, nn.GELU):
                handles.append(m.register_forward_hook(
                    lambda mod, i, o: _IdentityRule.apply(i[0], o.detach())))
        for m in model.modules():  # after the rules: the bias terms see the rule's output
            if id(m) in skip or getattr(m, "bias", None) is None or not isinstance(
                    m, (nn.Linear, nn.LayerNorm, nn.Conv1d)):
                continue
            axis = 1 if isinstance(m, nn.Conv1d) else -1
            handles.append(m.register_forward_hook(
                lambda mod, i, o, a=axis: rec.bias.append((o, mod.bias, a, owner.get(id(mod), n_layers)))))
        for l, layer in enumerate(model.layers):
            chunked = layer._chunked

            def wrapped(q, k, v, key_pad, c, layer=layer, chunked=chunked, l=l):
                y = chunked(q, k, v, key_pad, c)
                return _same_value(y, _attention_lin(layer, q, k, v, key_pad, rec, l))

            layer._chunked = wrapped
            patched.append(layer)
        yield
    finally:
        for h in handles:
            h.remove()
        for layer in patched:
            del layer._chunked


def _bias_relevance(y, bias, axis, g, n_windows: int):
    """Per window ``sum bias . g`` over every position of the tensor ``y`` the bias was added
    to (its rows may be window-major multiples of the windows: the heads of a shared conv)."""
    if axis is None:  # a bias tensor already broadcast to y
        per_row = (y.detach() * g).flatten(1).sum(1)
    else:
        per_row = g.movedim(axis, -1).reshape(g.shape[0], -1, g.shape[axis]).sum(1) @ bias.detach()
    return per_row.reshape(n_windows, -1).sum(1)


def _embedding_gradients(model, xt, emb, query_index, rules: bool, heads: bool):
    """One forward and backward pass with the embedding output ``emb``; returns the logit,
    ``g`` at the embedding, the contexts and layer outputs with their gradients and, with
    ``rules``, the per-window bias relevance per block and softmax relevance per block."""
    n_layers = len(model.layers)
    leaf = emb.detach().clone().requires_grad_(True)
    ctx, outs, rec = {}, {}, _Recorder()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    try:
        for p in frozen:  # b . g of a frozen model's biases still counts
            p.requires_grad_(True)
        rule_ctx = attnlrp_rules(model, rec) if rules else contextlib.nullcontext()
        with torch.enable_grad(), rule_ctx, _hooks(model, lambda: leaf, ctx.__setitem__ if heads else None,
                                                   outs.__setitem__ if heads else None):
            f = model(xt)[:, query_index]
            wrt = [leaf] + [ctx[l] for l in range(n_layers) if heads] + [outs[l] for l in range(n_layers)
                                                                          if heads]
            extra = rec.tensors()
            grads = torch.autograd.grad(f.sum(), wrt + extra, allow_unused=True)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    nw = len(wrt)
    res = {"f": f.detach(), "g": grads[0].detach(), "ctx": [], "outs": []}
    if heads:
        res["ctx"] = [(ctx[l].detach(), grads[1 + l]) for l in range(n_layers)]
        res["outs"] = [(outs[l].detach(), grads[1 + n_layers + l]) for l in range(n_layers)]
    if rules:
        b = len(xt)
        bias = torch.zeros(b, n_layers + 1, dtype=torch.float64, device=leaf.device)
        soft = torch.zeros(b, n_layers, dtype=torch.float64, device=leaf.device)
        ge = grads[nw:]
        for (y, bvec, axis, block), g in zip(rec.bias, ge[: len(rec.bias)]):
            if g is not None:
                bias[:, block] += _bias_relevance(y, bvec, axis, g, b).double()
        gs = ge[len(rec.bias):]
        for i, (a, s, block) in enumerate(rec.softmax):
            ga, gsc = gs[2 * i], gs[2 * i + 1]
            if ga is None:
                continue
            # relevance into the softmax: A . grad(A) (grad(A) already halved by the uniform
            # rule); out of it: s . grad(s)
            soft[:, block] += ((a.detach() * ga).flatten(1).sum(1)
                               - (s.detach() * gsc).flatten(1).sum(1)).double()
        res["bias"], res["softmax"] = bias, soft
    return res


def _head_sum(h, g, n_heads, other=None):
    """``[window, head, T]``: sum over each head's dims of ``(h - other) . g``."""
    d = h if other is None else h - other
    b, T, _ = d.shape
    return (d * g).reshape(b, T, n_heads, -1).sum(-1).permute(0, 2, 1)


def gradient_attribution(model, x: np.ndarray, query_index: int, method: str, reference=None,
                         batch_size: int = 64, heads: bool = False) -> dict[str, np.ndarray]:
    """``attnlrp`` or ``grad_x_input`` of the logit at window index ``query_index`` for token
    windows ``x[window, T]`` (module docstring), ``batch_size`` windows per pass. Returns the
    arrays of :func:`seqxai.dna_attribution.integrated_gradients` (``per_base``, ``grad_integral``
    = the gradient at the one-hot input, ``hypothetical``, ``contribution``, ``f_input``,
    ``f_baseline``, ``delta``, with ``heads`` also ``heads`` and ``layer_delta``), ``steps``
    (0) and ``converged`` (all true) and, for attnlrp, ``r_softmax[window]`` (the softmax
    rule's absorbed relevance) and ``r_softmax_layer[window, layer]``."""
    if method not in ("attnlrp", "grad_x_input"):
        raise ValueError(f"dna.attribution.methods: '{method}' is not a gradient method (attnlrp, grad_x_input)")
    dev, dtype, ref, x, E4 = prepare_windows(model, x, reference)
    n, T = x.shape
    n_layers, n_heads = len(model.layers), model.config["n_heads"]
    lrp = method == "attnlrp"
    out = {k: np.zeros((n, T, 4), np.float32) for k in ("per_base", "grad_integral", "hypothetical")}
    out.update(contribution=np.zeros((n, T), np.float32), f_input=np.zeros(n), f_baseline=np.zeros(n))
    if lrp:
        out["r_softmax_layer"] = np.zeros((n, n_layers))
    if heads:
        out["heads"] = np.zeros((n, n_layers, n_heads, T), np.float32)
        out["layer_delta"] = np.zeros((n, n_layers))
    bs = max(1, int(batch_size))
    for i0 in range(0, n, bs):
        xt = torch.as_tensor(x[i0 : i0 + bs], device=dev)
        sl = slice(i0, i0 + bs)
        X = torch.as_tensor(one_hot(x[sl]), dtype=dtype, device=dev)
        acgt = (xt < 4).to(dtype)[..., None]
        R = ref * acgt
        with torch.no_grad():
            C = model.embed(xt) * (1 - acgt)
            e = C + X @ E4                       # = the embedding lookup
            e0 = C + R @ E4
        res = _embedding_gradients(model, xt, e, query_index, lrp, heads)
        g = res["g"]
        grad = g @ E4.T                                                  # dF/dX, b,T,4
        hyp = (grad - (grad * ref).sum(-1, keepdim=True)) * acgt
        f_in = res["f"].double().cpu().numpy()
        if lrp:
            per_base = X * grad
            contrib = (e * g).sum(-1)
            bias = res["bias"].cpu().numpy()
            f_base = bias.sum(1)
            out["r_softmax_layer"][sl] = res["softmax"].cpu().numpy()
        else:
            per_base = (X - R) * grad
            contrib = per_base.sum(-1)
            cs, os_ = {}, {}  # the baseline's contexts and layer outputs
            with torch.no_grad(), _hooks(model, lambda: e0, cs.__setitem__ if heads else None,  # noqa: B023
                                         os_.__setitem__ if heads else None):
                f_base = model(xt)[:, query_index].double().cpu().numpy()
        out["per_base"][sl] = per_base.detach().cpu().numpy()
        out["grad_integral"][sl] = grad.cpu().numpy()
        out["hypothetical"][sl] = hyp.cpu().numpy()
        out["contribution"][sl] = contrib.detach().cpu().numpy()
        out["f_input"][sl], out["f_baseline"][sl] = f_in, f_base
        if heads:
            for l in range(n_layers):
                h, gh = res["ctx"][l]
                o, go = res["outs"][l]
                if lrp:
                    out["heads"][sl, l] = _head_sum(h, gh, n_heads).cpu().numpy()
                    after = bias[:, l + 1 :].sum(1)
                    out["layer_delta"][sl, l] = (o * go).flatten(1).sum(1).double().cpu().numpy() - (f_in - after)
                else:
                    out["heads"][sl, l] = _head_sum(h, gh, n_heads, cs[l]).cpu().numpy()
                    out["layer_delta"][sl, l] = (((o - os_[l]) * go).flatten(1).sum(1).double().cpu().numpy()
                                                 - (f_in - f_base))
    out["delta"] = out["contribution"].astype(np.float64).sum(1) - (out["f_input"] - out["f_baseline"])
    if lrp:
        out["r_softmax"] = out["r_softmax_layer"].sum(1)
    out["steps"] = np.zeros(n, np.int64)
    out["converged"] = np.ones(n, bool)
    return out
