"""Per-protein summaries behind the head statistics: each protein's relevance rows, per-head
point-biserial r, rank accuracy and relevance sum, and its share of the composition null."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .annotation_scores import (
    annotation_masks,
    composition_permutations,
    point_biserial,
    point_biserial_masks,
    rank_accuracy,
)


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


def _arrow_relevance(rows, keep_special_tokens: bool) -> np.ndarray:
    """relevance[row, position] (float64) of head rows held as an Arrow table; the same values
    as :func:`_with_special` on the rows read through pandas."""
    import pyarrow as pa

    col = rows.column("relevance").combine_chunks()
    lengths = np.diff(col.offsets.to_numpy())
    if len(lengths) and col.null_count == 0 and (lengths == lengths[0]).all():
        rel = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        rel = rel.reshape(len(lengths), lengths[0])
    else:  # ragged or null lists: as the pandas path does (np.stack names the mismatch)
        rel = np.stack([np.asarray(x, dtype=np.float64)
                        for x in pa.chunked_array([col]).to_numpy(zero_copy_only=False)])
    if not keep_special_tokens:
        return rel
    ends = [rows.column(c).to_numpy().astype(float)[:, None]
            for c in ("relevance_start", "relevance_end")]
    return np.concatenate([ends[0], rel, ends[1]], axis=1)


class _PerProtein:
    """Per-protein summaries of one task's attributions, built one protein at a time.

    Head rows are added per protein and target (:meth:`add_heads`): only their per-head
    point-biserial r[type][layer, head], rank accuracy[type][layer, head] and relevance
    sum[layer, head] are kept, so memory grows with proteins x heads, not with residues.
    :meth:`collect` adds the embedding-level values and returns everything in the order of
    the embedding table.
    """

    def __init__(self, embedding: pd.DataFrame, annotations: pd.DataFrame, types: list[str],
                 keep_special_tokens: bool, n_layers: int, n_heads: int, source: str,
                 sequences: dict | None = None, n_permutations: int = 0, seed: int = 0):
        self.embedding, self.types, self.keep = embedding, types, keep_special_tokens
        # composition null: per (target, type) sums over proteins of the permuted r [k, ...],
        # of the observed r and the number of proteins with a finite r
        self.sequences, self.n_perm, self.seed = sequences, int(n_permutations), int(seed)
        self.null_heads: dict = {}
        self.null_emb: dict = {}
        self.n_layers, self.n_heads, self.source = n_layers, n_heads, source
        self.row_of: dict = {}
        for k, key in enumerate(zip(embedding["accession"], embedding["target"])):
            self.row_of.setdefault(key, k)
        self.ann_of = dict(tuple(annotations.groupby("accession", sort=False)))  # one scan
        self.no_ann = annotations.iloc[:0]
        self.nan_grid = np.full((n_layers, n_heads), np.nan)
        self.heads: dict = {}  # (accession, target) -> (rel_sum, {type: r}, {type: rank accuracy})

    def classes(self, k: int) -> np.ndarray | None:
        """Amino acid per position of embedding row ``k`` ("^"/"$" for kept special tokens), or
        None without the composition null."""
        if not self.n_perm or self.sequences is None:
            return None
        from .io import DataError

        acc = self.embedding["accession"].iat[k]
        n_res = len(self.embedding["relevance"].iat[k])
        seq = self.sequences.get(acc)
        if seq is None or len(seq) < n_res:  # longer: truncated to the model's length, a prefix
            raise DataError(f"{self.source}: accession {acc!r}: the proteins table has "
                            + ("no such protein" if seq is None else f"a sequence of {len(seq)} residues")
                            + f" but its relevance covers {n_res} residues; the composition null "
                            "needs the sequences the attributions were computed on")
        aa = np.frombuffer(seq[:n_res].upper().encode("ascii"), dtype="S1")
        return np.concatenate([[b"^"], aa, [b"$"]]) if self.keep else aa

    def _accumulate(self, store: dict, key, k: int, t_index: int, mask: np.ndarray,
                    classes: np.ndarray, relevance: np.ndarray, observed: np.ndarray) -> None:
        """Add one protein's observed and composition-permuted r of one type to ``store[key]``;
        the permutations are seeded by (seed, embedding row, type) so that head and embedding
        level see the same masks whatever the order proteins arrive in."""
        ok = np.isfinite(observed)
        if not ok.any():
            return
        rng = np.random.default_rng([self.seed, k, t_index])
        perm = point_biserial_masks(composition_permutations(mask, classes, self.n_perm, rng), relevance)
        acc = store.get(key)
        if acc is None:
            acc = store[key] = [np.zeros(perm.shape), np.zeros(observed.shape), np.zeros(observed.shape)]
        acc[0] += np.where(ok, perm, 0.0)
        acc[1] += np.where(ok, observed, 0.0)
        acc[2] += ok

    def masks(self, k: int) -> dict[str, np.ndarray]:
        """mask[type][position] of embedding row ``k`` (with the special tokens when kept)."""
        acc = self.embedding["accession"].iat[k]
        n_res = len(self.embedding["relevance"].iat[k])
        masks = annotation_masks(self.ann_of.get(acc, self.no_ann), acc, n_res, self.types)
        if self.keep:
            masks = {t: np.concatenate([[False], m, [False]]) for t, m in masks.items()}
        return masks

    def add_heads(self, key, layer: np.ndarray, head: np.ndarray, relevance: np.ndarray) -> None:
        """Summarise one protein and target's head rows: relevance[row, position] of
        (layer[row], head[row]); heads without a row count as zero relevance."""
        k = self.row_of.get(key)
        if k is None:  # not in the embedding table: not tested (as the table-wide grouping did)
            return
        hrel = np.zeros((self.n_layers, self.n_heads, relevance.shape[-1]), dtype=np.float64)
        hrel[layer, head] = relevance
        masks = self.masks(k)
        r = {t: point_biserial(m, hrel) if 0 < m.sum() < m.size else self.nan_grid  # NaN: share one grid
             for t, m in masks.items()}
        self.heads[key] = (hrel.sum(-1), r,
                           {t: rank_accuracy(m, hrel) if m.any() else self.nan_grid
                            for t, m in masks.items()})
        classes = self.classes(k)
        if classes is not None:
            for i, (t, m) in enumerate(masks.items()):
                self._accumulate(self.null_heads, (key[1], t), k, i, m, classes, hrel, r[t])

    def collect(self) -> dict:
        """Embedding-level values of every protein and the head summaries, in embedding order."""
        from .io import DataError

        emb, types = self.embedding, self.types
        out = {"per_protein": [], "r_heads": {t: [] for t in types},
               "acc_heads": {t: [] for t in types}, "r_emb": {t: [] for t in types},
               "acc_emb": {t: [] for t in types}, "chance": {t: [] for t in types},
               "rel_sum": [], "target": []}
        for k, e in enumerate(emb.itertuples(index=False)):
            rel_e = _with_special(emb.iloc[[k]], self.keep)[0]
            masks = self.masks(k)
            heads = None
            if self.n_layers:
                heads = self.heads.get((e.accession, e.target))
                if heads is None:
                    raise DataError(f"{self.source}: no head rows for accession {e.accession!r} "
                                    f"target {e.target!r} of the embedding table")
                out["rel_sum"].append(heads[0])
            out["target"].append(e.target)
            classes = self.classes(k)
            for i, t in enumerate(types):
                m = masks[t]
                r_e = float(point_biserial(m, rel_e))
                if classes is not None:
                    self._accumulate(self.null_emb, (e.target, t), k, i, m, classes, rel_e,
                                     np.array(r_e))
                ra_e = float(rank_accuracy(m, rel_e))
                out["r_emb"][t].append(r_e)
                out["acc_emb"][t].append(ra_e)
                out["chance"][t].append(float(m.mean()) if m.any() else np.nan)
                if heads is not None:
                    out["r_heads"][t].append(heads[1][t])
                    out["acc_heads"][t].append(heads[2][t])
                if m.any():
                    out["per_protein"].append({
                        "accession": e.accession, "target": e.target, "annotation": t,
                        "n_annotated": int(m.sum()), "r_embedding": r_e,
                        "rank_accuracy_embedding": ra_e, "random_rank_accuracy": float(m.mean()),
                        # r[layer * n_heads + head], for the paired tests against the controls
                        "r_heads": (heads[1][t].ravel().copy() if heads is not None
                                    else np.zeros(0))})
        out["null"] = {"heads": self.null_heads, "embedding": self.null_emb, "n": self.n_perm}
        return out
