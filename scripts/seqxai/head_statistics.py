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
- overlay: heads significant for the annotation AND in the positive-relevance test
  (column ``significant_overlay``);
- relevance rank accuracy: share of the top-K relevance positions that fall inside the
  annotation, K = the number of annotated residues, per protein (and head), averaged over
  the proteins carrying the annotation; its chance level is K / n.
Arrays: ``relevance[..., residue]`` with residues 0-based inside this module. With
``keep_special_tokens`` the start and end tokens are added at both ends with mask 0 and
their own relevance (0 at the embedding), as the original code did; by default they are
left out. Every table lists layers and heads in numeric order.
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
    Vectorised: columns that share a pattern of finite entries (usually all of them, as a
    protein without an annotation is NaN for every head) and hold no zeros and no tied
    |values| go to scipy in one call. scipy picks its method (exact, permutation,
    asymptotic) once per call from all columns together, so columns with zeros or ties
    are tested one by one to get the same p as a test of that column alone.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    finite = np.isfinite(flat)
    n = finite.sum(0)
    p = np.full(flat.shape[1], np.nan)
    filled = np.where(finite, flat, 0.0)
    testable = (filled != 0).sum(0) >= 2
    # ties among |values| (NaN sorts last, so NaN never equals its neighbour)
    srt = np.sort(np.where(finite, np.abs(flat), np.nan), axis=0)
    clean = ~((filled == 0) & finite).any(0) & ~(np.diff(srt, axis=0) == 0).any(0)
    patterns, which = np.unique(finite.T, axis=0, return_inverse=True)
    which = which.ravel()
    for k, pattern in enumerate(patterns):
        cols = np.flatnonzero((which == k) & testable & clean)
        if len(cols):
            p[cols] = wilcoxon(flat[np.ix_(pattern, cols)], alternative="greater",
                               zero_method="wilcox", axis=0).pvalue
    for c in np.flatnonzero(testable & ~clean):
        p[c] = wilcoxon(flat[finite[:, c], c], alternative="greater", zero_method="wilcox").pvalue
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


def _stack(rows: pd.DataFrame, n_layers: int, n_heads: int, keep_special_tokens: bool) -> np.ndarray:
    """relevance[layer, head, position] of one protein from its head-table rows."""
    rel = _with_special(rows, keep_special_tokens)
    out = np.zeros((n_layers, n_heads, rel.shape[-1]), dtype=np.float64)
    out[rows["layer"].to_numpy(int), rows["head"].to_numpy(int)] = rel
    return out


def _with_special(rows: pd.DataFrame, keep_special_tokens: bool) -> np.ndarray:
    """relevance[row, position]; with the start/end token values at both ends when kept."""
    rel = np.stack([np.asarray(x, dtype=np.float64) for x in rows["relevance"]])
    if not keep_special_tokens:
        return rel
    missing = {"relevance_start", "relevance_end"} - set(rows.columns)
    if missing:
        raise ValueError(f"keep_special_tokens needs columns {sorted(missing)} in the attribution "
                         "tables; rerun the attribution rules")
    return np.concatenate([rows["relevance_start"].to_numpy(float)[:, None], rel,
                           rows["relevance_end"].to_numpy(float)[:, None]], axis=1)


def _head_grid(n_layers: int, n_heads: int) -> dict[str, np.ndarray]:
    """layer and head of every entry of a [layer, head] array raveled: layers in numeric order."""
    layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    return {"layer": layer.ravel(), "head": head.ravel()}


def _nanmean0(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN, NaN (without a warning) where every entry is NaN."""
    ok = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x, 0.0).sum(0) / ok.sum(0)


def wenzel_statistics(embedding: pd.DataFrame, heads: pd.DataFrame, annotations: pd.DataFrame,
                      types: list[str], alpha: float = 0.05, per_target: bool = False,
                      keep_special_tokens: bool = False) -> dict[str, pd.DataFrame]:
    """All per-head and embedding-level tests for one task's attributions.

    ``embedding``: accession, target, relevance (list over residues); ``heads``: accession,
    target, layer, head, relevance (plus relevance_start/relevance_end when
    ``keep_special_tokens``). Groups: "all" targets, plus one group per target label when
    ``per_target`` (EC classes). Returns tables ``heads`` (with rank accuracy and
    ``significant_overlay``), ``embedding``, ``positive_relevance`` and ``per_protein``.
    """
    n_layers = int(heads["layer"].max()) + 1 if len(heads) else 0
    n_heads = int(heads["head"].max()) + 1 if len(heads) else 0
    by_key = dict(tuple(heads.groupby(["accession", "target"], sort=False))) if len(heads) else {}
    per_protein = []
    r_heads = {t: [] for t in types}
    acc_heads = {t: [] for t in types}
    r_emb, acc_emb, chance = ({t: [] for t in types} for _ in range(3))
    rel_sum, tgt = [], []
    nan_grid = np.full((n_layers, n_heads), np.nan)
    ann_of = dict(tuple(annotations.groupby("accession", sort=False)))  # one scan, not one per protein
    no_ann = annotations.iloc[:0]
    for k, e in enumerate(embedding.itertuples(index=False)):
        rel_e = _with_special(embedding.iloc[[k]], keep_special_tokens)[0]
        n_res = len(e.relevance)
        masks = annotation_masks(ann_of.get(e.accession, no_ann), e.accession, n_res, types)
        if keep_special_tokens:
            masks = {t: np.concatenate([[False], m, [False]]) for t, m in masks.items()}
        hrel = (_stack(by_key[(e.accession, e.target)], n_layers, n_heads, keep_special_tokens)
                if by_key else None)
        tgt.append(e.target)
        if hrel is not None:
            rel_sum.append(hrel.sum(-1))
        for t in types:
            m = masks[t]
            r_e = float(point_biserial(m, rel_e))
            ra_e = float(rank_accuracy(m, rel_e))
            r_emb[t].append(r_e)
            acc_emb[t].append(ra_e)
            chance[t].append(float(m.mean()) if m.any() else np.nan)
            if hrel is not None:
                r_heads[t].append(point_biserial(m, hrel))
                acc_heads[t].append(rank_accuracy(m, hrel) if m.any() else nan_grid)
            if m.any():
                per_protein.append({"accession": e.accession, "target": e.target, "annotation": t,
                                    "n_annotated": int(m.sum()), "r_embedding": r_e,
                                    "rank_accuracy_embedding": ra_e,
                                    "random_rank_accuracy": float(m.mean())})
    tgt = np.array(tgt, dtype=object)
    groups = [("all", np.ones(len(tgt), dtype=bool))]
    if per_target:
        groups += [(str(g), tgt == g) for g in sorted(set(tgt))]
    grid = _head_grid(n_layers, n_heads)
    head_tabs, emb_rows, pos_tabs = [], [], []
    for gname, sel in groups:
        pos_sig = np.zeros(n_layers * n_heads, dtype=bool)
        if n_layers:
            n, p = wilcoxon_greater(np.stack(rel_sum)[sel])
            q, rej = bh(p, alpha)
            pos_sig = rej.ravel()
            pos_tabs.append(pd.DataFrame({"group": gname, **grid, "n_proteins": n.ravel(),
                                          "p": p.ravel(), "p_bh": q.ravel(), "significant": pos_sig}))
        for t in types:
            re = np.array(r_emb[t])[sel]
            n, p = wilcoxon_greater(re[:, None])
            emb_rows.append({"annotation": t, "group": gname, "n_proteins": int(n[0]),
                             "median_r": float(np.nanmedian(re)) if np.isfinite(re).any() else np.nan,
                             "p": float(p[0]),
                             "rank_accuracy": float(_nanmean0(np.array(acc_emb[t])[sel])),
                             "random_rank_accuracy": float(_nanmean0(np.array(chance[t])[sel]))})
            if n_layers:
                rh = np.stack(r_heads[t])[sel]
                n, p = wilcoxon_greater(rh)
                q, rej = bh(p, alpha)
                with np.errstate(all="ignore"):
                    med = np.nanmedian(rh, axis=0) if np.isfinite(rh).any() else np.full(p.shape, np.nan)
                head_tabs.append(pd.DataFrame({
                    "annotation": t, "group": gname, **grid, "n_proteins": n.ravel(),
                    "median_r": med.ravel(), "p": p.ravel(), "p_bh": q.ravel(),
                    "significant": rej.ravel(), "significant_overlay": rej.ravel() & pos_sig,
                    "rank_accuracy": _nanmean0(np.stack(acc_heads[t])[sel]).ravel(),
                    "random_rank_accuracy": float(_nanmean0(np.array(chance[t])[sel]))}))
    emb_df = pd.DataFrame(emb_rows, columns=["annotation", "group", "n_proteins", "median_r", "p",
                                             "rank_accuracy", "random_rank_accuracy"])
    emb_df["significant"] = emb_df["p"] < alpha
    head_cols = ["annotation", "group", "layer", "head", "n_proteins", "median_r", "p", "p_bh",
                 "significant", "significant_overlay", "rank_accuracy", "random_rank_accuracy"]
    pos_cols = ["group", "layer", "head", "n_proteins", "p", "p_bh", "significant"]
    return {"heads": pd.concat(head_tabs, ignore_index=True) if head_tabs
            else pd.DataFrame(columns=head_cols),
            "embedding": emb_df,
            "positive_relevance": pd.concat(pos_tabs, ignore_index=True) if pos_tabs
            else pd.DataFrame(columns=pos_cols),
            "per_protein": pd.DataFrame(per_protein)}


def run_head_statistics(embedding_path, heads_path, annotations_path, types, alpha, per_target,
                        output, keep_special_tokens: bool = False) -> None:
    """Read one task's attributions, run :func:`wenzel_statistics`, write its four tables."""
    import logging

    from .io import DataError, read_table, write_table

    log = logging.getLogger("seqxai.head_statistics")
    emb = read_table(embedding_path)
    heads = read_table(heads_path)
    for path, df in ((embedding_path, emb), (heads_path, heads)):
        missing = {"relevance_start", "relevance_end"} - set(df.columns)
        if keep_special_tokens and missing:
            raise DataError(f"{path}: no field(s) {sorted(missing)}, needed by "
                            "analysis.keep_special_tokens; rerun attribute_proteins")
    res = wenzel_statistics(emb, heads, read_table(annotations_path, "residue_annotations"),
                            list(types), alpha, per_target, keep_special_tokens)
    for key, path in (("heads", output.heads), ("embedding", output.embedding),
                      ("positive_relevance", output.positive), ("per_protein", output.per_protein)):
        write_table(path, res[key])
    log.info("special tokens %s", "kept (mask 0)" if keep_special_tokens else "left out")
    for r in res["embedding"].itertuples():
        log.info("embedding level %s [%s]: n=%d median r=%.3f p=%.3g rank accuracy %.3f "
                 "(chance %.3f)", r.annotation, r.group, r.n_proteins, r.median_r, r.p,
                 r.rank_accuracy, r.random_rank_accuracy)
    h = res["heads"]
    if len(h):
        for (ann, group), sub in h.groupby(["annotation", "group"], sort=False):
            log.info("heads %s [%s]: %d significant, %d also in the positive-relevance test; "
                     "best rank accuracy %.3f (chance %.3f)", ann, group, int(sub["significant"].sum()),
                     int(sub["significant_overlay"].sum()), float(sub["rank_accuracy"].max()),
                     float(sub["random_rank_accuracy"].iloc[0]))
