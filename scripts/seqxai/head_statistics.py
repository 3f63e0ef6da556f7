"""Head-level statistics of Wenzel et al. (2024): do relevances concentrate on annotations?

Per annotation type (UniProt 1-based inclusive ranges turned into masks over residues):
- per protein and head, the point-biserial correlation r between the binary annotation
  mask and the signed relevance over the protein's residues,
      r = (M1 - M0) / s * sqrt(n1 n0 / n^2)
  (M1, M0 mean relevance inside/outside, s the population standard deviation), which is
  Pearson's r with a 0/1 variable; proteins without the annotation (or constant
  relevance) are left out for that type;
- across proteins, per head, a one-sided Wilcoxon signed-rank test of median r > 0;
- Benjamini-Hochberg over all layers x heads, separately per annotation type (and per
  target class when grouped);
- embedding level: the same Wilcoxon test on the embedding relevances;
- "positive relevance": per head, Wilcoxon (> 0) of the relevance summed over residues, BH;
- relevance rank accuracy: share of the top-K relevance positions that fall inside the
  annotation, K = the number of annotated residues.
Arrays: ``relevance[..., residue]`` with residues 0-based inside this module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests


def annotation_masks(annotations: pd.DataFrame, accession: str, length: int,
                     types: list[str]) -> dict[str, np.ndarray]:
    """mask[type][residue] (0-based) from the 1-based inclusive ranges of one protein."""
    masks = {t: np.zeros(length, dtype=bool) for t in types}
    for r in annotations[annotations["accession"] == accession].itertuples(index=False):
        if r.type in masks:
            masks[r.type][max(r.start - 1, 0) : min(r.end, length)] = True
    return masks


def point_biserial(mask: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """r[...] between mask[residue] and relevance[..., residue]; NaN where undefined."""
    relevance = np.asarray(relevance, dtype=np.float64)
    n = mask.size
    n1 = int(mask.sum())
    out_shape = relevance.shape[:-1]
    if n1 == 0 or n1 == n:
        return np.full(out_shape, np.nan)
    m1 = relevance[..., mask].mean(-1)
    m0 = relevance[..., ~mask].mean(-1)
    s = relevance.std(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (m1 - m0) / s * np.sqrt(n1 * (n - n1) / n**2)
    return np.where(s > 0, r, np.nan)


def rank_accuracy(mask: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Share of the top-K positions of relevance[..., residue] inside mask, K = mask.sum()."""
    k = int(mask.sum())
    if k == 0:
        return np.full(relevance.shape[:-1], np.nan)
    top = np.argsort(-relevance, axis=-1, kind="stable")[..., :k]
    return mask[top].mean(-1)


def wilcoxon_greater(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Wilcoxon signed-rank test of median > 0 along axis 0, ignoring NaN.

    values[protein, ...] -> (n[...], p[...]); p is NaN with fewer than 2 non-zero values.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    p = np.full(flat.shape[1], np.nan)
    n = np.zeros(flat.shape[1], dtype=np.int64)
    for c in range(flat.shape[1]):
        x = flat[:, c]
        x = x[np.isfinite(x)]
        n[c] = len(x)
        if np.count_nonzero(x) >= 2:
            p[c] = wilcoxon(x, alternative="greater", zero_method="wilcox").pvalue
    return n.reshape(values.shape[1:]), p.reshape(values.shape[1:])


def bh(p: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg adjusted p and rejections over all finite entries of p."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    rej = np.zeros(p.shape, dtype=bool)
    ok = np.isfinite(p)
    if ok.any():
        r, qq, _, _ = multipletests(p[ok], alpha=alpha, method="fdr_bh")
        q[ok], rej[ok] = qq, r
    return q, rej


def _stack(rows, n_layers, n_heads):
    """relevance[layer, head, residue] of one protein from head-table rows."""
    n = len(rows.iloc[0]["relevance"])
    out = np.zeros((n_layers, n_heads, n), dtype=np.float64)
    for r in rows.itertuples(index=False):
        out[r.layer, r.head] = r.relevance
    return out


def wenzel_statistics(embedding: pd.DataFrame, heads: pd.DataFrame, annotations: pd.DataFrame,
                      types: list[str], alpha: float = 0.05, per_target: bool = False
                      ) -> dict[str, pd.DataFrame]:
    """All per-head and embedding-level tests for one task's attributions.

    ``embedding``: accession, target, relevance (list over residues); ``heads``: accession,
    target, layer, head, relevance. Groups: "all" targets, plus one group per target
    label when ``per_target`` (EC classes). Returns tables ``heads``, ``embedding``,
    ``positive_relevance`` and ``per_protein`` (r and rank accuracy per protein).
    """
    n_layers = int(heads["layer"].max()) + 1 if len(heads) else 0
    n_heads = int(heads["head"].max()) + 1 if len(heads) else 0
    by_key = dict(tuple(heads.groupby(["accession", "target"], sort=False))) if len(heads) else {}
    per_protein = []
    r_heads, r_emb, rel_sum, tgt = {t: [] for t in types}, {t: [] for t in types}, [], []
    for e in embedding.itertuples(index=False):
        rel_e = np.asarray(e.relevance, dtype=np.float64)
        masks = annotation_masks(annotations, e.accession, len(rel_e), types)
        hrel = _stack(by_key[(e.accession, e.target)], n_layers, n_heads) if by_key else None
        tgt.append(e.target)
        if hrel is not None:
            rel_sum.append(hrel.sum(-1))
        for t in types:
            r_e = float(point_biserial(masks[t], rel_e))
            r_emb[t].append(r_e)
            r_heads[t].append(point_biserial(masks[t], hrel) if hrel is not None else None)
            if masks[t].any():
                per_protein.append({"accession": e.accession, "target": e.target, "annotation": t,
                                    "n_annotated": int(masks[t].sum()), "r_embedding": r_e,
                                    "rank_accuracy_embedding": float(rank_accuracy(masks[t], rel_e)),
                                    "random_rank_accuracy": float(masks[t].mean())})
    tgt = np.array(tgt, dtype=object)
    groups = [("all", np.ones(len(tgt), dtype=bool))]
    if per_target:
        groups += [(str(g), tgt == g) for g in sorted(set(tgt))]
    head_rows, emb_rows, pos_rows = [], [], []
    for gname, sel in groups:
        for t in types:
            re = np.array(r_emb[t])[sel]
            n, p = wilcoxon_greater(re[:, None])
            emb_rows.append({"annotation": t, "group": gname, "n_proteins": int(n[0]),
                             "median_r": float(np.nanmedian(re)) if np.isfinite(re).any() else np.nan,
                             "p": float(p[0])})
            if n_layers:
                rh = np.stack([x for x, s in zip(r_heads[t], sel) if s])
                n, p = wilcoxon_greater(rh)
                q, rej = bh(p, alpha)
                with np.errstate(all="ignore"):
                    med = np.nanmedian(rh, axis=0) if np.isfinite(rh).any() else np.full(p.shape, np.nan)
                for l in range(n_layers):
                    for h in range(n_heads):
                        head_rows.append({"annotation": t, "group": gname, "layer": l, "head": h,
                                          "n_proteins": int(n[l, h]), "median_r": float(med[l, h]),
                                          "p": float(p[l, h]), "p_bh": float(q[l, h]),
                                          "significant": bool(rej[l, h])})
        if n_layers:
            n, p = wilcoxon_greater(np.stack(rel_sum)[sel])
            q, rej = bh(p, alpha)
            for l in range(n_layers):
                for h in range(n_heads):
                    pos_rows.append({"group": gname, "layer": l, "head": h, "n_proteins": int(n[l, h]),
                                     "p": float(p[l, h]), "p_bh": float(q[l, h]),
                                     "significant": bool(rej[l, h])})
    emb_df = pd.DataFrame(emb_rows)
    emb_df["significant"] = emb_df["p"] < alpha
    return {"heads": pd.DataFrame(head_rows), "embedding": emb_df,
            "positive_relevance": pd.DataFrame(pos_rows), "per_protein": pd.DataFrame(per_protein)}


def run_head_statistics(embedding_path, heads_path, annotations_path, types, alpha, per_target,
                        output) -> None:
    """Read one task's attributions, run :func:`wenzel_statistics`, write its four tables."""
    import logging

    from .io import read_table, write_table

    log = logging.getLogger("seqxai.head_statistics")
    emb = read_table(embedding_path)
    heads = read_table(heads_path)
    res = wenzel_statistics(emb, heads, read_table(annotations_path, "residue_annotations"),
                            list(types), alpha, per_target)
    for key, path in (("heads", output.heads), ("embedding", output.embedding),
                      ("positive_relevance", output.positive), ("per_protein", output.per_protein)):
        write_table(path, res[key])
    for r in res["embedding"].itertuples():
        log.info("embedding level %s [%s]: n=%d median r=%.3f p=%.3g", r.annotation, r.group,
                 r.n_proteins, r.median_r, r.p)
