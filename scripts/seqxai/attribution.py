"""Integrated gradients at the embedding and, in the same pass, for every layer and head.

Path (Wenzel et al. 2024, METHODS section 1): the straight line in embedding space
e(alpha) = e' + alpha (e - e') from the baseline e' = embeddings of
[CLS] + [PAD]*(L-2) + [SEP] to the input e, with Gauss-Legendre nodes alpha_k and
weights w_k on [0, 1] (numpy's Legendre nodes mapped from [-1, 1]; the same rule as
Captum's ``gausslegendre`` method).

- Embedding level: IG_t = sum_d (e - e')_td * sum_k w_k dF/de_td(alpha_k), one signed
  value per token t. Special tokens are identical in input and baseline, so they get
  exactly 0. Completeness: sum_t IG_t ~= F(e) - F(e').
- Latent level: for every layer l the attention context h_l (attention-weighted values
  of all heads, before the output projection) and its gradient g_l. The conductance of
  unit u is sum_k w_k g_l,u(alpha_k) dh_l,u/dalpha(alpha_k); dh/dalpha is computed
  exactly with forward-mode AD along the path (a JVP with tangent e - e'), not by finite
  differences. Summed over the head's dims: relevance[layer, head, token].
  The context is no cut of the network (the residual bypasses it), so head relevances do
  not add up to F(e) - F(e'); the test suite checks completeness on layer outputs instead.

All layers are hooked in one pass along the path (the original code re-ran the whole
path once per layer).
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .forward_tangents import (
    constant_weights,
    exact_attention_tangents,
    explicit_gelu_tangents,
    tangents_without_graph,
)

log = logging.getLogger("seqxai.attribution")


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha_k in (0, 1) and weights w_k (sum 1) of the n-point Gauss-Legendre rule on [0, 1].

    int_0^1 f(a) da ~= sum_k w_k f(alpha_k), exact for polynomials of degree <= 2n - 1;
    alpha_k = (1 + x_k) / 2 and w_k = v_k / 2 for the nodes x_k and weights v_k on [-1, 1].
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    x, v = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (1.0 + x), 0.5 * v


PATH_STENCIL = 16  # points per derivative stencil of conductance "polynomial"


def path_derivative_matrix(alphas: np.ndarray, stencil: int = PATH_STENCIL) -> np.ndarray:
    """D[k, j]: dh/dalpha at node ``alphas[k]`` ~= sum_j D[k, j] h(a_j) on the points
    a = (0, alphas..., 1): the derivative of the polynomial through the ``stencil`` points
    nearest in index (centred where the ends allow; all points when there are fewer).

    Barycentric form (Berrut & Trefethen 2004) on each stencil: c_j = 1 / prod_{i != j}
    (a_j - a_i), D[k, j] = (c_j / c_k) / (a_k - a_j) for j != k, D[k, k] = -sum_{j != k} D[k, j]
    (a constant has derivative 0); the weights are formed in logarithms, which cannot underflow.
    Exact for polynomials of degree < ``stencil``; on a smooth path the error falls like the
    nodes' spacing to the power ``stencil - 1``. Local stencils keep the matrix banded, so a pass
    holds a few stencils of activations rather than all nodes', and keep it well conditioned
    where the Gauss-Legendre nodes crowd the ends (a global polynomial through 502 points
    would amplify float32 rounding tenfold more).
    """
    a = np.concatenate([[0.0], np.asarray(alphas, dtype=np.float64), [1.0]])
    if np.any(np.diff(a) <= 0):
        raise ValueError("path_derivative_matrix: the nodes must increase strictly inside (0, 1)")
    first, last = stencil_span(len(alphas), stencil)
    d = np.zeros((len(alphas), len(a)))
    for k, (start, stop) in enumerate(zip(first, last + 1)):
        x = a[start:stop]
        gap = x[:, None] - x[None, :]
        np.fill_diagonal(gap, 1.0)
        log_c, sign_c = -np.log(np.abs(gap)).sum(1), np.prod(np.sign(gap), axis=1)
        i = k + 1 - start
        row = sign_c * sign_c[i] * np.exp(log_c - log_c[i]) / gap[i]
        row[i] = 0.0
        row[i] = -row.sum()
        d[k, start:stop] = row
    return d


def stencil_span(n_nodes: int, stencil: int = PATH_STENCIL) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) index of the points (0, nodes..., 1) in each node's stencil of
    :func:`path_derivative_matrix`: the ``stencil`` points nearest in index, centred on the node
    (point k + 1) where the ends allow, all n_nodes + 2 points when there are fewer."""
    n_points = n_nodes + 2
    width = min(int(stencil), n_points)
    if width < 2:
        raise ValueError(f"path_derivative_matrix: stencil must be >= 2, got {stencil}")
    first = np.clip(np.arange(1, n_points - 1) - width // 2, 0, n_points - width)
    return first, first + width - 1


def _bert_family(encoder, self_attention_class):
    """Blocks ``encoder.encoder.layer`` and their ``attention.self``, checked to be of the
    family's self-attention class (a renamed submodule fails here, not silently later)."""
    blocks = list(encoder.encoder.layer)
    attn = [b.attention.self for b in blocks]
    bad = [type(a).__name__ for a in attn if not isinstance(a, self_attention_class)]
    if bad:
        raise TypeError(f"{type(encoder).__name__}: expected {self_attention_class.__name__} "
                        f"modules, found {sorted(set(bad))}")
    return blocks, attn


def _bert(encoder):
    from transformers.models.bert.modeling_bert import BertSelfAttention

    return _bert_family(encoder, BertSelfAttention)


def _esm(encoder):
    from transformers.models.esm.modeling_esm import EsmSelfAttention

    return _bert_family(encoder, EsmSelfAttention)


# config.model_type -> function(encoder) -> (blocks[l], self_attention[l]). ProtBert and
# ProtBert-BFD are "bert"; ESM-1b/ESM-2 are "esm". A new family adds one entry here: the
# hooked module's first output must be the context h_l[batch, token, heads*dim] (attention-
# weighted values, heads concatenated in order, before the output projection).
ENCODER_FAMILIES = {"bert": _bert, "esm": _esm}


def encoder_layers(encoder) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """(blocks, attention): the transformer blocks and their self-attention modules,
    located by the encoder's family (``config.model_type``)."""
    family = getattr(getattr(encoder, "config", None), "model_type", None)
    if family not in ENCODER_FAMILIES:
        raise TypeError(f"{type(encoder).__name__} (model_type {family!r}): no rule to find its "
                        f"attention modules; known families {sorted(ENCODER_FAMILIES)} "
                        "(seqxai.attribution.ENCODER_FAMILIES)")
    return ENCODER_FAMILIES[family](encoder)


def attention_modules(encoder) -> list[torch.nn.Module]:
    """The self-attention modules whose first output is the context h_l[batch, token, heads*dim]."""
    return encoder_layers(encoder)[1]


@contextlib.contextmanager
def _hooks(model, replace_embeddings, on_context, on_layer=None, layer_ids=None):
    """Replace the embedding output; hand the context (and output) of every layer in
    ``layer_ids`` (default all) to callbacks."""
    emb = model.encoder.embeddings
    handles = [emb.register_forward_hook(lambda m, i, o: replace_embeddings(o))]
    blocks, contexts = encoder_layers(model.encoder)
    for l in range(len(contexts)) if layer_ids is None else layer_ids:
        handles.append(contexts[l].register_forward_hook(
            lambda m, i, o, l=l: on_context(l, o[0] if isinstance(o, tuple) else o)))
        if on_layer is not None:
            handles.append(blocks[l].register_forward_hook(
                lambda m, i, o, l=l: on_layer(l, o[0] if isinstance(o, tuple) else o)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def baseline_ids(input_ids: torch.Tensor, special_ids, pad_id: int) -> torch.Tensor:
    """[CLS] + [PAD]*(L-2) + [SEP]: every non-special token replaced by the padding token."""
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))
    return torch.where(special, input_ids, torch.full_like(input_ids, pad_id))


def _prepare(model, input_ids, attention_mask, base_ids, layer_ids):
    """Eval mode; (device, ids, mask, baseline ids as [1, T] on it, encoder config, the layers
    to hook (default all), the model's extra forward arguments)."""
    model.eval()
    dev = next(model.parameters()).device
    ids, att, base = input_ids[None].to(dev), attention_mask[None].to(dev), base_ids[None].to(dev)
    cfg = model.encoder.config
    layer_ids = list(range(cfg.num_hidden_layers)) if layer_ids is None else list(layer_ids)
    fwd = {"residue_mask": model.residue_mask(ids, att), "position_ids": model.position_ids(ids)}
    return dev, ids, att, base, cfg, layer_ids, fwd


CONDUCTANCE = ("jvp", "polynomial", "difference")


def _end_points(model, ids, att, base, fwd, target, layer_ids=None):
    """F(x) and F(x') without gradients: (f_in, f_base, e, e0) with the embedding outputs e, e'
    [1, T, H], and, for ``layer_ids``, the contexts and layer outputs at both ends:
    ``ends[kind][end][l]`` [1, T, H], kind 0 context, 1 layer output, end 0 at x', 1 at x."""
    captured, ends = {}, [[{}, {}], [{}, {}]]

    def grab(o):
        captured["emb"] = o.detach()

    e_out = []
    with torch.no_grad():
        for end, point in ((1, ids), (0, base)):
            on_ctx = ends[0][end].__setitem__ if layer_ids else (lambda l, o: None)
            on_out = ends[1][end].__setitem__ if layer_ids else None
            with _hooks(model, grab, on_ctx, on_out, layer_ids or []):
                e_out.append(float(model(point, att, **fwd)[0, target]))
            e_out.append(captured["emb"])
    f_in, e, f_base, e0 = e_out
    return f_in, f_base, e, e0, ends


def _result(emb_grad, diff, f_in, f_base, head_rel=None, layer_total=None, n_heads=None) -> dict:
    """The dict of :func:`integrated_gradients` from its sums over the path."""
    emb_attr = (emb_grad * diff[0]).sum(-1)  # [T]
    gap = f_in - f_base
    result = {"embedding": emb_attr.detach().cpu().numpy(), "f_input": f_in, "f_baseline": f_base,
              "delta": float(emb_attr.sum()) - gap}
    if head_rel is not None:
        n_layers, T = head_rel.shape[:2]
        heads = head_rel.view(n_layers, T, n_heads, -1).sum(-1).permute(0, 2, 1)
        result["heads"] = heads.detach().cpu().numpy()  # [layer, head, token]
        result["layer_delta"] = layer_total.cpu().numpy() - gap
    return result


def _path_pass(model, ids, att, fwd, target, e0, diff, a, layer_ids):
    """Forward+backward at the path points e' + a (e - e') (one row each): the contexts ``ctx[l]``
    and layer outputs ``outs[l]`` and the gradients of the summed logit with respect to the path
    point, then every context, then every layer output (no weight gradients)."""
    m = len(a)
    leaf = (e0 + a[:, None, None] * diff).requires_grad_(True)
    ids_m, att_m = ids.expand(m, -1), att.expand(m, -1)
    fwd_m = {k: None if v is None else v.expand(m, -1) for k, v in fwd.items()}
    ctx, outs = {}, {}
    with torch.enable_grad(), _hooks(model, lambda o: leaf, ctx.__setitem__, outs.__setitem__, layer_ids):
        out = model(ids_m, att_m, **fwd_m)[:, target].sum()
    grads = torch.autograd.grad(out, [leaf] + [ctx[l] for l in layer_ids] + [outs[l] for l in layer_ids])
    return ctx, outs, grads


def _jvp_batch(model, ids, att, fwd, target, e0, diff, a, w, layers, layer_ids,
               emb_grad, head_rel, layer_total):
    """Add one batch of Gauss-Legendre nodes ``a`` (weights ``w``) to the sums ``emb_grad``,
    ``head_rel`` and ``layer_total`` (in place).

    One forward pass carries both the path point e(alpha) (recorded for the reverse pass) and,
    when ``layers``, its tangent de/dalpha = e - e' (forward-mode AD), so dh_l/dalpha of every
    layer comes out of the same forward as the values whose gradients follow: 3 model passes'
    worth of matmuls per node (primal, tangent, backward) where a separate JVP pass would cost 4.
    Leaving the dual level frees every tangent but the kept ones before the backward pass.
    """
    m, n_layers = len(a), len(layer_ids)
    leaf = (e0 + a[:, None, None] * diff).requires_grad_(True)  # [m, T, H]
    ids_m, att_m = ids.expand(m, -1), att.expand(m, -1)
    fwd_m = {k: None if v is None else v.expand(m, -1) for k, v in fwd.items()}
    ctx, outs = {}, {}
    with torch.enable_grad(), contextlib.ExitStack() as stack:
        point = leaf
        if layers:
            stack.enter_context(fwAD.dual_level())
            stack.enter_context(tangents_without_graph(model))
            stack.enter_context(exact_attention_tangents(model.encoder.config))
            stack.enter_context(explicit_gelu_tangents(model))
            point = fwAD.make_dual(leaf, diff.expand(m, -1, -1))
        with _hooks(model, lambda o: point, ctx.__setitem__ if layers else lambda l, o: None,
                    outs.__setitem__ if layers else None, layer_ids):
            out = model(ids_m, att_m, **fwd_m)[:, target].sum()
        tangents = ([fwAD.unpack_dual(v[l]).tangent.detach() for v in (ctx, outs) for l in layer_ids]
                    if layers else [])
    # reverse pass: dF/de, dF/dh_l and dF/d(layer output) at each node; autograd.grad
    # computes only these (the weights are constants) and leaves nothing in any .grad
    wrt = [leaf] + ([ctx[l] for l in layer_ids] + [outs[l] for l in layer_ids] if layers else [])
    grads = torch.autograd.grad(out, wrt)
    emb_grad += (w[:, None, None] * grads[0]).sum(0)
    for i in range(n_layers if layers else 0):
        g_ctx, g_out = grads[1 + i], grads[1 + n_layers + i]
        head_rel[i] += (w[:, None, None] * g_ctx * tangents[i]).sum(0)
        layer_total[i] += (w[:, None, None] * g_out * tangents[n_layers + i]).sum().double()


def integrated_gradients(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int,
                         base_ids: torch.Tensor, n_steps: int = 50, batch_size: int = 16,
                         layers: bool = True, layer_ids=None,
                         conductance: str = "jvp") -> dict[str, np.ndarray | float]:
    """IG of logit ``target`` for one sequence (1-D ``input_ids``).

    ``conductance`` is how dh/dalpha along the path is obtained:

    - ``jvp`` (default): exactly, by forward-mode AD at the ``n_steps`` Gauss-Legendre nodes
      (the tangents ride along the forward pass whose gradients follow: 1.5x the matmul FLOPs
      of embedding-only IG, about 1.1-1.2x its memory per node; docs/performance.md);
    - ``polynomial``: at the same Gauss-Legendre nodes, as the derivative of the polynomial
      through the 16 nearest of the points (0, nodes..., 1) (:func:`path_derivative_matrix`;
      the ends come from the F(x) and F(x') passes), so no forward-mode pass: the matmuls of
      embedding-only IG, plus about three stencils of kept contexts and layer outputs. High
      order on the encoder's smooth path: where the nodes resolve the path it agrees with
      ``jvp`` to ~1e-4 of the largest head value; where they do not (a large completeness
      delta) it is off by about as much as the quadrature itself (tests; docs/performance.md);
    - ``difference``: Captum's ``LayerConductance`` scheme with ``method="riemann_trapezoid"``:
      ``n_steps + 1`` evenly spaced points ``alpha_j = j / n_steps``, the gradients at the first
      ``n_steps`` and the differences ``h(alpha_j+1) - h(alpha_j)`` of the captured activations,
      so no forward-mode pass and exactly ``n_steps`` forward+backward rows. First-order accurate;
      the embedding level is then the left Riemann sum on the same points. Converges to
      ``jvp`` as ``n_steps`` grows (tests).

    ``layer_ids`` restricts the latent level to these layers (default: all, in one pass);
    the arrays below then run over them in that order.

    Returns ``embedding[token]``, ``f_input``, ``f_baseline``, ``delta`` =
    sum(embedding) - (f_input - f_baseline) and, when ``layers``, ``heads[layer, head, token]``
    and ``layer_delta[layer]`` = sum of the conductance of layer l's output (a cut, so
    completeness holds) - (f_input - f_baseline).
    """
    if conductance not in CONDUCTANCE:
        raise ValueError(f"attribution.conductance: '{conductance}' (expected one of {list(CONDUCTANCE)})")
    if conductance == "difference" and layers:
        return _ig_difference(model, input_ids, attention_mask, target, base_ids, n_steps, batch_size, layer_ids)
    if conductance == "polynomial" and layers:
        return _ig_polynomial(model, input_ids, attention_mask, target, base_ids, n_steps, batch_size, layer_ids)
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_layers, n_heads = len(layer_ids), cfg.num_attention_heads
    f_in, f_base, e, e0, _ = _end_points(model, ids, att, base, fwd, target)
    diff = e - e0  # [1, T, H]
    alphas, weights = gauss_legendre(n_steps)
    T = ids.shape[1]
    emb_grad = torch.zeros_like(e[0])
    head_rel = torch.zeros(n_layers, T, cfg.hidden_size, device=dev)
    layer_total = torch.zeros(n_layers, dtype=torch.float64, device=dev)
    with constant_weights(model):
        for start in range(0, n_steps, batch_size):
            a = torch.as_tensor(alphas[start : start + batch_size], dtype=e.dtype, device=dev)
            w = torch.as_tensor(weights[start : start + batch_size], dtype=e.dtype, device=dev)
            # one function call per batch: its tensors (graph, tangents, gradients) are freed
            # on return, before the next batch allocates its own
            _jvp_batch(model, ids, att, fwd, target, e0, diff, a, w, layers, layer_ids,
                       emb_grad, head_rel, layer_total)
    if not layers:
        return _result(emb_grad, diff, f_in, f_base)
    return _result(emb_grad, diff, f_in, f_base, head_rel, layer_total, n_heads)


def _ig_difference(model, input_ids, attention_mask, target, base_ids, n_steps, batch_size, layer_ids):
    """:func:`integrated_gradients` with ``conductance="difference"`` (see there).

    Exactly ``n_steps`` forward+backward rows: the difference of a batch's last node waits for
    the next batch's first activation, and the last node's for the activations at alpha = 1,
    which the no-grad pass of F(x) captures."""
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_layers, n_heads = len(layer_ids), cfg.num_attention_heads
    # F(x) also gives h(alpha = 1) of every layer
    f_in, f_base, e, e0, ends = _end_points(model, ids, att, base, fwd, target, layer_ids)
    diff = e - e0
    alphas = np.linspace(0.0, 1.0, n_steps + 1)
    T = ids.shape[1]
    emb_grad = torch.zeros_like(e[0])
    head_rel = torch.zeros(n_layers, T, cfg.hidden_size, device=dev)
    layer_total = torch.zeros(n_layers, dtype=torch.float64, device=dev)
    pending = None  # per layer: gradient and activation of the previous batch's last node

    def settle(i, g_ctx, h_ctx, g_out, o, h_next, o_next):
        head_rel[i] += g_ctx * (h_next - h_ctx)
        layer_total[i] += (g_out * (o_next - o)).sum().double()

    with constant_weights(model):
        for start in range(0, n_steps, batch_size):
            m = min(batch_size, n_steps - start)
            a = torch.as_tensor(alphas[start : start + m], dtype=e.dtype, device=dev)
            pending = _difference_batch(model, ids, att, fwd, target, e0, diff, a, layer_ids, n_steps,
                                        pending, settle, emb_grad, head_rel, layer_total)
    for i, l in enumerate(layer_ids):
        settle(i, *pending[i], ends[0][1][l][0], ends[1][1][l][0])
    return _result(emb_grad, diff, f_in, f_base, head_rel, layer_total, n_heads)


def _difference_batch(model, ids, att, fwd, target, e0, diff, a, layer_ids, n_steps, pending, settle,
                      emb_grad, head_rel, layer_total):
    """Add one batch of evenly spaced points ``a`` to the sums (in place) and return what the
    next batch settles: per layer the gradients and activations of this batch's last point,
    copied, so that nothing else of this batch outlives the call."""
    n_layers = len(layer_ids)
    ctx, outs, grads = _path_pass(model, ids, att, fwd, target, e0, diff, a, layer_ids)
    emb_grad += grads[0].sum(0) / n_steps
    nxt = []
    for i, l in enumerate(layer_ids):
        h, o = ctx[l].detach(), outs[l].detach()
        g_h, g_o = grads[1 + i], grads[1 + n_layers + i]
        if pending is not None:
            settle(i, *pending[i], h[0], o[0])
        head_rel[i] += (g_h[:-1] * (h[1:] - h[:-1])).sum(0)
        layer_total[i] += (g_o[:-1] * (o[1:] - o[:-1])).sum().double()
        nxt.append((g_h[-1].clone(), h[-1].clone(), g_o[-1].clone(), o[-1].clone()))
    return nxt


def _ig_polynomial(model, input_ids, attention_mask, target, base_ids, n_steps, batch_size, layer_ids):
    """:func:`integrated_gradients` with ``conductance="polynomial"`` (see there).

    One forward+backward pass per node, as for embedding-only IG. The contexts h and layer
    outputs o of the points (0, nodes..., 1) and the weighted gradients w_k g_k of the nodes stay
    only until every node whose stencil needs them is settled: in node order, as soon as its
    stencil's last point has been computed (the point alpha = 1 comes from the F(x) pass), with
    dh/dalpha = D h (:func:`path_derivative_matrix`) as one matmul per batch and kind."""
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_layers, n_heads = len(layer_ids), cfg.num_attention_heads
    f_in, f_base, e, e0, ends = _end_points(model, ids, att, base, fwd, target, layer_ids)
    diff = e - e0
    alphas, weights = gauss_legendre(n_steps)
    d = path_derivative_matrix(alphas)
    first, last = stencil_span(n_steps)
    d = torch.as_tensor(d, dtype=e.dtype, device=dev)
    T = ids.shape[1]
    # per kind (0: attention context, 1: layer output), [layer, point or node, token, hidden]:
    # the value at alpha = 1, the values of points lo, lo + 1, ... and the weighted gradients
    # of the nodes settled next
    at_one = [torch.stack([ends[k][1][l][0] for l in layer_ids]) for k in (0, 1)]
    held = [torch.stack([ends[k][0][l][0] for l in layer_ids])[:, None] for k in (0, 1)]
    waiting = [h[:, :0] for h in held]
    del ends
    lo, settled = 0, 0  # first held point; nodes settled so far
    emb_grad = torch.zeros_like(e[0])
    head_rel = torch.zeros(n_layers, T, cfg.hidden_size, device=dev)
    layer_total = torch.zeros(n_layers, dtype=torch.float64, device=dev)
    with constant_weights(model):
        for start in range(0, n_steps, batch_size):
            m = min(batch_size, n_steps - start)
            a = torch.as_tensor(alphas[start : start + m], dtype=e.dtype, device=dev)
            w = torch.as_tensor(weights[start : start + m], dtype=e.dtype, device=dev)
            values, wgrads = _polynomial_batch(model, ids, att, fwd, target, e0, diff, a, w, layer_ids, emb_grad)
            held = [torch.cat([h, v], 1) for h, v in zip(held, values)]
            waiting = [torch.cat([g, v], 1) for g, v in zip(waiting, wgrads)]
            known = start + m if start + m < n_steps else n_steps + 1  # points 0..known are in
            ready = int(np.searchsorted(last[settled:], known, side="right"))
            if ready:
                rows = d[settled : settled + ready]
                span = held[0].shape[1]
                for kind in (0, 1):
                    flat = held[kind].reshape(n_layers, span, -1)
                    slope = (torch.matmul(rows[:, lo : lo + span], flat)
                             + rows[:, -1, None] * at_one[kind].reshape(n_layers, 1, -1))
                    part = waiting[kind][:, :ready] * slope.view(n_layers, ready, T, -1)
                    if kind == 0:
                        head_rel += part.sum(1)
                    else:
                        layer_total += part.sum((1, 2, 3)).double()
                settled += ready
                waiting = [g[:, ready:] for g in waiting]
                new_lo = int(first[settled]) if settled < n_steps else known
                held = [h[:, new_lo - lo :] for h in held]
                lo = new_lo
    return _result(emb_grad, diff, f_in, f_base, head_rel, layer_total, n_heads)


def _polynomial_batch(model, ids, att, fwd, target, e0, diff, a, w, layer_ids, emb_grad):
    """One batch of Gauss-Legendre nodes ``a`` (weights ``w``): adds to ``emb_grad`` (in place)
    and returns, per kind (context, layer output), the values and the weighted gradients
    [layer, node, token, hidden], detached."""
    n_layers = len(layer_ids)
    ctx, outs, grads = _path_pass(model, ids, att, fwd, target, e0, diff, a, layer_ids)
    emb_grad += (w[:, None, None] * grads[0]).sum(0)
    values = [torch.stack([v[l].detach() for l in layer_ids]) for v in (ctx, outs)]
    wgrads = [w[None, :, None, None] * torch.stack(list(g)) for g in (grads[1 : 1 + n_layers], grads[1 + n_layers :])]
    return values, wgrads
