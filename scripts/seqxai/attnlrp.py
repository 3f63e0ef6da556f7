"""AttnLRP (Achtibat et al., ICML 2024) for the ESM and BERT encoders, in one forward and one backward.

The rules are gradient modifications, so that gradient x input at any tensor is its LRP
relevance (lxt's "efficient" formulation; docs/attribution_methods.md). Inside
:func:`attnlrp_rules` forward hooks (undone on exit, weights untouched) change the backward
pass only; every forward value is unchanged bit for bit (autograd Functions that return their
input, or ``y.detach() + (lin - lin.detach())``):

- LayerNorm, identity rule on the normalisation: y = (x - mean(x)) / std(x) * w + b with std
  treated as a constant, so the centring passes relevance like a linear layer.
- GELU (any elementwise activation a = f(z)), identity rule: the gradient to z is f(z) / z, so
  z * grad(z) = a * grad(a): the relevance passes through unchanged.
- Bilinear matmuls, uniform rule: out = softmax(q k^T) v gives half its relevance to v and
  half to the attention weights, which give half of theirs to q and half to k: the gradients
  at the q, k and v projections are divided by 4, 4 and 2 (lxt ``wrap_attention_forward``).
  Scaling and rotary embeddings between the projection and the product are linear in q, k.
- Softmax: the plain gradient. Gradient x input of the softmax is the paper's softmax rule
  R_i = x_i (R_i - s_i sum_j R_j) (its Proposition 3.1); what it does not pass on is the
  Taylor expansion's bias term, absorbed there.
- Linear layers, max and mean pooling: the plain gradient (epsilon rule with epsilon -> 0);
  biases absorb their share b * grad(b).

Conservation: F(x) = sum_t R_emb[t] + R_bias + R_softmax, where R_emb[t] = sum_d e_td g_td at
the embedding output e (the tensor integrated gradients starts from), R_bias = sum over every
Linear and LayerNorm bias of b * grad(b) and R_softmax the softmax bias terms (tests check the
identity to float precision). Per head: the relevance arriving at the head's context output
h_l (attention-weighted values, before the output projection), sum over the head's dims of
h * grad(h).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .attribution import _hooks, _prepare, encoder_layers


class _ScaledGradient(torch.autograd.Function):
    """y in the forward pass, gradient / factor in the backward pass (lxt ``divide_gradient``)."""

    @staticmethod
    def forward(ctx, y, factor):
        ctx.factor = factor
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.factor, None


class _IdentityRule(torch.autograd.Function):
    """a = f(z) in the forward pass (computed by the model, passed in), gradient f(z) / z to z
    in the backward pass, so z * grad(z) = a * grad(a) (lxt ``identity_rule_implicit``).
    f(z) / z at z = 0 is taken as 1/2, GELU's limit; no exact zero occurs in practice."""

    @staticmethod
    def forward(ctx, z, a):
        ratio = a / torch.where(z == 0, torch.ones_like(z), z)
        ctx.save_for_backward(torch.where(z == 0, torch.full_like(z, 0.5), ratio))
        return a.view_as(a)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.saved_tensors[0], None


def _scaled_gradient(y: torch.Tensor, factor: float) -> torch.Tensor:
    return _ScaledGradient.apply(y, factor)


def _same_value(y: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
    """The value of ``y`` with the gradient of ``linear`` (its linearisation)."""
    return y.detach() + (linear - linear.detach())


def _layer_norm_identity(module, inputs, output):
    x = inputs[0]
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, keepdim=True, unbiased=False) + module.eps).sqrt().detach()
    lin = (x - mean) / std
    if module.weight is not None:
        lin = lin * module.weight
    if module.bias is not None:
        lin = lin + module.bias
    return _same_value(output, lin)


def _activation_identity(pre_activation: dict, key):
    """Forward hook of an ``intermediate`` block (a = f(dense(x))): the identity rule on f."""
    def hook(module, inputs, output):
        return _IdentityRule.apply(pre_activation.pop(key), output.detach())
    return hook


@contextlib.contextmanager
def attnlrp_rules(encoder):
    """Apply the AttnLRP rules (module docstring) to an ESM or BERT encoder inside the block."""
    blocks, attention = encoder_layers(encoder)
    handles, pre = [], {}
    try:
        for attn in attention:
            for proj, factor in ((attn.query, 4.0), (attn.key, 4.0), (attn.value, 2.0)):
                handles.append(proj.register_forward_hook(
                    lambda m, i, o, f=factor: _scaled_gradient(o, f)))
        for l, block in enumerate(blocks):
            handles.append(block.intermediate.dense.register_forward_hook(
                lambda m, i, o, l=l: pre.__setitem__(l, o)))
            handles.append(block.intermediate.register_forward_hook(_activation_identity(pre, l)))
        embeddings = encoder.embeddings
        for m in encoder.modules():
            if isinstance(m, torch.nn.LayerNorm) and not any(m is e for e in embeddings.modules()):
                handles.append(m.register_forward_hook(_layer_norm_identity))
        yield
    finally:
        for h in handles:
            h.remove()


def bias_parameters(model) -> list[tuple[int, torch.nn.Parameter]]:
    """(block, parameter) for every Linear and LayerNorm bias after the embeddings: block l of
    the encoder, or the number of blocks for the final norm and the classification head."""
    blocks, _ = encoder_layers(model.encoder)
    owner = {}
    for l, block in enumerate(blocks):
        for m in block.modules():
            owner[id(m)] = l
    skip = {id(m) for m in model.encoder.embeddings.modules()}
    out = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)) and m.bias is not None and id(m) not in skip:
            out.append((owner.get(id(m), len(blocks)), m.bias))
    return out


def attnlrp(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int,
            layers: bool = True, layer_ids=None) -> dict[str, np.ndarray | float]:
    """AttnLRP relevance of logit ``target`` for one sequence (1-D ``input_ids``).

    Returns ``embedding[token]`` (sum over hidden dims of e * grad), ``f_input`` = F(x),
    ``f_baseline`` = R_bias (the biases' share, the part of F(x) no input explains),
    ``delta`` = sum(embedding) - (F(x) - R_bias) (= -R_softmax, the relevance the softmax rule
    absorbs) and, when ``layers``, ``heads[layer, head, token]`` (relevance at each head's
    context output) and ``layer_delta[layer]`` = sum of the relevance of layer l's output -
    (F(x) - R_bias of the biases after that layer).
    """
    dev, ids, att, _, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, input_ids, layer_ids)
    n_heads, T = cfg.num_attention_heads, ids.shape[1]
    biases = bias_parameters(model)
    leaf = {}

    def grab(o):
        leaf["emb"] = o.detach().requires_grad_(True)
        return leaf["emb"]

    ctx, outs = {}, {}
    frozen = [p for _, p in biases if not p.requires_grad]  # e.g. a frozen encoder: b * grad(b) still counts
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad(), attnlrp_rules(model.encoder), _hooks(
                model, grab, ctx.__setitem__ if layers else lambda l, o: None,
                outs.__setitem__ if layers else None, layer_ids):
            logit = model(ids, att, **fwd)[0, target]
            wrt = [leaf["emb"]] + [p for _, p in biases]
            if layers:
                wrt += [ctx[l] for l in layer_ids] + [outs[l] for l in layer_ids]
            grads = torch.autograd.grad(logit, wrt, allow_unused=True)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    e = leaf["emb"].detach()
    emb = (e * grads[0]).sum(-1)[0]
    n_b = len(biases)
    bias_rel = np.zeros(len(encoder_layers(model.encoder)[0]) + 1)
    for (block, p), g in zip(biases, grads[1 : 1 + n_b]):
        if g is not None:
            bias_rel[block] += float((p.detach() * g).sum())
    f_in, r_bias = float(logit.detach()), float(bias_rel.sum())
    result = {"embedding": emb.detach().cpu().numpy(), "f_input": f_in, "f_baseline": r_bias,
              "delta": float(emb.sum()) - (f_in - r_bias)}
    if layers:
        g_ctx, g_out = grads[1 + n_b : 1 + n_b + len(layer_ids)], grads[1 + n_b + len(layer_ids):]
        heads = torch.stack([(ctx[l].detach() * g)[0] for l, g in zip(layer_ids, g_ctx)])  # [layer, T, H]
        heads = heads.view(len(layer_ids), T, n_heads, -1).sum(-1).permute(0, 2, 1)
        result["heads"] = heads.cpu().numpy()
        result["layer_delta"] = np.array([
            float((outs[l].detach() * g).sum()) - (f_in - bias_rel[l + 1 :].sum())
            for l, g in zip(layer_ids, g_out)])
    return result
