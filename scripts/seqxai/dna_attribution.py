"""Integrated gradients of the TSS transformer's predicting logit w.r.t. the one-hot input.

Conventions
-----------
- Input: one window per TSS in its strand orientation (5'->3', as the probe reads it,
  :mod:`seqxai.tss_probe`), tokens ``x[window, T]``; the target is the logit at the predicting
  position ``q = t + label_offset``, window index ``left``. The window holds every token the
  logit can depend on: ``left = n_layers * (context + conv_width - 1)`` tokens upstream (the
  probe's window) and, for bidirectional attention, ``n_layers * context`` downstream (0 when
  causal); with the ``clauwaert2021`` architecture's centred convolution ``n_layers * (context
  + 3)`` upstream and ``3 n_layers`` downstream (:func:`seqxai.dna_model.key_receptive_field`);
  tokens past a strand end are PAD.
- One-hot: ``onehot[window, T, ACGT]``; N and PAD positions are all-zero rows and keep their
  own embedding (they are identical in input and baseline, so they get exactly 0). The model's
  embedding lookup is replaced by ``e = C + X @ E[ACGT]`` (``C`` = the embedding of N/PAD where
  present, else 0), which equals the lookup on a one-hot ``X``, so every base has a gradient.
- Baseline: ``X' = reference`` at every A/C/G/T position, a letter distribution; default
  ``uniform`` = 0.25 each, i.e. the mean of the four base embeddings (``genome``: the genome's
  base composition; ``zero``: the zero vector, i.e. no base embedding at all).
- Path: ``X(alpha) = X' + alpha (X - X')``; Gauss-Legendre nodes and weights
  (:func:`seqxai.attribution.gauss_legendre`). ``grad_integral[i, b] = sum_k w_k dF/dX_ib(alpha_k)``.
  Nodes per window (:func:`adaptive_integrated_gradients`): ``n_steps``, doubled while the
  relative delta exceeds the tolerance, up to ``max_steps``. Why they differ: a trained model's
  saturated attention head can switch within a few thousandths of alpha, so ``dF/dalpha`` is
  nearly a step there (measured on the demo model: benchmarks/dna_ig_steps.py).
- ``per_base[i, b] = (X - X')_ib * grad_integral[i, b]`` (what Captum's IntegratedGradients
  returns on the one-hot input); ``contribution[i] = sum_b per_base[i, b]`` (the actual
  contribution; completeness: ``sum_i contribution[i] ~= F(x) - F(x')``, ``delta`` = the gap).
- ``hypothetical[i, b] = grad_integral[i, b] - sum_c X'_c grad_integral[i, c]``: the
  contribution base ``b`` would get at ``i`` with the same gradient integral (the mean-centred
  gradient for the uniform reference), as TF-MoDISco expects; ``sum_b onehot[i, b] *
  hypothetical[i, b] == contribution[i]`` exactly. 0 at N/PAD positions (no base to swap).
- Per head (optional, the protein side's one-pass method, METHODS section 1): the conductance of
  each layer's attention context (input of the output projection, heads concatenated) along the
  same path, ``heads[window, layer, head, T]``, with forward-mode dh/dalpha; and
  ``layer_delta[window, layer]``, the completeness gap of each layer's output (a cut).
- Offsets: window index ``i`` is TSS-relative offset ``i - left + label_offset`` (TSS = 0).
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter

import numpy as np
import pandas as pd
import torch
import torch.autograd.forward_ad as fwAD

from .attribution import gauss_legendre
from .io import DataError, Progress
from .tss_windows import PAD, oriented_tokens, oriented_tss_index, single_chromosome, tss_subset

log = logging.getLogger("seqxai.dna_attribution")

ALPHABET = "ACGT"
BASELINES = ("uniform", "genome", "zero")
DEFAULT_ATTRIBUTION = {"tss_set": "all", "max_tss": 0, "n_background": 0, "background_min_distance": 150,
                       "baseline": "uniform", "n_steps": 50, "max_steps": 256, "offset_min": -100,
                       "offset_max": 20, "heads": True, "delta_tolerance": 0.05}


# ----------------------------------------------------------------------------- inputs
def one_hot(tokens: np.ndarray) -> np.ndarray:
    """``onehot[..., ACGT]`` (float32) of token codes; N (4) and PAD (5) rows are all zero."""
    tokens = np.asarray(tokens)
    return (tokens[..., None] == np.arange(4)).astype(np.float32)


def reference_distribution(kind: str, tokens: np.ndarray | None = None) -> np.ndarray:
    """The baseline letter distribution (ACGT): ``uniform`` (0.25 each), ``genome`` (the base
    composition of ``tokens``) or ``zero``."""
    if kind == "uniform":
        return np.full(4, 0.25)
    if kind == "zero":
        return np.zeros(4)
    if kind == "genome":
        if tokens is None:
            raise ValueError("reference 'genome' needs the genome tokens")
        counts = np.bincount(np.asarray(tokens).ravel(), minlength=6)[:4].astype(float)
        if counts.sum() == 0:
            raise DataError("dna.attribution.baseline = 'genome': the genome has no A/C/G/T")
        return counts / counts.sum()
    raise DataError(f"dna.attribution.baseline: '{kind}' (expected one of {', '.join(BASELINES)})")


def window_extent(model_cfg: dict, offset_min: int | None = None,
                  offset_max: int | None = None) -> tuple[int, int]:
    """``(left, right)``: tokens read before and after the predicting position (see module
    docstring), widened so that the offsets ``offset_min..offset_max`` lie inside."""
    from .dna_model import key_receptive_field

    # the last layer's output reads its keys i - context .. i (.. i + context when bidirectional)
    last = key_receptive_field(model_cfg).iloc[-1]
    down = 0 if model_cfg.get("attention", "causal") == "causal" else model_cfg["context"]
    left, right = model_cfg["context"] - int(last.token_lo), int(last.token_hi) + down
    lo = model_cfg["label_offset"]
    if offset_min is not None:
        left = max(left, lo - int(offset_min))
    if offset_max is not None:
        right = max(right, int(offset_max) - lo)
    return left, right


def tss_windows(tokens: dict, t_index: np.ndarray, strands: np.ndarray, label_offset: int, left: int,
                right: int) -> np.ndarray:
    """Token windows ``x[tss, left + 1 + right]`` around each predicting position
    ``q = t + label_offset`` (oriented ``q - left .. q + right``), PAD beyond the strand."""
    L = len(tokens["+"])
    T = left + 1 + right
    x = np.full((len(t_index), T), PAD, dtype=np.int64)
    for r, (t, s) in enumerate(zip(t_index, strands)):
        a = int(t) + label_offset - left
        lo, hi = max(a, 0), min(a + T, L)
        if hi > lo:
            x[r, lo - a : hi - a] = tokens[s][lo:hi]
    return x


# ----------------------------------------------------------------------------- IG
@contextlib.contextmanager
def _hooks(model, embedding, on_context=None, on_layer=None):
    """Replace the embedding output by ``embedding()``; hand each layer's attention context
    (input of its output projection) and output to the callbacks."""
    handles = [model.embed.register_forward_hook(lambda m, i, o: embedding())]
    for l, layer in enumerate(model.layers):
        if on_context is not None:
            handles.append(layer.out.register_forward_pre_hook(lambda m, a, l=l: on_context(l, a[0])))
        if on_layer is not None:
            handles.append(layer.register_forward_hook(lambda m, i, o, l=l: on_layer(l, o[0])))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def prepare_windows(model, x, reference=None):
    """Eval mode; (device, dtype, the reference base distribution as a tensor (uniform when
    None), the windows ``x[window, T]`` as int64, the ACGT rows of the embedding ``E4[4, d]``)."""
    model.eval()
    dev = next(model.parameters()).device
    dtype = model.embed.weight.dtype
    ref = torch.as_tensor(np.full(4, 0.25) if reference is None else reference, dtype=dtype, device=dev)
    return dev, dtype, ref, np.asarray(x, dtype=np.int64), model.embed.weight[:4].detach()


def integrated_gradients(model, x: np.ndarray, query_index: int, reference=None, n_steps: int = 50,
                         batch_size: int = 64, heads: bool = False, label: str = "IG windows"
                         ) -> dict[str, np.ndarray]:
    """IG of the logit at window index ``query_index`` for token windows ``x[window, T]``
    w.r.t. their one-hot input (module docstring). Path nodes of several windows share a
    pass: at most ``batch_size`` (window, node) rows per forward/backward pass; gradients are
    accumulated per chunk of nodes, so memory does not grow with ``n_steps``.

    Returns ``per_base``, ``grad_integral``, ``hypothetical`` ``[window, T, 4]``,
    ``contribution[window, T]``, ``f_input``, ``f_baseline``, ``delta[window]`` and, with
    ``heads``, ``heads[window, layer, head, T]`` and ``layer_delta[window, layer]``. ``label``
    names the progress lines.
    """
    dev, dtype, ref, x, E4 = prepare_windows(model, x, reference)
    n, T = x.shape
    cfg = model.config
    n_layers, n_heads, d_head = cfg["n_layers"], cfg["n_heads"], cfg["d_head"]
    alphas, weights = gauss_legendre(n_steps)
    g = 1 if n_steps >= batch_size else max(1, batch_size // n_steps)       # windows per pass
    m = min(n_steps, batch_size)                                            # nodes per pass
    out = {k: np.zeros((n, T, 4), np.float32) for k in ("per_base", "grad_integral", "hypothetical")}
    out.update(contribution=np.zeros((n, T), np.float32), f_input=np.zeros(n), f_baseline=np.zeros(n))
    if heads:
        out["heads"] = np.zeros((n, n_layers, n_heads, T), np.float32)
        out["layer_delta"] = np.zeros((n, n_layers))
    prog = Progress(n, label, every=10.0, logger=log)
    for i0 in range(0, n, g):
        xt = torch.as_tensor(x[i0 : i0 + g], device=dev)
        b = len(xt)
        X = torch.as_tensor(one_hot(x[i0 : i0 + g]), dtype=dtype, device=dev)            # b,T,4
        acgt = (xt < 4).to(dtype)[..., None]
        R = ref * acgt                                                                      # b,T,4
        with torch.no_grad():
            C = model.embed(xt) * (1 - acgt)                  # N/PAD keep their own embedding
            e0 = C + R @ E4
            diff = (X - R) @ E4                                                             # b,T,d
        with torch.no_grad():
            for key, emb in (("f_input", e0 + diff), ("f_baseline", e0)):
                with _hooks(model, lambda: emb):  # noqa: B023
                    out[key][i0 : i0 + b] = model(xt)[:, query_index].double().cpu().numpy()
        grad = torch.zeros(b, T, 4, dtype=dtype, device=dev)
        head_rel = torch.zeros(b, n_layers, T, n_heads * d_head, dtype=dtype, device=dev)
        layer_total = torch.zeros(b, n_layers, dtype=torch.float64, device=dev)
        for k0 in range(0, n_steps, m):
            a = torch.as_tensor(alphas[k0 : k0 + m], dtype=dtype, device=dev)
            w = torch.as_tensor(weights[k0 : k0 + m], dtype=dtype, device=dev)
            mk = len(a)
            # rows: window-major, node-minor
            path = (e0[:, None] + a[None, :, None, None] * diff[:, None]).reshape(b * mk, T, -1)
            tangent = diff[:, None].expand(b, mk, T, diff.shape[-1]).reshape(b * mk, T, -1)
            xm = xt[:, None].expand(b, mk, T).reshape(b * mk, T)
            ctx_tan, out_tan = {}, {}
            if heads:  # forward mode: dh/dalpha of every layer's context and output at once
                with torch.no_grad(), fwAD.dual_level():
                    dual = fwAD.make_dual(path, tangent)
                    cs, os_ = {}, {}
                    with _hooks(model, lambda: dual, cs.__setitem__, os_.__setitem__):  # noqa: B023
                        model(xm)
                    ctx_tan = {l: fwAD.unpack_dual(v).tangent.detach() for l, v in cs.items()}
                    out_tan = {l: fwAD.unpack_dual(v).tangent.detach() for l, v in os_.items()}
            leaf = path.clone().requires_grad_(True)
            ctx, outs = {}, {}
            with torch.enable_grad(), _hooks(model, lambda: leaf, ctx.__setitem__ if heads else None,  # noqa: B023
                                             outs.__setitem__ if heads else None):
                f = model(xm)[:, query_index].sum()
                wrt = [leaf] + ([ctx[l] for l in range(n_layers)] + [outs[l] for l in range(n_layers)]
                                if heads else [])
                grads = torch.autograd.grad(f, wrt)
            wv = w.repeat(b)[:, None, None]                                   # per row
            gx = (grads[0] * wv) @ E4.T                                        # dF/dX, b*mk,T,4
            grad += gx.reshape(b, mk, T, 4).sum(1)
            if heads:
                for l in range(n_layers):
                    c = (grads[1 + l] * wv * ctx_tan[l]).reshape(b, mk, T, -1).sum(1)
                    head_rel[:, l] += c
                    o = (grads[1 + n_layers + l] * wv * out_tan[l]).reshape(b, mk, -1).sum((1, 2))
                    layer_total[:, l] += o.double()
        per_base = (X - R) * grad
        hyp = (grad - (grad * ref).sum(-1, keepdim=True)) * acgt   # none at N/PAD: no base there to swap
        sl = slice(i0, i0 + b)
        out["per_base"][sl] = per_base.cpu().numpy()
        out["grad_integral"][sl] = grad.cpu().numpy()
        out["hypothetical"][sl] = hyp.cpu().numpy()
        out["contribution"][sl] = per_base.sum(-1).cpu().numpy()
        if heads:
            hr = head_rel.reshape(b, n_layers, T, n_heads, d_head).sum(-1).permute(0, 1, 3, 2)
            out["heads"][sl] = hr.cpu().numpy()
            gap = out["f_input"][sl] - out["f_baseline"][sl]
            out["layer_delta"][sl] = layer_total.cpu().numpy() - gap[:, None]
        prog.update(b)
    out["delta"] = out["contribution"].astype(np.float64).sum(1) - (out["f_input"] - out["f_baseline"])
    return out


def relative_delta(res: dict) -> np.ndarray:
    """``|delta| / |F(x) - F(x')|`` per window (the gap floored at 1e-12, as the protein side's
    :func:`seqxai.attribution_tables.flag_convergence`); with ``layer_delta`` the largest of
    it and every layer output's ``|layer_delta| / |F(x) - F(x')|``."""
    gap = np.maximum(np.abs(res["f_input"] - res["f_baseline"]), 1e-12)
    rel = np.abs(res["delta"]) / gap
    if "layer_delta" in res and res["layer_delta"].shape[1]:
        rel = np.maximum(rel, (np.abs(res["layer_delta"]) / gap[:, None]).max(1))
    return rel


def adaptive_integrated_gradients(model, x: np.ndarray, query_index: int, reference=None, n_steps: int = 16,
                                  max_steps: int = 256, tolerance: float = 0.05, batch_size: int = 64,
                                  heads: bool = False) -> dict[str, np.ndarray]:
    """:func:`integrated_gradients` with the number of Gauss-Legendre nodes chosen per window:
    every window starts at ``n_steps``; those whose :func:`relative_delta` exceeds
    ``tolerance`` are integrated again with twice the nodes, while that stays <= ``max_steps``.
    The windows of one round share passes, so a window that converges at ``n_steps`` costs what
    a fixed ``n_steps`` costs. Gauss-Legendre nodes are not nested (a doubled rule shares none
    with the last), so a window that needs ``n_steps * 2^k`` costs about twice that in all.

    Adds to :func:`integrated_gradients`'s arrays (each window's from its last round):
    ``steps[window]`` (nodes used), ``relative_delta[window]``, ``converged[window]``
    (``relative_delta <= tolerance``) and ``rounds`` (one dict per round: steps, windows,
    converged, median relative delta).
    """
    import time

    if n_steps < 1 or max_steps < n_steps:
        raise DataError(f"dna.attribution: need 1 <= n_steps <= max_steps (got n_steps {n_steps}, "
                        f"max_steps {max_steps})")
    x = np.asarray(x, dtype=np.int64)
    n = len(x)
    todo, steps, out, rounds = np.arange(n), int(n_steps), {}, []
    while len(todo):
        t0 = time.monotonic()
        res = integrated_gradients(model, x[todo], query_index, reference, steps, batch_size, heads,
                                   label=f"IG windows ({steps} steps)")
        res["relative_delta"] = relative_delta(res)
        res["steps"] = np.full(len(todo), steps)
        res["converged"] = res["relative_delta"] <= tolerance
        for k, v in res.items():
            if k not in out:
                out[k] = np.zeros((n,) + v.shape[1:], v.dtype)
            out[k][todo] = v            # a later round overwrites: each window keeps its last
        ok = res["converged"]
        dt = time.monotonic() - t0
        # no wall-clock time in the output: it must be the same on a rerun (the log has it)
        rounds.append({"steps": steps, "windows": len(todo), "converged": int(ok.sum()),
                       "relative_delta_median": float(np.median(res["relative_delta"]))})
        last = 2 * steps > max_steps
        log.info("IG round %d: %d steps on %d windows in %.0f s (%.2f windows/s): %d within %g, %d %s",
                 len(rounds), steps, len(todo), dt, len(todo) / max(dt, 1e-9), ok.sum(), tolerance, (~ok).sum(),
                 "not converged at max_steps" if last else f"go on with {2 * steps} steps")
        todo = todo[~ok]
        if last:
            break
        steps *= 2
    out["rounds"] = rounds
    return out


# ----------------------------------------------------------------------------- TSS selection
def select_tss(tss: pd.DataFrame, length: int, label_offset: int, tss_set: str = "all",
               split: dict | None = None, max_tss: int = 0, seed: int = 1) -> pd.DataFrame:
    """The TSSs to attribute: ``tss_set`` all | heldout (valid + test blocks, as the probe),
    those whose predicting position lies on the strand, then a seeded sample of ``max_tss``
    (0 = all), in table order. Adds ``t_index`` (oriented 0-based)."""
    tss = tss_subset(tss, tss_set, split, "dna.attribution.tss_set")
    t = np.where(tss.strand == "+", tss.position - 1, length - tss.position).astype(np.int64)
    tss = tss.assign(t_index=t)[t + label_offset < length].reset_index(drop=True)
    if max_tss and len(tss) > max_tss:
        keep = np.sort(np.random.default_rng(seed).choice(len(tss), size=int(max_tss), replace=False))
        tss = tss.iloc[keep].reset_index(drop=True)
    return tss


def attribute_tss(model, genome: dict, tss: pd.DataFrame, cfg: dict | None = None, seed: int = 1,
                  split: dict | None = None, batch_size: int = 64, source: str = "tss",
                  method: str = "ig") -> dict:
    """IG for the selected TSSs (and ``n_background`` random non-TSS positions), cut to the
    offsets ``offset_min..offset_max`` (``method`` attnlrp / grad_x_input:
    :mod:`seqxai.dna_attribution_methods`, the same tables, ``n_steps`` 0, every window
    converged). Returns ``{"windows": DataFrame, "heads": DataFrame,
    "summary": dict}``: one row per window with ``sequence`` (the offset range, TSS
    orientation), ``contribution`` (per offset), ``hypothetical`` (offset x ACGT, row-major),
    ``f_input``, ``f_baseline``, ``delta``, ``relative_delta``, ``n_steps`` (the nodes the
    window needed, :func:`adaptive_integrated_gradients`) and ``converged``; per window, layer
    and head the conductance per offset."""
    from .tss_background import background_positions

    c = {**DEFAULT_ATTRIBUTION, **(cfg or {})}
    chrom, seq = single_chromosome(genome, tss, source)
    L = len(seq)
    mcfg = model.config
    lo = int(mcfg["label_offset"])
    omin, omax = int(c["offset_min"]), int(c["offset_max"])
    if omin > omax:
        raise DataError(f"dna.attribution: offset_min {omin} > offset_max {omax}")
    sel = select_tss(tss, L, lo, c["tss_set"], split, int(c["max_tss"]), seed)
    if len(sel) == 0:
        raise DataError(f"{source}: no TSS left to attribute (tss_set={c['tss_set']})")
    tokens = oriented_tokens(seq)
    ref = reference_distribution(c["baseline"], tokens["+"])
    left, right = window_extent(mcfg, omin, omax)
    ids = sel["tss_id"].astype(str).to_numpy() if "tss_id" in sel else sel.index.astype(str).to_numpy()
    kinds, t_all, s_all = ["tss"] * len(sel), sel.t_index.to_numpy(), sel.strand.to_numpy()
    n_bg = int(c["n_background"])
    if n_bg:
        all_t = oriented_tss_index(tss, L)
        strand_of = np.array(["+"] * len(all_t["+"]) + ["-"] * len(all_t["-"]))
        bg_t, bg_s = background_positions(np.concatenate([all_t["+"], all_t["-"]]), strand_of, L, n_bg,
                                          int(c["background_min_distance"]), lo, seed)
        ids = np.concatenate([ids, [f"background_{i}" for i in range(n_bg)]])
        kinds += ["background"] * n_bg
        t_all, s_all = np.concatenate([t_all, bg_t]), np.concatenate([s_all, bg_s])
    x = tss_windows(tokens, t_all, s_all, lo, left, right)
    if method != "ig":
        return _method_tables(model, x, left, ref, method, c, batch_size, ids, kinds, chrom, s_all, t_all, L,
                              len(sel), seed)
    log.info("IG of the logit at TSS+%d for %d TSSs and %d background positions: windows of %d tokens, "
             "baseline %s %s, %d Gauss-Legendre steps doubled up to %d until the relative delta <= %g",
             lo, len(sel), n_bg, x.shape[1], c["baseline"], np.round(ref, 4).tolist(), c["n_steps"],
             c["max_steps"], c["delta_tolerance"])
    res = adaptive_integrated_gradients(model, x, left, ref, int(c["n_steps"]), int(c["max_steps"]),
                                        float(c["delta_tolerance"]), batch_size, bool(c["heads"]))
    rel = res["relative_delta"]
    windows, heads = _windows_table(res, x, ids, kinds, chrom, s_all, t_all, L, omin, omax, lo, left)
    is_tss = windows.kind == "tss"
    summary = {
        "chrom": chrom, "n_tss": int(is_tss.sum()), "n_background": n_bg, "tss_set": c["tss_set"],
        "baseline": c["baseline"], "reference_acgt": ref.tolist(), "n_steps": int(c["n_steps"]),
        "max_steps": int(c["max_steps"]), "window_tokens": int(x.shape[1]), "offset_range": [omin, omax],
        "query_offset": lo, "delta_tolerance": float(c["delta_tolerance"]),
        "n_converged": int(windows.converged.sum()), "n_not_converged": int((~windows.converged).sum()),
        "windows_by_steps": {str(k): int(v) for k, v in sorted(Counter(res["steps"].tolist()).items())},
        "rounds": res["rounds"],
        "abs_delta_median": float(np.median(np.abs(res["delta"]))),
        "abs_delta_max": float(np.max(np.abs(res["delta"]))),
        "relative_delta_median": float(np.median(rel)), "relative_delta_max": float(np.max(rel)),
        "mean_f_input_tss": float(res["f_input"][is_tss.to_numpy()].mean()), "seed": seed,
    }
    if c["heads"]:
        summary["layer_abs_delta_max"] = np.abs(res["layer_delta"]).max(0).tolist()
    log.info("completeness: |delta| median %.3g max %.3g; relative median %.3g max %.3g; windows by steps %s; "
             "%d of %d not converged (relative delta > %g at %d steps)", summary["abs_delta_median"],
             summary["abs_delta_max"], summary["relative_delta_median"], summary["relative_delta_max"],
             summary["windows_by_steps"], summary["n_not_converged"], len(windows), c["delta_tolerance"],
             int(c["max_steps"]))
    if summary["n_not_converged"]:
        log.warning("%d windows did not converge (TF-MoDISco leaves them out): %s", summary["n_not_converged"],
                    ", ".join(windows.window_id[~windows.converged].astype(str).tolist()[:20]))
    return {"windows": windows, "heads": heads, "summary": summary}


def _windows_table(res, x, ids, kinds, chrom, s_all, t_all, L, omin, omax, lo, left):
    """The windows table (and heads table) of one method's arrays, cut to the offsets."""
    i0, i1 = left - lo + omin, left - lo + omax + 1                   # window indices of the offsets
    positions = np.where(s_all == "+", t_all + 1, L - t_all)            # 1-based genome position of t
    seqs = ["".join(ALPHABET[v] if v < 4 else "N" for v in row) for row in x[:, i0:i1]]
    windows = pd.DataFrame({
        "window_id": ids, "kind": kinds, "chrom": chrom, "strand": s_all, "position": positions,
        "offset_min": omin, "offset_max": omax, "sequence": seqs,
        "contribution": list(res["contribution"][:, i0:i1]),
        "hypothetical": list(res["hypothetical"][:, i0:i1].reshape(len(x), -1)),
        "f_input": res["f_input"], "f_baseline": res["f_baseline"], "delta": res["delta"],
        "relative_delta": res["relative_delta"], "n_steps": res["steps"], "converged": res["converged"],
        "attribution_outside": res["contribution"].sum(1) - res["contribution"][:, i0:i1].sum(1),
    })
    if "heads" in res:
        windows["layer_delta"] = list(res["layer_delta"])
        hv = res["heads"][..., i0:i1]
        nl, nh = hv.shape[1:3]
        wi, li, hi = np.indices((len(x), nl, nh)).reshape(3, -1)
        heads = pd.DataFrame({"window_id": ids[wi], "layer": li, "head": hi,
                              "relevance": list(hv.reshape(-1, hv.shape[-1]))})
    else:
        heads = pd.DataFrame(columns=["window_id", "layer", "head", "relevance"])
    return windows, heads


def _method_tables(model, x, left, ref, method, c, batch_size, ids, kinds, chrom, s_all, t_all, L, n_tss, seed):
    """:func:`attribute_tss` for a method without a path integral (attnlrp, grad_x_input)."""
    from .dna_attribution_methods import PASSES, gradient_attribution

    lo, omin, omax = int(model.config["label_offset"]), int(c["offset_min"]), int(c["offset_max"])
    log.info("%s of the logit at TSS+%d for %d windows of %d tokens (reference %s for grad_x_input and the "
             "hypothetical contributions)", method, lo, len(x), x.shape[1], np.round(ref, 4).tolist())
    res = gradient_attribution(model, x, left, method, ref, batch_size, bool(c["heads"]))
    res["relative_delta"] = relative_delta(res)
    windows, heads = _windows_table(res, x, ids, kinds, chrom, s_all, t_all, L, omin, omax, lo, left)
    if method == "attnlrp":
        windows["r_softmax"] = res["r_softmax"]
    rel = res["relative_delta"]
    is_tss = (windows.kind == "tss").to_numpy()
    summary = {
        "method": method, "chrom": chrom, "n_tss": int(n_tss), "n_background": int(c["n_background"]),
        "tss_set": c["tss_set"], "baseline": c["baseline"], "reference_acgt": ref.tolist(),
        "window_tokens": int(x.shape[1]), "offset_range": [omin, omax], "query_offset": lo,
        "passes_per_window": PASSES[method],
        "abs_delta_median": float(np.median(np.abs(res["delta"]))),
        "abs_delta_max": float(np.max(np.abs(res["delta"]))),
        "relative_delta_median": float(np.median(rel)), "relative_delta_max": float(np.max(rel)),
        "mean_f_input_tss": float(res["f_input"][is_tss].mean()), "seed": seed,
    }
    if method == "attnlrp":
        parts = (np.abs(res["contribution"]).sum(1) + np.abs(res["f_baseline"]) + np.abs(res["r_softmax"]))
        gap = res["contribution"].sum(1) + res["f_baseline"] + res["r_softmax"] - res["f_input"]
        summary["conservation_max"] = float(np.max(np.abs(gap) / np.maximum(parts, 1e-12)))
    log.info("%s: |delta| median %.3g max %.3g (%s)", method, summary["abs_delta_median"], summary["abs_delta_max"],
             "the softmax rule's absorbed relevance" if method == "attnlrp" else "one node against the path integral")
    return {"windows": windows, "heads": heads, "summary": summary}


def mean_profiles(windows: pd.DataFrame) -> pd.DataFrame:
    """Per kind (tss / background) and offset: mean contribution and mean |contribution|."""
    rows = []
    for kind, df in windows.groupby("kind", sort=True):
        a = np.stack(df.contribution.to_numpy())
        offsets = np.arange(int(df.offset_min.iloc[0]), int(df.offset_max.iloc[0]) + 1)
        rows.append(pd.DataFrame({"kind": kind, "offset": offsets, "mean_contribution": a.mean(0),
                                  "mean_abs_contribution": np.abs(a).mean(0), "n_windows": len(a)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["kind", "offset", "mean_contribution", "mean_abs_contribution", "n_windows"])


def run_attribution(model_path, genome_path, tss_path, out: dict, cfg=None, seed: int = 1, threads: int = 1,
                    device: str = "auto", batch_size: int = 64, method: str = "ig") -> dict:
    """File-level entry point of the ``attribute_dna`` and ``attribute_dna_method`` rules:
    ``out`` maps windows, heads, profile, summary to paths."""
    from .devices import pick_device
    from .dna_model import load_model
    from .io import read_fasta, read_table, write_json, write_table

    torch.set_num_threads(max(int(threads), 1))
    model, ckpt = load_model(model_path, pick_device(device))
    res = attribute_tss(model, read_fasta(genome_path), read_table(tss_path, "tss"), cfg, seed,
                        ckpt.get("split"), batch_size, source=str(tss_path), method=method)
    write_table(out["windows"], res["windows"])
    write_table(out["heads"], res["heads"])
    write_table(out["profile"], mean_profiles(res["windows"]))
    write_json(out["summary"], res["summary"])
    return res["summary"]
