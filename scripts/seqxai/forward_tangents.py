"""Forward-mode tangents (``torch.autograd.forward_ad``) through a model whose weights are
constants, in the same forward pass that reverse mode records (seqxai.attribution's exact
conductance): one matmul per Linear tangent, and as little of the tangents kept as PyTorch
allows.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import sys

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

EXACT_ATTENTION = "seqxai_exact_tangents"


def _linear_jvp(module, x):
    """``module(x)`` for an ``nn.Linear`` whose weights are constants, with the tangent of a
    dual ``x`` computed as W t: PyTorch's forward-mode rule for ``addmm`` also multiplies the
    input by a zero weight tangent (3 matmuls where 2 do, benchmarks/attribution_benchmark.py)."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return F.linear(x, module.weight, module.bias)
    return fwAD.make_dual(F.linear(primal, module.weight, module.bias),
                          F.linear(tangent, module.weight))


def _layer_norm_jvp(module, x):
    """``module(x)`` for an ``nn.LayerNorm``, with the tangent of a dual ``x`` computed
    explicitly, with no graph, from the normalised primal x^ = (x - mean) / std:

        dy = gamma * (dx - mean(dx) - x^ mean(x^ dx)) / std.

    PyTorch's forward-mode rule for ``native_layer_norm`` runs a decomposition recorded under
    grad mode: at hidden 64 it cost 25x the primal layer norm (benchmarks/attribution_benchmark.py)."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    out = F.layer_norm(primal, module.normalized_shape, module.weight, module.bias, module.eps)
    with torch.no_grad():
        dims = tuple(range(-len(module.normalized_shape), 0))
        centred = primal.detach() - primal.detach().mean(dims, keepdim=True)
        inv_std = centred.pow(2).mean(dims, keepdim=True).add_(module.eps).rsqrt_()
        x_hat = centred.mul_(inv_std)
        d = tangent - tangent.mean(dims, keepdim=True)
        d.sub_(x_hat * (x_hat * tangent).mean(dims, keepdim=True)).mul_(inv_std)
        if module.weight is not None:
            d.mul_(module.weight)
    return fwAD.make_dual(out, d)


@contextlib.contextmanager
def constant_weights(model):
    """The model's weights as constants while attributing: no parameter requires a gradient
    (autograd then keeps no layer inputs for weight gradients, and computes none), every
    ``nn.Linear`` propagates a forward-mode tangent with one matmul (:func:`_linear_jvp`) and
    every ``nn.LayerNorm`` its explicit tangent (:func:`_layer_norm_jvp`). Both are restored
    on exit."""
    params = [p for p in model.parameters() if p.requires_grad]
    rules = [(m, _linear_jvp if isinstance(m, torch.nn.Linear) else _layer_norm_jvp)
             for m in model.modules()
             if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)) and "forward" not in vars(m)]
    for p in params:
        p.requires_grad_(False)
    for m, rule in rules:
        m.forward = functools.partial(rule, m)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, _ in rules:
            del m.forward


def _cut(o):
    """``o`` with its forward-mode tangent detached (tuples: every element)."""
    if isinstance(o, tuple):
        return tuple(_cut(x) for x in o)
    if not isinstance(o, torch.Tensor):
        return o
    primal, tangent = fwAD.unpack_dual(o)
    if tangent is None or not tangent.requires_grad:
        return o
    return fwAD.make_dual(primal, tangent.detach())


@contextlib.contextmanager
def tangents_without_graph(model):
    """Keep the forward pass that carries tangents as lean as the plain one.

    Under grad mode PyTorch records the tangent computations too (their formulas use the
    primal values, which require gradients), and every tensor saved for the backward pass
    keeps its tangent: a second graph that the backward pass never uses. Tangents are detached
    at every module's output and tensors are saved for backward without their tangents. Only
    partly effective (a module output's primal view keeps its base, and so the base's tangent,
    alive): ESM-2 8M, 202 tokens, 20 nodes: 4.7 GiB above the model without, 4.1 GiB with, the
    backward pass alone 1.3 GiB (docs/performance.md)."""
    handles = [m.register_forward_hook(lambda mod, i, o: _cut(o)) for m in model.modules()]
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t.detach(), lambda t: t):
            yield
    finally:
        for h in handles:
            h.remove()


def _attention_with_tangent(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention (``transformers``' ``eager_attention_forward``: softmax(q k^T s + mask) v)
    whose forward-mode tangent is computed explicitly, with no graph, from the primal's
    probabilities P:

        dS = s (dq k^T + q dk^T),  dP = P * (dS - r),  r = sum_j P dS,
        dO = dP v + P dv = (P * dS) v - r O + P dv     (O = P v, the primal).

    PyTorch's own rule for softmax re-derives it from a decomposition recorded under grad mode
    (exp again, a T x T subtraction per head, copies): on ESM-2 8M at 202 tokens the attention
    tangents cost 50x the primal softmax (benchmarks/attribution_benchmark.py). Here the two
    score tangents are one product and the T x T scores are passed over twice (P * dS in place,
    its row sums). The primal is
    the eager function itself on the primal inputs, so the reverse pass is unchanged."""
    eager_attention_forward = sys.modules[type(module).__module__].eager_attention_forward
    (q, dq), (k, dk), (v, dv) = (fwAD.unpack_dual(x) for x in (query, key, value))
    out, probs = eager_attention_forward(module, q, k, v, attention_mask, scaling=scaling,
                                         dropout=dropout, **kwargs)
    if dq is None and dk is None and dv is None:
        return out, probs
    if module.training and dropout:
        raise RuntimeError("exact attention tangents are for eval mode (dropout 0)")
    s = q.size(-1) ** -0.5 if scaling is None else scaling
    with torch.no_grad():
        p = probs.detach()
        q, k, v = q.detach(), k.detach(), v.detach()
        scaled = (lambda x: x) if s == 1.0 else (lambda x: x * s)  # ESM scales the query beforehand
        if dq is not None and dk is not None:  # dq k^T + q dk^T as one product, [dq q] [k dk]^T
            ds = torch.matmul(scaled(torch.cat([dq, q], -1)), torch.cat([k, dk], -1).transpose(-1, -2))
        elif dq is not None:
            ds = torch.matmul(scaled(dq), k.transpose(-1, -2))
        elif dk is not None:
            ds = torch.matmul(scaled(q), dk.transpose(-1, -2))
        else:
            ds = None
        tangent = None
        if ds is not None:
            # dP v = (P dS) v - r O with r = sum_j P dS and O = P v the primal's heads: one
            # pass over the T x T scores (in place) and one reduction, no T x T temporary
            ds.mul_(p)
            r = ds.sum(-1, keepdim=True)
            tangent = torch.matmul(ds, v).sub_(r * out.detach().transpose(1, 2))
            del ds
        if dv is not None:
            term = torch.matmul(p, dv)
            tangent = term if tangent is None else tangent.add_(term)
        tangent = tangent.transpose(1, 2).contiguous()
    return fwAD.make_dual(out, tangent), probs


def _erf_gelu_with_tangent(gelu, x):
    """``gelu(x)`` for ESM's erf GELU, x Phi(x) written out in five operations (the original
    repository's, ``transformers.models.esm.modeling_esm.gelu``), with the tangent of a dual
    ``x`` computed in one expression without a graph, dy = (Phi(x) + x phi(x)) dx, instead of
    each operation's forward-mode rule recorded under grad mode."""
    primal, tangent = fwAD.unpack_dual(x)
    if tangent is None:
        return gelu(x)
    out = gelu(primal)
    with torch.no_grad():
        p = primal.detach()
        slope = torch.erf(p * 0.5**0.5).add_(1.0).mul_(0.5)  # Phi(x)
        slope.addcmul_(p, torch.exp(p * p * -0.5), value=(2.0 * math.pi) ** -0.5)  # + x phi(x)
    return fwAD.make_dual(out, slope.mul_(tangent))


@contextlib.contextmanager
def explicit_gelu_tangents(model):
    """Within the block, the erf GELU function of the model's ``transformers`` modules (ESM's,
    a module-level ``gelu`` called by name) runs :func:`_erf_gelu_with_tangent`; restored on
    exit. Modules whose activation is PyTorch's own ``gelu`` keep its forward-mode rule (one
    fused operation)."""
    modules = {sys.modules[type(m).__module__] for m in model.modules()}
    patched = [(mod, mod.gelu) for mod in modules
               if inspect.isfunction(getattr(mod, "gelu", None)) and mod.gelu.__module__ == mod.__name__]
    for mod, gelu in patched:
        mod.gelu = functools.partial(_erf_gelu_with_tangent, gelu)
    try:
        yield
    finally:
        for mod, gelu in patched:
            mod.gelu = gelu


@contextlib.contextmanager
def exact_attention_tangents(config):
    """Within the block, every attention module of models with this ``transformers`` config
    runs :func:`_attention_with_tangent` (registered as the attention implementation
    ``EXACT_ATTENTION``, with the eager attention mask); the config's implementation is restored
    on exit. Eager-attention encoders only (``load_encoder``'s default); others are left as
    they are."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    before = config._attn_implementation
    if before != "eager":  # PyTorch's own forward-mode rules, as before
        yield
        return
    ALL_ATTENTION_FUNCTIONS.register(EXACT_ATTENTION, _attention_with_tangent)
    ALL_MASK_ATTENTION_FUNCTIONS.register(EXACT_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    config._attn_implementation = EXACT_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before
