"""The fine-tuned model's relevance-annotation association against its controls, paired per protein.

A bare Wilcoxon test of r > 0 passes for randomly initialised classifiers (relevance follows
residue identity, and annotated residues are compositionally special). Here the question is
whether fine-tuning raised r above what the frozen and the shuffled encoder give on the same
proteins.

Input per variant: the ``per_protein`` table of seqxai.head_statistics, one row per protein,
target and annotation type the protein carries, with ``r_embedding`` and ``r_heads`` (the
point-biserial r of every head, raveled [layer, head] layer-major). For each control variant,
annotation type, group ("all" targets, or one target) and each head and the embedding level:

- pairs: the (accession, target) rows present in both variants with a finite r in both
  (a protein missing in one variant, or with constant relevance there, is left out);
- d = r_finetuned - r_control per pair; one-sided Wilcoxon signed-rank test of median d > 0
  (zero differences dropped, scipy's ``zero_method="wilcox"``); with fewer than two non-zero
  differences the exact p of that many signs: 1 when none is non-zero, 0.5 for one positive,
  1 for one negative; NaN without pairs;
- Benjamini-Hochberg over the heads of one (control, annotation, group); the embedding level
  is a single test (``p_bh`` = ``p``);
- effect size ``median_difference`` = median of d over the pairs, beside the medians of r of
  both variants over the same pairs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .significance import bh, wilcoxon_greater

FINETUNED = "finetuned"
KEY = ["accession", "target", "annotation"]
COLUMNS = ["control", "annotation", "group", "level", "layer", "head", "n_proteins",
           "n_only_finetuned", "n_only_control", "median_r_finetuned", "median_r_control",
           "median_difference", "p", "p_bh", "significant"]


def paired_greater(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Wilcoxon signed-rank test of median d > 0 along axis 0, ignoring NaN:
    d[pair, ...] -> (n pairs[...], p[...]), with the exact sign p where fewer than two
    differences are non-zero (module docstring)."""
    d = np.asarray(d, dtype=np.float64)
    n, p = wilcoxon_greater(d)
    finite = np.isfinite(d)
    nonzero = (finite & (d != 0)).sum(0)
    positive = (finite & (d > 0)).sum(0)
    few = (n > 0) & (nonzero < 2)
    p = np.where(few, np.where((nonzero == 1) & (positive == 1), 0.5, 1.0), p)
    return n, p


def _nanmedian0(x: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN; NaN (without a warning) where every entry is NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return np.full(x.shape[1:], np.nan)
    ok = np.isfinite(x).any(0)
    out = np.full(x.shape[1:], np.nan)
    if ok.any():
        out[ok] = np.nanmedian(x[:, ok], axis=0)
    return out


def _group_rows(table: pd.DataFrame, group: str) -> pd.DataFrame:
    return table if group == "all" else table[table["target"].astype(str) == group]


def paired_r_tests(per_protein: dict[str, pd.DataFrame], grid: tuple[int, int],
                   groups=("all",), alpha: float = 0.05) -> pd.DataFrame:
    """Paired tests of the fine-tuned variant's r against every other variant of ``per_protein``
    (variant -> per_protein table; ``finetuned`` must be one), per annotation type, group, head
    and the embedding level. ``grid``: (layers, heads per layer) of ``r_heads``, (0, 0)
    without head attributions; ``groups``: "all" and/or target labels. Columns: :data:`COLUMNS`; ``layer``
    and ``head`` are null at the embedding level. No controls: an empty table."""
    if FINETUNED not in per_protein:
        raise ValueError(f"no '{FINETUNED}' variant among {sorted(per_protein)}")
    for v, tab in per_protein.items():
        missing = [c for c in KEY + ["r_embedding", "r_heads"] if c not in tab.columns]
        if missing:
            raise ValueError(f"per-protein table of variant '{v}' lacks column(s) {missing}; "
                             "rerun head_statistics")
        dup = tab.duplicated(KEY)
        if dup.any():
            raise ValueError(f"per-protein table of variant '{v}' has more than one row for "
                             f"{dict(tab.loc[dup, KEY].iloc[0])}")
    ft = per_protein[FINETUNED]
    size = int(grid[0]) * int(grid[1])
    tabs = []
    for control in (v for v in per_protein if v != FINETUNED):
        ctl = per_protein[control]
        for annotation in sorted(set(ft["annotation"]) | set(ctl["annotation"])):
            a, b = ft[ft["annotation"] == annotation], ctl[ctl["annotation"] == annotation]
            for group in groups:
                ga, gb = _group_rows(a, group), _group_rows(b, group)
                m = ga.merge(gb, on=KEY, how="outer", suffixes=("_ft", "_ctl"), indicator=True)
                only = m["_merge"].value_counts()
                both = m[m["_merge"] == "both"]
                common = {"control": control, "annotation": annotation, "group": group,
                          "n_only_finetuned": int(only.get("left_only", 0)),
                          "n_only_control": int(only.get("right_only", 0))}
                tabs.append(_tests(both["r_embedding_ft"].to_numpy(np.float64)[:, None],
                                   both["r_embedding_ctl"].to_numpy(np.float64)[:, None],
                                   {**common, "level": "embedding"}, None, alpha))
                if size:
                    tabs.append(_tests(_stack(both, "r_heads_ft", FINETUNED, size),
                                       _stack(both, "r_heads_ctl", control, size),
                                       {**common, "level": "head"}, grid[1], alpha))
    if not tabs:
        return _typed(pd.DataFrame(columns=COLUMNS))
    return _typed(pd.concat(tabs, ignore_index=True)[COLUMNS])


def _stack(pairs: pd.DataFrame, column: str, variant: str, size: int) -> np.ndarray:
    """r[pair, layer * n_heads + head] from a column of per-protein lists of ``size`` heads."""
    arrays = [np.asarray(x, dtype=np.float64) for x in pairs[column]]
    for x, (acc, tgt, ann) in zip(arrays, pairs[KEY].itertuples(index=False)):
        if len(x) != size:
            raise ValueError(f"per-protein table of variant '{variant}': accession {acc!r} target "
                             f"{tgt!r} annotation {ann!r} has r for {len(x)} heads, the fine-tuned "
                             f"head statistics {size}")
    return np.stack(arrays) if arrays else np.zeros((0, size))


def _tests(r_ft: np.ndarray, r_ctl: np.ndarray, common: dict, n_heads: int | None,
           alpha: float) -> pd.DataFrame:
    """Rows of one (control, annotation, group, level): r_*[pair, column]."""
    ok = np.isfinite(r_ft) & np.isfinite(r_ctl)
    d = np.where(ok, r_ft - r_ctl, np.nan)
    n, p = paired_greater(d)
    q, rej = bh(p, alpha)
    cols = d.shape[1]
    if n_heads is None:
        layer = head = pd.array([pd.NA] * cols, dtype="Int64")
    else:
        layer = pd.array(np.arange(cols) // n_heads, dtype="Int64")
        head = pd.array(np.arange(cols) % n_heads, dtype="Int64")
    return pd.DataFrame({**common, "layer": layer, "head": head, "n_proteins": n,
                         "median_r_finetuned": _nanmedian0(np.where(ok, r_ft, np.nan)),
                         "median_r_control": _nanmedian0(np.where(ok, r_ctl, np.nan)),
                         "median_difference": _nanmedian0(d), "p": p, "p_bh": q,
                         "significant": rej})


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("layer", "head"):
        df[c] = df[c].astype("Int64")
    for c in ("n_proteins", "n_only_finetuned", "n_only_control"):
        df[c] = df[c].astype("int64")
    for c in ("median_r_finetuned", "median_r_control", "median_difference", "p", "p_bh"):
        df[c] = df[c].astype("float64")
    df["significant"] = df["significant"].astype(bool)
    for c in ("control", "annotation", "group", "level"):
        df[c] = df[c].astype(object)
    return df


def groups_of(head_statistics: pd.DataFrame) -> list[str]:
    """The groups of a head-statistics table: "all" first, then the targets in sorted order."""
    found = {str(g) for g in head_statistics["group"]} if len(head_statistics) else set()
    return ["all"] + sorted(found - {"all"})


def run_paired_r(per_protein_paths, variants, head_statistics_path, out_path,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Read the per-protein tables of ``variants`` and the fine-tuned head statistics (for the
    groups and the head grid), write :func:`paired_r_tests` to ``out_path``."""
    import logging

    from .io import read_table, write_table

    log = logging.getLogger("seqxai.paired_r")
    tables = {v: read_table(p) for v, p in zip(variants, per_protein_paths)}
    heads = read_table(head_statistics_path)
    grid = (int(heads["layer"].max()) + 1, int(heads["head"].max()) + 1) if len(heads) else (0, 0)
    table = paired_r_tests(tables, grid, groups_of(heads), alpha)
    write_table(out_path, table)
    for (control, ann, group), sub in table.groupby(["control", "annotation", "group"], sort=False):
        emb = sub[sub["level"] == "embedding"].iloc[0]
        hd = sub[sub["level"] == "head"]
        log.info("%s [%s] finetuned vs %s: embedding level n=%d median difference %.3f p=%.3g; "
                 "%d of %d heads with q < %g", ann, group, control, emb.n_proteins,
                 emb.median_difference, emb.p, int(hd["significant"].sum()), len(hd), alpha)
    return table
