"""Significant-head masks of the fine-tuned model against its controls (Wenzel et al.).

Input per variant (finetuned, frozen, shuffled): head_statistics.parquet, one row per
annotation, group, layer and head with boolean mask columns (``significant``: BH-significant
point-biserial test; ``significant_overlay``: significant for both the annotation and the
positive-relevance test, where present). Jaccard(A, B) = |A and B| / |A or B| over heads;
undefined (null) when neither mask holds a head.
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


def compare_variants(heads: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Jaccard of every mask column between every pair of variants, per annotation and group.

    ``heads``: variant -> head_statistics table. Columns of the result: annotation, group,
    mask, variant_a, variant_b, n_heads, n_a, n_b, n_both, jaccard.
    """
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
                             "variant_b": vb, "n_heads": int(len(sub)), "n_a": int(x.sum()),
                             "n_b": int(y.sum()), "n_both": int((x & y).sum()),
                             "jaccard": None if np.isnan(j) else j})
    cols = ["annotation", "group", "mask", "variant_a", "variant_b", "n_heads", "n_a", "n_b",
            "n_both", "jaccard"]
    out = pd.DataFrame(rows, columns=cols)
    out["jaccard"] = out["jaccard"].astype("float64")
    return out


def run_compare_variants(head_paths, variants, out_path) -> None:
    import logging

    from .io import read_table, write_table

    log = logging.getLogger("seqxai.variant_comparison")
    table = compare_variants({v: read_table(p) for v, p in zip(variants, head_paths)})
    write_table(out_path, table)
    for r in table.itertuples(index=False):
        log.info("%s [%s] %s: %s vs %s: %d / %d / %d heads, Jaccard %s", r.annotation, r.group,
                 r.mask, r.variant_a, r.variant_b, r.n_a, r.n_b, r.n_both, r.jaccard)
