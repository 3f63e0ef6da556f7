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

The per-protein scores are in seqxai.annotation_scores, the per-protein summaries in
seqxai.per_protein_summaries, the Wilcoxon test and BH in seqxai.significance.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .per_protein_summaries import _arrow_relevance, _PerProtein, _with_special
from .significance import bh, wilcoxon_greater


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
