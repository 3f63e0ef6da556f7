"""Significant-head masks of the fine-tuned model against its controls (Wenzel et al.).

Input per variant (finetuned, frozen, shuffled): head_statistics.parquet, one row per
annotation, group, layer and head with boolean mask columns (``significant``: BH-significant
point-biserial test; ``significant_overlay``: significant for both the annotation and the
positive-relevance test, where present). Jaccard(A, B) = |A and B| / |A or B| over heads;
undefined (null) when neither mask holds a head.

A Jaccard means little without its chance level: two masks of a and b heads out of N share
heads by chance. Beside each Jaccard stand its expectation for two independent, uniformly
random masks of the same sizes (exact, over the hypergeometric distribution of the overlap)
and a one-sided permutation p-value, P(J_random >= J_observed), from seeded permutations of
one mask over the N heads.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

MASKS = ("significant", "significant_overlay")
KEYS = ["annotation", "group", "layer", "head"]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two boolean masks of the same shape; NaN when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else float("nan")


def expected_jaccard(n: int, a: int, b: int) -> float:
    """E[|A & B| / |A | B|] for independent uniformly random masks of a and b heads out of n.

    The overlap k is hypergeometric: E = sum_k P(k) k / (a + b - k),
    P(k) = C(a, k) C(n - a, b - k) / C(n, b); NaN when a = b = 0 (Jaccard undefined).
    """
    from scipy.stats import hypergeom

    if not (0 <= a <= n and 0 <= b <= n):
        raise ValueError(f"mask sizes {a}, {b} outside 0..{n} heads")
    if a + b == 0:
        return float("nan")
    k = np.arange(max(0, a + b - n), min(a, b) + 1)
    return float((hypergeom.pmf(k, n, a, b) * k / (a + b - k)).sum())


def permutation_p(a: np.ndarray, b: np.ndarray, n_permutations: int,
                  rng: np.random.Generator) -> float:
    """One-sided p = (1 + #{J(a, perm(b)) >= J(a, b)}) / (1 + n_permutations), each permutation
    shuffling mask b over all heads; NaN when both masks are empty."""
    a, b = np.asarray(a, bool).ravel(), np.asarray(b, bool).ravel()
    observed = jaccard(a, b)
    if np.isnan(observed):
        return float("nan")
    perm = rng.permuted(np.broadcast_to(b, (n_permutations, b.size)), axis=1)
    both = (perm & a).sum(axis=1)
    j = both / (a.sum() + b.sum() - both)
    # the same ratio computed twice can differ in the last bit: compare with a tolerance
    return float((1 + (j >= observed - 1e-12).sum()) / (1 + n_permutations))


def compare_variants(heads: dict[str, pd.DataFrame], n_permutations: int = 10000,
                     seed: int = 0) -> pd.DataFrame:
    """Jaccard of every mask column between every pair of variants, per annotation and group,
    beside its expectation for random masks of the same sizes and a permutation p-value.

    ``heads``: variant -> head_statistics table. Columns of the result: annotation, group,
    mask, variant_a, variant_b, n_heads, n_a, n_b, n_both, jaccard, expected_jaccard,
    p_permutation, n_permutations. One seeded generator serves all rows in table order.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    rng = np.random.default_rng(seed)
    names = list(heads)
    masks = [m for m in MASKS if all(m in heads[v].columns for v in names)]
    rows = []
    for va, vb in combinations(names, 2):
        a = heads[va][KEYS + masks]
        b = heads[vb][KEYS + masks]
        m = a.merge(b, on=KEYS, suffixes=("_a", "_b"), how="outer", indicator=True)
        if (m["_merge"] != "both").any():
            odd = m[m["_merge"] != "both"].iloc[0]
            raise ValueError(f"head tables of '{va}' and '{vb}' cover different heads, e.g. "
                             f"{dict(odd[KEYS])}")
        for (ann, grp), sub in m.groupby(["annotation", "group"], sort=True):
            for mask in masks:
                x, y = sub[f"{mask}_a"].to_numpy(bool), sub[f"{mask}_b"].to_numpy(bool)
                j = jaccard(x, y)
                rows.append({"annotation": ann, "group": grp, "mask": mask, "variant_a": va,
                             "variant_b": vb, "n_heads": len(sub), "n_a": int(x.sum()),
                             "n_b": int(y.sum()), "n_both": int((x & y).sum()),
                             "jaccard": None if np.isnan(j) else j,
                             "expected_jaccard": expected_jaccard(len(sub), int(x.sum()), int(y.sum())),
                             "p_permutation": permutation_p(x, y, n_permutations, rng),
                             "n_permutations": int(n_permutations)})
    cols = ["annotation", "group", "mask", "variant_a", "variant_b", "n_heads", "n_a", "n_b",
            "n_both", "jaccard", "expected_jaccard", "p_permutation", "n_permutations"]
    out = pd.DataFrame(rows, columns=cols)
    for c in ("jaccard", "expected_jaccard", "p_permutation"):
        out[c] = out[c].astype("float64")
    return out


def run_compare_variants(head_paths, variants, out_path, n_permutations: int = 10000,
                         seed: int = 0) -> None:
    import logging

    from .io import read_table, write_table

    log = logging.getLogger("seqxai.variant_comparison")
    table = compare_variants({v: read_table(p) for v, p in zip(variants, head_paths)},
                             n_permutations, seed)
    write_table(out_path, table)
    for r in table.itertuples(index=False):
        log.info("%s [%s] %s: %s vs %s: %d / %d / %d heads, Jaccard %.3f (random masks %.3f, "
                 "permutation p %.4f)", r.annotation, r.group, r.mask, r.variant_a, r.variant_b,
                 r.n_a, r.n_b, r.n_both, r.jaccard, r.expected_jaccard, r.p_permutation)
