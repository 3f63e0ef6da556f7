"""Attribution methods as a config choice (``attribution.methods``), one result layout for all.

Every method returns what :func:`seqxai.attribution.integrated_gradients` returns for one
sequence, so the shard tables, the gather and the head statistics take any of them:
``embedding[token]``, ``f_input``, ``f_baseline``, ``delta`` = sum(embedding) - (f_input -
f_baseline) and, where the method defines them, ``heads[layer, head, token]`` and
``layer_delta[layer]``.

- ``ig``: integrated gradients (seqxai.attribution), n_steps forward+backward passes.
- ``attnlrp``: AttnLRP (seqxai.attnlrp), one forward and one backward pass; f_baseline is the
  biases' share of the logit, delta the relevance the softmax rule absorbs.
- ``grad_x_input``: (e - e') * dF/de at the input, one backward; per head (h - h') * dF/dh at
  the context output (IG with a single node at alpha = 1), per layer output the same.
- ``attention_rollout`` (Abnar & Zuidema 2020): relevance[t] = row 0 ([CLS]/<cls>) of
  prod_l (0.5 mean_heads(A_l) + 0.5 I), rows renormalised; not specific to the target logit,
  no head table, no completeness (delta NaN).
"""
from __future__ import annotations

import numpy as np
import torch

from . import attribution as _ig
from .attribution import _hooks, _prepare

METHODS = ("ig", "attnlrp", "grad_x_input", "attention_rollout")
#: methods that write a per-layer per-head table
HEAD_METHODS = ("ig", "attnlrp", "grad_x_input")


def grad_x_input(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int,
                 base_ids: torch.Tensor, layers: bool = True, layer_ids=None) -> dict:
    """Gradient x (input - baseline) at the embedding, at every head's context and layer output."""
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_heads, T = cfg.num_attention_heads, ids.shape[1]
    store = {}
    with torch.no_grad(), _hooks(model, lambda o: store.__setitem__("emb", o.detach()),
                                 (lambda l, o: store.__setitem__(("ctx", l), o)) if layers else (lambda l, o: None),
                                 (lambda l, o: store.__setitem__(("out", l), o)) if layers else None, layer_ids):
        f_base = float(model(base, att, **fwd)[0, target])
    e0 = store["emb"]
    ctx0 = {l: store.get(("ctx", l)) for l in layer_ids}
    out0 = {l: store.get(("out", l)) for l in layer_ids}
    leaf, ctx, outs = {}, {}, {}

    def grab(o):
        leaf["emb"] = o.detach().requires_grad_(True)
        return leaf["emb"]

    with torch.enable_grad(), _hooks(model, grab, ctx.__setitem__ if layers else lambda l, o: None,
                                     outs.__setitem__ if layers else None, layer_ids):
        logit = model(ids, att, **fwd)[0, target]
        wrt = [leaf["emb"]] + ([ctx[l] for l in layer_ids] + [outs[l] for l in layer_ids] if layers else [])
        grads = torch.autograd.grad(logit, wrt)
    f_in = float(logit.detach())
    emb = ((leaf["emb"].detach() - e0) * grads[0]).sum(-1)[0]
    gap = f_in - f_base
    result = {"embedding": emb.cpu().numpy(), "f_input": f_in, "f_baseline": f_base,
              "delta": float(emb.sum()) - gap}
    if layers:
        n = len(layer_ids)
        heads = torch.stack([((ctx[l].detach() - ctx0[l]) * g)[0] for l, g in zip(layer_ids, grads[1 : 1 + n])])
        result["heads"] = heads.view(n, T, n_heads, -1).sum(-1).permute(0, 2, 1).cpu().numpy()
        result["layer_delta"] = np.array([float(((outs[l].detach() - out0[l]) * g).sum()) - gap
                                          for l, g in zip(layer_ids, grads[1 + n :])])
    return result


def rollout(attn: torch.Tensor) -> torch.Tensor:
    """rollout[query, key] = prod over layers l = L-1..0 of (0.5 mean_head attn[l] + 0.5 I),
    each factor's rows renormalised to sum 1 (Abnar & Zuidema 2020). ``attn[layer, head, q, k]``."""
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    out = eye
    for a in attn.mean(1):  # [q, k] per layer, from the input upwards
        a = 0.5 * a + 0.5 * eye
        out = (a / a.sum(-1, keepdim=True)) @ out
    return out


def attention_rollout(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int,
                      **_) -> dict:
    """Residue relevance from the rolled-out attention of the first token (no head table)."""
    dev, ids, att, _, cfg, _, fwd = _prepare(model, input_ids, attention_mask, input_ids, None)
    with torch.no_grad():
        logits, attentions = model(ids, att, output_attentions=True, **fwd)
    if not attentions or attentions[0] is None:
        raise TypeError(f"{type(model.encoder).__name__}: no attention weights returned; attention_rollout "
                        "needs an encoder loaded with attn_implementation='eager'")
    attn = torch.stack([a[0] for a in attentions]).float()  # [layer, head, q, k]
    return {"embedding": rollout(attn)[0].cpu().numpy(), "f_input": float(logits[0, target]),
            "f_baseline": float("nan"), "delta": float("nan")}


def attribute(method: str, model, input_ids, attention_mask, target: int, base_ids, n_steps: int = 50,
              batch_size: int = 16, layers: bool = True, conductance: str = "jvp") -> dict:
    """The attribution of logit ``target`` by ``method`` (one of :data:`METHODS`); the IG settings
    (n_steps, batch_size, conductance) are ignored by the other methods."""
    if method == "ig":  # looked up at call time: tests replace it in seqxai.attribution
        return _ig.integrated_gradients(model, input_ids, attention_mask, target, base_ids, n_steps,
                                    batch_size, layers, conductance=conductance)
    if method == "attnlrp":
        from .attnlrp import attnlrp

        return attnlrp(model, input_ids, attention_mask, target, layers=layers)
    if method == "grad_x_input":
        return grad_x_input(model, input_ids, attention_mask, target, base_ids, layers=layers)
    if method == "attention_rollout":
        return attention_rollout(model, input_ids, attention_mask, target)
    raise ValueError(f"attribution.methods: '{method}' (expected any of {list(METHODS)})")
