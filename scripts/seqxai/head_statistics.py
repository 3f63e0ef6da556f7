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
- "positive relevance": per head, Wilcoxon (> 0) of the relevance summed over the positions
  (the special tokens included when kept), BH over heads; as in the original code, once per
  annotation type on only the proteins carrying that annotation (and per target class when
  grouped), plus once over all proteins of the group (``annotation`` = "all_proteins");
- overlay: heads significant for the annotation AND in the positive-relevance test on the
  proteins carrying that annotation (column ``significant_overlay``);
- relevance rank accuracy: share of the top-K relevance positions that fall inside the
  annotation, K = the number of annotated residues, per protein (and head), averaged over
  the proteins carrying the annotation; its chance level is K / n;
- per protein table (``per_protein``): one row per protein, target and annotation type it
  carries, with r at the embedding level (``r_embedding``) and per head (``r_heads``, a list
  over [layer, head] raveled layer-major, NaN where undefined) for the paired tests of the
  fine-tuned model against its controls (seqxai.paired_r);
- composition null (with the protein sequences): annotated residues differ in amino-acid
  composition (transmembrane helices are rich in L, I, V, F; catalytic sites in C, H, S), and
  relevance varies with residue identity even in an untrained model, so the Wilcoxon test
  above can pass without the model knowing the annotation. Per protein, the annotation mask
  is permuted only among residues of the same amino acid (K seeded permutations; counts per
  amino acid inside the mask are kept), r is recomputed, and the statistic mean_r (the mean
  of r over proteins) is compared with its K permuted values: ``p_composition`` = (1 +
  #{permuted mean_r >= observed}) / (1 + K), per head (BH over heads) and at the embedding
  level. ``null_mean_r``/``null_sd_r`` describe the permuted values.
Arrays: ``relevance[..., residue]`` with residues 0-based inside this module. With
``keep_special_tokens`` the start and end tokens are added at both ends with mask 0 and
their own relevance (0 at the embedding), as the original code did; by default they are
left out. Every table lists layers and heads in numeric order.

Memory: the head table (about 26 GB at paper size) is streamed from its Parquet file one
protein and target at a time (:func:`wenzel_statistics_streaming`, rows in the gather order of
seqxai.attribution_tables); of each protein only the per-head r, rank accuracy and relevance
sum [layer, head] are kept for the tests across proteins. :func:`wenzel_statistics` does the
same on a head table already in memory, with identical results.
"""
from __future__ import annotations

import warnings

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


def point_biserial_masks(masks: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """r[k, ...] of every mask masks[k, residue] (all with the same number of True entries)
    against relevance[..., residue]: :func:`point_biserial` for many masks in one product."""
    masks = np.asarray(masks, dtype=bool)
    relevance = np.asarray(relevance, dtype=np.float64)
    n, n1 = masks.shape[1], int(masks[0].sum()) if len(masks) else 0
    out_shape = (len(masks),) + relevance.shape[:-1]
    if n1 == 0 or n1 == n:
        return np.full(out_shape, np.nan)
    flat = relevance.reshape(-1, n)
    inside = masks.astype(np.float64) @ flat.T  # [k, ...] sums inside each mask
    m1 = inside / n1
    m0 = (flat.sum(-1)[None, :] - inside) / (n - n1)
    s = flat.std(-1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(s > 0, (m1 - m0) / s * np.sqrt(n1 * (n - n1) / n**2), np.nan)
    return r.reshape(out_shape)


def composition_permutations(mask: np.ndarray, classes: np.ndarray, n: int,
                             rng: np.random.Generator) -> np.ndarray:
    """masks[k, residue]: ``n`` permutations of ``mask`` that move its entries only among
    residues of the same class (amino acid); every mask keeps the per-class counts."""
    out = np.broadcast_to(np.asarray(mask, dtype=bool), (n, len(mask))).copy()
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        if 0 < out[0, idx].sum() < len(idx):
            out[:, idx] = rng.permuted(out[:, idx], axis=1)
    return out


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
    flat = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))  # no rows: n 0, p NaN
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
                      keep_special_tokens: bool = False, sequences: dict | None = None,
                      n_permutations: int = 0, seed: int = 0) -> dict[str, pd.DataFrame]:
    """All per-head and embedding-level tests for one task's attributions.

    ``embedding``: accession, target, relevance (list over residues); ``heads``: accession,
    target, layer, head, relevance (plus relevance_start/relevance_end when
    ``keep_special_tokens``), rows in any order. Groups: "all" targets, plus one group per
    target label when ``per_target`` (EC classes). Returns tables ``heads`` (with rank
    accuracy and ``significant_overlay``), ``embedding``, ``positive_relevance`` and
    ``per_protein``. :func:`wenzel_statistics_streaming` gives the same from a head table
    file too large for memory. With ``sequences`` ({accession: sequence}) and
    ``n_permutations`` > 0 the tables get the composition-null columns (module docstring).
    """
    n_layers = int(heads["layer"].max()) + 1 if len(heads) else 0
    n_heads = int(heads["head"].max()) + 1 if len(heads) else 0
    summaries = _PerProtein(embedding, annotations, types, keep_special_tokens, n_layers, n_heads,
                            "head table", sequences, n_permutations, seed)
    if len(heads):
        for key, rows in heads.groupby(["accession", "target"], sort=False):
            summaries.add_heads(key, rows["layer"].to_numpy(int), rows["head"].to_numpy(int),
                                _with_special(rows, keep_special_tokens))
    return _tests(summaries.collect(), types, alpha, per_target, n_layers, n_heads)


#: head rows per Arrow batch when streaming (480 heads x 461 residues: about 4 proteins)
HEAD_BATCH_ROWS = 2048


def iter_head_blocks(path, columns: list[str], batch_rows: int = HEAD_BATCH_ROWS):
    """Yield ((accession, target), Arrow table of its rows) for each protein and target of the
    head table at ``path``, in file order, holding one batch plus one protein's rows.

    The rows of a protein and target must be contiguous (the gather order); a key that comes
    back after another is a DataError naming the file and key.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .io import DataError, open_parquet

    done: set = set()
    current, pending, row0 = None, [], 0
    for batch in open_parquet(path).iter_batches(batch_size=batch_rows, columns=columns):
        n = batch.num_rows
        if not n:
            continue
        acc, tgt = batch.column("accession"), batch.column("target")
        changed = pc.or_(pc.not_equal(acc[1:], acc[:-1]), pc.not_equal(tgt[1:], tgt[:-1]))
        starts = [0] + (np.flatnonzero(changed.fill_null(True).to_numpy(zero_copy_only=False)) + 1).tolist()
        for s, e in zip(starts, starts[1:] + [n]):
            key = (acc[s].as_py(), tgt[s].as_py())
            if key != current:
                if current is not None:
                    yield current, pa.Table.from_batches(pending)
                    done.add(current)
                if key in done:
                    raise DataError(f"{path}: rows of accession {key[0]!r} target {key[1]!r} are not "
                                    f"contiguous (again at row {row0 + s}): the file is not in the "
                                    "gather order (gather_attributions writes each protein's rows "
                                    "together)")
                current, pending = key, []
            pending.append(batch.slice(s, e - s))
        row0 += n
    if current is not None:
        yield current, pa.Table.from_batches(pending)


def _grid_size(path, batch_rows: int) -> tuple[int, int]:
    """(n_layers, n_heads) = 1 + the largest layer and head of the head table (0, 0 if empty),
    streaming its two integer columns."""
    from .io import open_parquet

    n_layers = n_heads = 0
    for batch in open_parquet(path).iter_batches(batch_size=64 * batch_rows, columns=["layer", "head"]):
        if batch.num_rows:
            n_layers = max(n_layers, int(np.max(batch.column("layer").to_numpy())) + 1)
            n_heads = max(n_heads, int(np.max(batch.column("head").to_numpy())) + 1)
    return n_layers, n_heads


def wenzel_statistics_streaming(embedding: pd.DataFrame, heads_path, annotations: pd.DataFrame,
                                types: list[str], alpha: float = 0.05, per_target: bool = False,
                                keep_special_tokens: bool = False,
                                batch_rows: int = HEAD_BATCH_ROWS, sequences: dict | None = None,
                                n_permutations: int = 0, seed: int = 0) -> dict[str, pd.DataFrame]:
    """:func:`wenzel_statistics` with the head table read from the Parquet file ``heads_path``
    in batches of ``batch_rows`` rows: memory holds one protein's rows and the per-protein
    summaries, not the table. The rows must be in the gather order (each protein and target's
    rows contiguous, see seqxai.attribution_tables); the results are identical."""
    from .io import DataError, open_parquet

    names = open_parquet(heads_path).schema_arrow.names
    need = ["accession", "target", "layer", "head", "relevance"]
    if keep_special_tokens:
        need += ["relevance_start", "relevance_end"]
    missing = [c for c in need if c not in names]
    if missing:
        raise DataError(f"{heads_path}: head table without field(s) {missing}"
                        + ("; analysis.keep_special_tokens needs relevance_start/relevance_end: "
                           "rerun attribute_proteins" if keep_special_tokens else ""))
    n_layers, n_heads = _grid_size(heads_path, batch_rows)
    summaries = _PerProtein(embedding, annotations, types, keep_special_tokens, n_layers, n_heads,
                            str(heads_path), sequences, n_permutations, seed)
    if n_layers:
        for key, rows in iter_head_blocks(heads_path, need, batch_rows):
            summaries.add_heads(key, rows.column("layer").to_numpy().astype(int),
                                rows.column("head").to_numpy().astype(int),
                                _arrow_relevance(rows, keep_special_tokens))
    return _tests(summaries.collect(), types, alpha, per_target, n_layers, n_heads)


#: ``annotation`` of the positive-relevance rows over every protein of a group
ALL_PROTEINS = "all_proteins"


def composition_test(store: dict, annotation: str, group: str | None, n: int, shape: tuple) -> dict:
    """Permutation test of mean r against the composition null from the sums of
    :meth:`_PerProtein._accumulate` over the targets of ``group`` (None: every target):
    ``mean_r``, ``null_mean_r``, ``null_sd_r``, ``p_composition`` arrays of ``shape``
    (NaN where no protein has a finite r, the null was not computed, or no mask could move)."""
    keys = [key for key in store if key[1] == annotation and (group is None or str(key[0]) == group)]
    if not n or not keys:
        nan = np.full(shape, np.nan)
        return {"mean_r": nan, "null_mean_r": nan, "null_sd_r": nan, "p_composition": nan}
    perm, obs, cnt = (sum(store[key][i] for key in keys) for i in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, null = obs / cnt, perm / cnt[None]
        p = (1.0 + (null >= mean[None] - 1e-12).sum(0)) / (1.0 + n)
    # no protein's mask could move (every annotated residue the only one of its amino acid):
    # the null is the observation itself and the test has nothing to say
    p = np.where((cnt > 0) & (null.std(0) > 1e-12), p, np.nan)
    return {"mean_r": mean.reshape(shape), "null_mean_r": null.mean(0).reshape(shape),
            "null_sd_r": null.std(0).reshape(shape), "p_composition": p.reshape(shape)}


def _tests(v: dict, types: list[str], alpha: float, per_target: bool, n_layers: int,
           n_heads: int) -> dict[str, pd.DataFrame]:
    """The Wilcoxon and BH stage over the per-protein summaries of :meth:`_PerProtein.collect`."""
    per_protein, r_heads, acc_heads = v["per_protein"], v["r_heads"], v["acc_heads"]
    r_emb, acc_emb, chance, rel_sum, tgt = (v["r_emb"], v["acc_emb"], v["chance"], v["rel_sum"],
                                            v["target"])
    tgt = np.array(tgt, dtype=object)
    groups = [("all", np.ones(len(tgt), dtype=bool))]
    if per_target:
        groups += [(str(g), tgt == g) for g in sorted(set(tgt))]
    grid = _head_grid(n_layers, n_heads)
    head_tabs, emb_rows, pos_tabs = [], [], []
    rel_sum = np.stack(rel_sum) if n_layers else None
    carries = {t: np.isfinite(np.array(chance[t], dtype=np.float64)) for t in types}
    null = v.get("null") or {"heads": {}, "embedding": {}, "n": 0}

    def positive(annotation: str, gname: str, rows: np.ndarray) -> np.ndarray:
        """Wilcoxon (> 0) of the head sums over ``rows`` of the proteins, BH over heads; appends
        the table rows and returns the significant mask [layer * head]."""
        n, p = wilcoxon_greater(rel_sum[rows])
        q, rej = bh(p, alpha)
        pos_tabs.append(pd.DataFrame({"annotation": annotation, "group": gname, **grid,
                                      "n_proteins": n.ravel(), "p": p.ravel(), "p_bh": q.ravel(),
                                      "significant": rej.ravel()}))
        return rej.ravel()

    for gname, sel in groups:
        if n_layers:
            positive(ALL_PROTEINS, gname, sel)
        for t in types:
            comp_group = None if gname == "all" else gname
            ce = composition_test(null["embedding"], t, comp_group, null["n"], ())
            re = np.array(r_emb[t])[sel]
            n, p = wilcoxon_greater(re[:, None])
            emb_rows.append({"annotation": t, "group": gname, "n_proteins": int(n[0]),
                             "median_r": float(np.nanmedian(re)) if np.isfinite(re).any() else np.nan,
                             "p": float(p[0]),
                             "rank_accuracy": float(_nanmean0(np.array(acc_emb[t])[sel])),
                             "random_rank_accuracy": float(_nanmean0(np.array(chance[t])[sel])),
                             **{k: float(x) for k, x in ce.items()}})
            if n_layers:
                # the original's overlay: positive relevance on the proteins carrying t only
                pos_sig = positive(t, gname, sel & carries[t])
                rh = np.stack(r_heads[t])[sel]
                n, p = wilcoxon_greater(rh)
                q, rej = bh(p, alpha)
                ch = composition_test(null["heads"], t, comp_group, null["n"], p.shape)
                qc, rejc = bh(ch["p_composition"], alpha)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN heads: NaN median
                    med = np.nanmedian(rh, axis=0) if np.isfinite(rh).any() else np.full(p.shape, np.nan)
                head_tabs.append(pd.DataFrame({
                    "annotation": t, "group": gname, **grid, "n_proteins": n.ravel(),
                    "median_r": med.ravel(), "p": p.ravel(), "p_bh": q.ravel(),
                    "significant": rej.ravel(), "significant_overlay": rej.ravel() & pos_sig,
                    "rank_accuracy": _nanmean0(np.stack(acc_heads[t])[sel]).ravel(),
                    "random_rank_accuracy": float(_nanmean0(np.array(chance[t])[sel])),
                    **{k: x.ravel() for k, x in ch.items()}, "p_composition_bh": qc.ravel(),
                    "significant_composition": rejc.ravel()}))
    comp_cols = ["mean_r", "null_mean_r", "null_sd_r", "p_composition"]
    emb_df = pd.DataFrame(emb_rows, columns=["annotation", "group", "n_proteins", "median_r", "p",
                                             "rank_accuracy", "random_rank_accuracy", *comp_cols])
    emb_df["significant"] = emb_df["p"] < alpha
    head_cols = ["annotation", "group", "layer", "head", "n_proteins", "median_r", "p", "p_bh",
                 "significant", "significant_overlay", "rank_accuracy", "random_rank_accuracy",
                 *comp_cols, "p_composition_bh", "significant_composition"]
    pos_cols = ["annotation", "group", "layer", "head", "n_proteins", "p", "p_bh", "significant"]
    return {"heads": pd.concat(head_tabs, ignore_index=True) if head_tabs
            else pd.DataFrame(columns=head_cols),
            "embedding": emb_df,
            "positive_relevance": pd.concat(pos_tabs, ignore_index=True) if pos_tabs
            else pd.DataFrame(columns=pos_cols),
            "per_protein": pd.DataFrame(per_protein)}


def run_head_statistics(embedding_path, heads_path, annotations_path, types, alpha, per_target,
                        output, keep_special_tokens: bool = False,
                        batch_rows: int = HEAD_BATCH_ROWS, proteins_path=None,
                        composition_null: dict | None = None, seed: int = 0) -> None:
    """Read one task's embedding table, stream its head table through
    :func:`wenzel_statistics_streaming` and write the four result tables. ``proteins_path``
    (sequences) and ``composition_null`` ({"permutations": K}) add the composition null."""
    import logging

    from .io import DataError, read_table, write_table

    log = logging.getLogger("seqxai.head_statistics")
    emb = read_table(embedding_path)
    missing = {"relevance_start", "relevance_end"} - set(emb.columns)
    if keep_special_tokens and missing:
        raise DataError(f"{embedding_path}: no field(s) {sorted(missing)}, needed by "
                        "analysis.keep_special_tokens; rerun attribute_proteins")
    n_perm = int((composition_null or {}).get("permutations", 0)) if proteins_path else 0
    sequences = None
    if n_perm:
        prot = read_table(proteins_path, "proteins")
        sequences = dict(zip(prot["accession"], prot["sequence"]))
    res = wenzel_statistics_streaming(emb, heads_path,
                                      read_table(annotations_path, "residue_annotations"),
                                      list(types), alpha, per_target, keep_special_tokens, batch_rows,
                                      sequences, n_perm, seed)
    for key, path in (("heads", output.heads), ("embedding", output.embedding),
                      ("positive_relevance", output.positive), ("per_protein", output.per_protein)):
        write_table(path, res[key])
    log.info("special tokens %s", "kept (mask 0)" if keep_special_tokens else "left out")
    for r in res["embedding"].itertuples():
        log.info("embedding level %s [%s]: n=%d median r=%.3f p=%.3g rank accuracy %.3f "
                 "(chance %.3f); composition null (%d permutations): mean r %.3f vs %.3f +- %.3f, "
                 "p=%.3g", r.annotation, r.group, r.n_proteins, r.median_r, r.p,
                 r.rank_accuracy, r.random_rank_accuracy, n_perm, r.mean_r, r.null_mean_r,
                 r.null_sd_r, r.p_composition)
    h = res["heads"]
    if len(h):
        for (ann, group), sub in h.groupby(["annotation", "group"], sort=False):
            log.info("heads %s [%s]: %d significant, %d also in the positive-relevance test; "
                     "best rank accuracy %.3f (chance %.3f)", ann, group, int(sub["significant"].sum()),
                     int(sub["significant_overlay"].sum()), float(sub["rank_accuracy"].max()),
                     float(sub["random_rank_accuracy"].iloc[0]))
