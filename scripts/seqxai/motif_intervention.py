"""Is a head's attention peak driven by the sequence it attends? An in-silico intervention.

A head whose TSS profile peaks at offset ``o`` may read the bases there (sequence-driven) or
only the distance from the query (positional). Per held-out TSS and head, the bases the head
attends at its peak (the receptive field of its top-attended key within a few nt of ``o``,
chosen by the caller) are destroyed: replaced by a shuffle of themselves (same letters, new order: the A/T content stays,
so a head that reads composition keeps its attention) or by uniform random bases; ``draws``
seeded replacements per TSS. The model is rerun and the head's attention at its peak offset is
measured again. Test per head: paired one-sided Wilcoxon signed-rank of
``before - mean_d(after_d) > 0`` over TSSs, Benjamini-Hochberg over heads; effect size
``relative_drop = 1 - mean(after) / mean(before)`` (0: no change, 1: all attention gone).

Offsets are TSS-relative (0 = TSS) on the TSS's strand; ``key_offset`` and ``attention_rows``
follow :mod:`seqxai.tss_probe`. A head whose peak key lies inside the predicting query's own
receptive field (:func:`query_adjacent`) attends to the query itself where the model predicts a
TSS; its peak is the model's decision, not a motif, and it is flagged rather than tested.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .io import DataError

log = logging.getLogger("seqxai.motif_intervention")

REPLACEMENTS = ("shuffle", "random")


def query_adjacent(peak_offset: np.ndarray, label_offset: int, conv_width: int,
                   key_shift: int) -> np.ndarray:
    """True where a head's peak key (centred at ``peak_offset``) has a receptive field that
    overlaps the predicting query's (centred at ``label_offset - key_shift``): both span
    ``conv_width`` bases."""
    centre = label_offset - key_shift
    return np.abs(np.asarray(peak_offset) - centre) < conv_width


def replace_window(window: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A replacement for ``window`` (token codes 0..3, N = 4 kept in place): ``shuffle`` permutes
    its A/C/G/T bases, ``random`` draws uniform A/C/G/T."""
    out = np.array(window, copy=True)
    acgt = out < 4
    if kind == "shuffle":
        out[acgt] = rng.permutation(out[acgt])
    elif kind == "random":
        out[acgt] = rng.integers(0, 4, int(acgt.sum()))
    else:
        raise DataError(f"dna.probe.intervention.replacement: '{kind}' "
                        f"(expected one of {list(REPLACEMENTS)})")
    return out


def intervene(rows_fn, tokens: dict, t_index: np.ndarray, strands: np.ndarray, top: np.ndarray,
              peak_index: np.ndarray, key_offset: np.ndarray, half_width: int, draws: int,
              kind: str, seed: int, reach: int, heads=None) -> np.ndarray:
    """after[tss, layer, head] = the mean over ``draws`` of the head's attention at its peak key
    (index ``peak_index[layer, head]`` into ``key_offset``) when the bases at
    ``top[tss, layer, head] +- half_width`` (TSS-relative) are replaced (:func:`replace_window`).
    ``rows_fn(tokens, t_index, strands, n_layers) -> attn_rows[tss, layer, head, key]`` runs the
    model's first ``n_layers`` layers (a head of layer ``l`` needs ``l + 1``);
    ``reach``: the model window (bases upstream of a query it reads); TSSs whose edits lie
    farther apart share one model run. ``heads``: the (layer, head) pairs to test (default
    all; the others stay NaN)."""
    n_tss, n_layers, n_heads = top.shape
    heads = [(lay, h) for lay in range(n_layers) for h in range(n_heads)] if heads is None else list(heads)
    after = np.full((n_tss, n_layers, n_heads), np.nan)
    L = len(tokens["+"])
    rel = np.arange(-half_width, half_width + 1)
    edited = {s: tokens[s].copy() for s in tokens}  # edited in place and restored per group
    for lay, h in heads:
        acc = np.zeros(n_tss)
        for d in range(draws):
            rng = np.random.default_rng([seed, lay, h, d])
            # edit the genome copy in place for a group of TSSs whose windows cannot see each
            # other's edits, run the group, undo the edits
            pos = t_index[:, None] + top[:, lay, h][:, None] + rel[None, :]
            groups = _non_overlapping(pos, strands, reach + 2 * half_width + 1)
            for g in groups:
                for i in g:
                    p = pos[i][(pos[i] >= 0) & (pos[i] < L)]
                    edited[strands[i]][p] = replace_window(tokens[strands[i]][p], kind, rng)
                rows = rows_fn(edited, t_index[g], strands[g], n_layers=lay + 1)
                acc[g] += rows[:, lay, h, peak_index[lay, h]]
                for i in g:
                    p = pos[i][(pos[i] >= 0) & (pos[i] < L)]
                    edited[strands[i]][p] = tokens[strands[i]][p]
        after[:, lay, h] = acc / draws
    return after


def _non_overlapping(pos: np.ndarray, strands: np.ndarray, reach: int) -> list[np.ndarray]:
    """Split TSS indices into groups whose edited windows lie at least ``reach`` bases apart on
    each strand, so that one model run per group sees only each TSS's own edit."""
    order = np.lexsort((pos[:, 0], strands))
    groups: list[list[int]] = []
    last: list[dict] = []
    for i in order:
        for g, seen in zip(groups, last):
            if all(abs(int(pos[i, 0]) - p) > reach for p in seen.get(strands[i], [])):
                g.append(int(i))
                seen.setdefault(strands[i], []).append(int(pos[i, 0]))
                break
        else:
            groups.append([int(i)])
            last.append({strands[i]: [int(pos[i, 0])]})
    return [np.array(sorted(g)) for g in groups]


def intervention_table(before: np.ndarray, after: np.ndarray, peak_offset: np.ndarray,
                       adjacent: np.ndarray, alpha: float) -> pd.DataFrame:
    """Per head over the TSSs with a finite ``before`` (the caller sets NaN for TSSs it does not
    test): n_tss, mean attention at the peak before and after the intervention,
    relative_drop, the paired one-sided Wilcoxon p (before > after), its BH q over the tested
    heads, and ``query_adjacent`` (not tested)."""
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    n_layers, n_heads = before.shape[1:]
    rows = []
    for lay in range(n_layers):
        for h in range(n_heads):
            a, b = before[:, lay, h], after[:, lay, h]
            ok = np.isfinite(a) & np.isfinite(b)
            diff = a[ok] - b[ok]
            diff[np.abs(diff) < 1e-6] = 0.0  # float noise of unchanged rows: no change (dropped)
            p = np.nan
            if not adjacent[lay, h] and ok.sum() >= 2 and np.any(diff != 0):
                p = float(wilcoxon(diff, alternative="greater", zero_method="wilcox").pvalue)
            mb, ma = (float(a[ok].mean()), float(b[ok].mean())) if ok.any() else (np.nan, np.nan)
            rows.append({"layer": lay, "head": h, "peak_offset": int(peak_offset[lay, h]),
                         "query_adjacent": bool(adjacent[lay, h]), "n_tss": int(ok.sum()),
                         "attention_before": mb, "attention_after": ma,
                         "relative_drop": 1.0 - ma / mb if mb > 0 else np.nan, "p": p})
    df = pd.DataFrame(rows)
    p = df["p"].to_numpy(float)
    df["q"] = np.nan
    if np.isfinite(p).any():  # BH over the tested heads (query-adjacent and unchanged ones: NaN)
        df.loc[np.isfinite(p), "q"] = multipletests(p[np.isfinite(p)], method="fdr_bh")[1]
    return df
