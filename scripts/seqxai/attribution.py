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
from pathlib import Path

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .forward_tangents import constant_weights, exact_attention_tangents, tangents_without_graph

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


CONDUCTANCE = ("jvp", "difference")


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
      of embedding-only IG, about 3x its memory per node; docs/performance.md);
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
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_layers, n_heads = len(layer_ids), cfg.num_attention_heads
    captured = {}

    def grab(o):
        captured["emb"] = o.detach()

    with torch.no_grad(), _hooks(model, grab, lambda l, o: None):
        f_in = float(model(ids, att, **fwd)[0, target])
        e = captured["emb"]
        f_base = float(model(base, att, **fwd)[0, target])
        e0 = captured["emb"]
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
    emb_attr = (emb_grad * diff[0]).sum(-1)  # [T]
    gap = f_in - f_base
    result = {
        "embedding": emb_attr.detach().cpu().numpy(),
        "f_input": f_in,
        "f_baseline": f_base,
        "delta": float(emb_attr.sum()) - gap,
    }
    if layers:
        heads = head_rel.view(n_layers, T, n_heads, -1).sum(-1).permute(0, 2, 1)
        result["heads"] = heads.detach().cpu().numpy()  # [layer, head, token]
        result["layer_delta"] = layer_total.cpu().numpy() - gap
    return result


def _ig_difference(model, input_ids, attention_mask, target, base_ids, n_steps, batch_size, layer_ids):
    """:func:`integrated_gradients` with ``conductance="difference"`` (see there).

    Exactly ``n_steps`` forward+backward rows: the difference of a batch's last node waits for
    the next batch's first activation, and the last node's for the activations at alpha = 1,
    which the no-grad pass of F(x) captures."""
    dev, ids, att, base, cfg, layer_ids, fwd = _prepare(model, input_ids, attention_mask, base_ids, layer_ids)
    n_layers, n_heads = len(layer_ids), cfg.num_attention_heads
    captured, end_ctx, end_out = {}, {}, {}
    with torch.no_grad():
        with _hooks(model, lambda o: captured.__setitem__("emb", o.detach()), end_ctx.__setitem__,
                    end_out.__setitem__, layer_ids):
            f_in = float(model(ids, att, **fwd)[0, target])   # also h(alpha = 1) of every layer
        e = captured["emb"]
        with _hooks(model, lambda o: captured.__setitem__("emb", o.detach()), lambda l, o: None):
            f_base = float(model(base, att, **fwd)[0, target])
        e0 = captured["emb"]
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
        settle(i, *pending[i], end_ctx[l][0], end_out[l][0])
    emb_attr = (emb_grad * diff[0]).sum(-1)
    gap = f_in - f_base
    heads = head_rel.view(n_layers, T, n_heads, -1).sum(-1).permute(0, 2, 1)
    return {"embedding": emb_attr.detach().cpu().numpy(), "f_input": f_in, "f_baseline": f_base,
            "delta": float(emb_attr.sum()) - gap, "heads": heads.detach().cpu().numpy(),
            "layer_delta": layer_total.cpu().numpy() - gap}


def _difference_batch(model, ids, att, fwd, target, e0, diff, a, layer_ids, n_steps, pending, settle,
                      emb_grad, head_rel, layer_total):
    """Add one batch of evenly spaced points ``a`` to the sums (in place) and return what the
    next batch settles: per layer the gradients and activations of this batch's last point,
    copied, so that nothing else of this batch outlives the call."""
    m, n_layers = len(a), len(layer_ids)
    leaf = (e0 + a[:, None, None] * diff).requires_grad_(True)
    ids_m, att_m = ids.expand(m, -1), att.expand(m, -1)
    fwd_m = {k: None if v is None else v.expand(m, -1) for k, v in fwd.items()}
    ctx, outs = {}, {}
    with torch.enable_grad(), _hooks(model, lambda o: leaf, ctx.__setitem__, outs.__setitem__, layer_ids):
        out = model(ids_m, att_m, **fwd_m)[:, target].sum()
    grads = torch.autograd.grad(out, [leaf] + [ctx[l] for l in layer_ids] + [outs[l] for l in layer_ids])
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


def attribution_targets(proteins, splits, meta: dict, split: str = "test",
                        max_proteins: int | None = None):
    """Which (protein, target logit) pairs to attribute.

    single_label tasks: the ground-truth class of every protein in ``split``;
    multi_label tasks: each term in ``task.attribute_terms`` for the proteins positive for it.
    Returns a DataFrame accession, sequence, target_index, target_label, sorted by accession.
    """
    import pandas as pd

    task, labels = meta["task"], meta["labels"]
    df = proteins.merge(splits[["accession", "split"]], on="accession")
    if split != "all":
        df = df[df["split"] == split]
    df = df.sort_values("accession")
    if task["type"] == "single_label":  # the task's label (EC cut to ec_level when set)
        from .protein_tasks import single_labels

        df = df.assign(task_label=single_labels(df, task)[0].to_numpy())
    rows = []
    for r in df.itertuples(index=False):
        if task["type"] == "single_label":
            value = r.task_label
            if value in labels:
                rows.append((r.accession, r.sequence, labels.index(value), value))
        else:
            terms = set(getattr(r, task["column"]))
            for t in task.get("attribute_terms", labels):
                if t in terms:
                    rows.append((r.accession, r.sequence, labels.index(t), t))
    out = pd.DataFrame(rows, columns=["accession", "sequence", "target_index", "target_label"])
    if max_proteins:
        keep = out["accession"].drop_duplicates().iloc[:max_proteins]
        out = out[out["accession"].isin(keep)]
    return out.reset_index(drop=True)


def estimated_cost(sequences, max_length: int, n_steps: int) -> np.ndarray:
    """cost[protein] = tokens x n_steps: the tokens the model sees (residues cut at
    ``max_length - 2``, plus the two special tokens) times the path nodes.

    One IG run is n_steps forward, JVP and backward passes over the tokens; their work is
    linear in the tokens up to attention's quadratic term (ProtBert-BFD at 1000 tokens:
    4 T^2 H / 24 T H^2 = T / 6H, about 16%), so tokens are the cost that stays honest
    without a model at hand.
    """
    tokens = np.array([min(len(s), max_length - 2) + 2 for s in sequences], dtype=np.int64)
    return tokens * int(n_steps)


def balanced_shards(cost: np.ndarray, n_shards: int) -> np.ndarray:
    """shard[item] in 0..n_shards-1: longest processing time first, deterministically.

    Items in decreasing cost (ties: input order) each go to the shard with the least cost
    so far (ties: the lowest shard). Greedy list scheduling keeps the largest shard within
    mean + max(cost) and LPT within 4/3 of the optimum, so with many proteins per shard
    every shard costs about the mean; round robin does not (sorted by accession, long
    proteins land together by chance).
    """
    import heapq

    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    cost = np.asarray(cost)
    order = np.lexsort((np.arange(len(cost)), -cost))  # cost descending, then input order
    loads = [(0, s) for s in range(n_shards)]  # already a heap
    shard = np.empty(len(cost), dtype=np.int64)
    for i in order:
        load, s = heapq.heappop(loads)
        shard[i] = s
        heapq.heappush(loads, (load + cost[i], s))
    return shard


def shard_targets(targets, shard: int, n_shards: int, max_length: int, n_steps: int):
    """The rows of ``targets`` that shard ``shard`` (0-based) attributes.

    Proteins (with all their targets) are dealt by :func:`balanced_shards` on
    :func:`estimated_cost` summed over their targets; every shard job computes the same
    assignment from the same table, so each protein lands in exactly one shard.
    """
    proteins = targets.drop_duplicates("accession")[["accession", "sequence"]]
    n_targets = targets.groupby("accession", sort=False).size()
    cost = (estimated_cost(proteins["sequence"], max_length, n_steps)
            * n_targets.loc[proteins["accession"]].to_numpy())
    where = dict(zip(proteins["accession"], balanced_shards(cost, n_shards)))
    return targets[targets["accession"].map(where) == shard]


def attribute_shard(model_dir: str, targets, shard: int, n_shards: int, n_steps: int,
                    batch_size: int, device: str = "auto", layers: bool = True, conductance: str = "jvp",
                    method: str = "ig", max_memory_gb=None):
    """Attribute the targets of shard ``shard`` (0-based) of ``n_shards`` (:func:`shard_targets`)
    by ``method`` (seqxai.attribution_methods.METHODS; ``attention_rollout`` writes no head rows).

    Path nodes go through the model ``batch_size`` at a time, or, with ``max_memory_gb`` (GiB or
    "auto"), as many as the estimate of :mod:`seqxai.micro_batches` fits for each protein's length.

    Returns two DataFrames: embedding relevance (one row per protein and target, a list
    over residues 1..L, the convergence deltas of the embedding and of every layer output)
    and head relevance (one row per protein, target, layer and head, a list over
    residues). The lists are float32, as computed (Parquet list<float>: half the bytes of
    doubles; readers cast to float64 without changing a value). Special tokens are not in
    the lists; their values are kept apart in ``relevance_start``/``relevance_end``
    ([CLS]/<cls> and [SEP]/<eos>; exactly 0 at the embedding, not at the heads) for
    statistics that keep them as the original code did.
    """
    import pandas as pd

    from .attribution_methods import attribute
    from .attribution_tables import EMBEDDING_COLUMNS, HEAD_COLUMNS
    from .io import Progress
    from .micro_batches import GIB, attribution_row_bytes, budget_bytes, path_batch_for
    from .protein_model import encode, load_classifier

    model, tok, meta = load_classifier(model_dir, device=device)
    budget = budget_bytes(max_memory_gb, next(model.parameters()).device)
    if budget is not None:
        log.info("attribution.max_memory_gb %s: %.2f GiB for the path batches", max_memory_gb, budget / GIB)
    mine = shard_targets(targets, shard, n_shards, meta["max_length"], n_steps)
    cost = estimated_cost(mine["sequence"], meta["max_length"], n_steps).sum()
    total = estimated_cost(targets["sequence"], meta["max_length"], n_steps).sum()
    log.info("shard %d/%d: %d targets, estimated cost %.3g of the mean shard's %.3g "
             "(tokens x steps)", shard + 1, n_shards, len(mine), cost, total / n_shards)
    if len(mine):  # what the longest protein of the shard asks (seqxai.micro_batches)
        tokens = min(int(mine["sequence"].str.len().max()), meta["max_length"] - 2) + 2
        row = attribution_row_bytes(model.encoder.config, tokens, layers, conductance)
        batch = batch_size if budget is None else path_batch_for(
            model, tokens, n_steps, batch_size, None, None, layers=layers, conductance=conductance,
            budget=budget)
        log.info("longest protein, %d tokens: path batches of %d nodes, estimated %.2f GiB of "
                 "activations (%.3f GiB per node)", tokens, batch, batch * row / GIB, row / GIB)
    special = set(tok.all_special_ids)
    emb_rows, head_rows = [], []
    progress = Progress(len(mine), f"{method} shard {shard + 1}/{n_shards}", logger=log)
    for r in mine.itertuples(index=False):
        enc = encode(tok, [r.sequence], meta["max_length"])
        ids, att = enc["input_ids"][0], enc["attention_mask"][0]
        n_res = int(att.sum()) - 2
        batch = batch_size if budget is None else path_batch_for(
            model, len(ids), n_steps, batch_size, None, None, layers=layers, conductance=conductance,
            budget=budget)
        res = attribute(method, model, ids, att, int(r.target_index),
                        baseline_ids(ids, special, tok.pad_token_id), n_steps, batch, layers,
                        conductance)
        emb_all = res["embedding"].astype(np.float32)
        emb_rows.append({"accession": r.accession, "target": r.target_label, "n_residues": n_res,
                         "relevance": emb_all[1 : n_res + 1].copy(),  # list<float32>
                         "relevance_start": float(emb_all[0]),
                         "relevance_end": float(emb_all[n_res + 1]),
                         "f_input": res["f_input"], "f_baseline": res["f_baseline"],
                         "delta": res["delta"],
                         "layer_delta": [float(x) for x in res.get("layer_delta", [])]})
        if layers and "heads" in res:
            heads = res["heads"].astype(np.float32)
            for l in range(heads.shape[0]):
                for h in range(heads.shape[1]):
                    head_rows.append({"accession": r.accession, "target": r.target_label,
                                      "layer": l, "head": h,
                                      "relevance": heads[l, h, 1 : n_res + 1].copy(),
                                      "relevance_start": float(heads[l, h, 0]),
                                      "relevance_end": float(heads[l, h, n_res + 1])})
        progress.update()
    return (pd.DataFrame(emb_rows, columns=EMBEDDING_COLUMNS),
            pd.DataFrame(head_rows, columns=HEAD_COLUMNS))


def run_attribution_shard(model_dirs, proteins_path, splits_path, params: dict, shard: int,
                          n_shards: int, out_dir, device: str = "auto",
                          threads: int = 1, batch_size: int = 16, max_memory_gb=None) -> None:
    """Select the targets, attribute this shard's share under every model variant and write
    both tables per variant into the folder ``out_dir``: ``<variant>/embedding.parquet`` and
    ``<variant>/heads.parquet`` (:data:`SHARD_FILES`).

    ``model_dirs`` maps a variant name (``finetuned``, a control) to its model folder; a single
    path stands for ``{"finetuned": path}``. One job for all variants of a task keeps a
    10,000-shard run with two controls at 10,000 jobs rather than 30,000 (Snakemake's DAG
    costs about 1.8 ms per job); the variants see exactly the same proteins.
    ``params`` holds what defines the result (n_steps, split, max_proteins, layers and the
    attribution ``method``, default ``ig``);
    ``device``, ``threads``, ``batch_size`` (path nodes per pass) and ``max_memory_gb`` (the
    budget that sizes the path batches instead) only set the speed.
    """
    import json

    from .attribution_tables import SHARD_FILES, convergence_summary
    from .io import DataError, atomic_dir, read_table, write_table

    if isinstance(model_dirs, (str, Path)):
        model_dirs = {"finetuned": model_dirs}
    if not model_dirs:
        raise DataError("attribution shard: no model variant to attribute")
    torch.set_num_threads(threads)
    proteins, splits = read_table(proteins_path, "proteins"), read_table(splits_path, "splits")
    # every variant's targets first: a mismatch fails before any attribution runs
    chosen = {}
    for variant, model_dir in model_dirs.items():
        meta = json.loads((Path(model_dir) / "seqxai_model.json").read_text())
        chosen[variant] = attribution_targets(proteins, splits, meta, params["split"], params["max_proteins"])
        log.info("variant %s (%s): %d attribution targets in split '%s'; this shard %d of %d", variant,
                 model_dir, len(chosen[variant]), params["split"], shard + 1, n_shards)
    first = next(iter(chosen))
    for variant, targets in chosen.items():
        if not targets[["accession", "target_label"]].equals(chosen[first][["accession", "target_label"]]):
            raise DataError(f"{model_dirs[variant]}: variant {variant} selects other attribution targets "
                            f"({len(targets)}) than {first} ({len(chosen[first])}): the variants of a task "
                            "must share its labels")
    tables = {}
    for variant, targets in chosen.items():
        emb, heads = attribute_shard(str(model_dirs[variant]), targets, shard, n_shards, params["n_steps"],
                                     batch_size, device, params["layers"], params.get("conductance", "jvp"),
                                     params.get("method", "ig"), max_memory_gb)
        if len(emb):
            for r in convergence_summary(emb, tolerance=np.inf).itertuples(index=False):
                log.info("%s completeness at %s: |delta| median %.3g max %.3g; |delta| / |F(x)-F(x')| "
                         "median %.3g max %.3g", variant, r.level, r.median_abs_delta, r.max_abs_delta,
                         r.median_relative_delta, r.max_relative_delta)
        tables[variant] = (emb, heads)
    # All tables or none: they go into a temporary folder that is renamed onto out_dir only
    # after every one is written (an interrupted shard leaves nothing that looks complete).
    # One output per shard job also keeps Snakemake's DAG of a 10,000-shard run small.
    with atomic_dir(out_dir) as tmp:
        for variant, (emb, heads) in tables.items():
            (tmp / variant).mkdir()
            write_table(tmp / variant / SHARD_FILES["embedding"], emb)
            write_table(tmp / variant / SHARD_FILES["heads"], heads)
