"""Attribution tables without torch: gathering shards and the convergence (completeness) check.

The gather rule runs in the analysis env, which has no torch, so nothing here may import
it (tests/test_attribution.py imports this module with torch blocked).

Tables (one row per protein and target; relevance lists run over residues 1..L):
- embedding: accession, target, n_residues, relevance, relevance_start, relevance_end,
  f_input, f_baseline, delta, layer_delta[layer];
- heads: accession, target, layer, head, relevance, relevance_start, relevance_end.
Convergence delta (Sundararajan et al.'s completeness): delta = sum(attribution) -
(F(x) - F(x')) at the embedding and at every layer output (both cuts of the network);
relative delta = |delta| / |F(x) - F(x')|.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.attribution")

EMBEDDING_COLUMNS = ["accession", "target", "n_residues", "relevance", "relevance_start",
                     "relevance_end", "f_input", "f_baseline", "delta", "layer_delta"]
HEAD_COLUMNS = ["accession", "target", "layer", "head", "relevance", "relevance_start",
                "relevance_end"]
#: the two tables of one shard's output folder
SHARD_FILES = {"embedding": "embedding.parquet", "heads": "heads.parquet"}
CONVERGENCE_COLUMNS = ["level", "layer", "n_proteins", "n_flagged", "tolerance", "median_abs_delta",
                       "max_abs_delta", "median_relative_delta", "max_relative_delta"]


def _deltas(emb: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """gap[protein], delta[protein] (embedding) and layer_delta[protein, layer] (NaN if absent)."""
    gap = (emb["f_input"].to_numpy(float) - emb["f_baseline"].to_numpy(float))
    delta = emb["delta"].to_numpy(float)
    lists = [np.asarray(x, dtype=float) for x in emb.get("layer_delta", pd.Series([[]] * len(emb)))]
    n_layers = max((len(x) for x in lists), default=0)
    layer = np.full((len(emb), n_layers), np.nan)
    for i, x in enumerate(lists):
        layer[i, : len(x)] = x
    return gap, delta, layer


def _relative(delta: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """|delta| / |gap| for delta[protein] or delta[protein, layer]."""
    g = np.maximum(np.abs(gap), 1e-12)
    return np.abs(delta) / (g[:, None] if delta.ndim == 2 else g)


def flag_convergence(emb: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Add ``relative_delta`` (embedding), ``max_relative_layer_delta`` and ``delta_flagged``.

    A protein is flagged when |delta| / |F(x) - F(x')| exceeds ``tolerance`` at the
    embedding or at any layer output: its attributions do not add up to the logit change
    (too few steps, or F(x) ~= F(x')).
    """
    gap, delta, layer = _deltas(emb)
    rel = _relative(delta, gap)
    rel_layer = _relative(layer, gap)
    # fmax ignores NaN (a protein without layer deltas); no layers at all -> NaN
    max_layer = (np.fmax.reduce(rel_layer, axis=1) if layer.shape[1]
                 else np.full(len(emb), np.nan))
    out = emb.copy()
    out["relative_delta"] = rel
    out["max_relative_layer_delta"] = max_layer
    out["delta_flagged"] = (rel > tolerance) | (np.nan_to_num(max_layer, nan=0.0) > tolerance)
    return out


def convergence_summary(emb: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """One row for the embedding (layer -1) and one per layer output (layers in numeric order):
    proteins, proteins above ``tolerance`` (relative), median and max |delta| and relative delta."""
    gap, delta, layer = _deltas(emb)
    rows = []
    levels = [("embedding", -1, delta)] + [("layer_output", l, layer[:, l])
                                           for l in range(layer.shape[1])]
    for level, l, d in levels:
        ok = np.isfinite(d)
        a, r = np.abs(d[ok]), _relative(d[ok], gap[ok])
        rows.append({"level": level, "layer": l, "n_proteins": int(ok.sum()),
                     "n_flagged": int((r > tolerance).sum()), "tolerance": float(tolerance),
                     "median_abs_delta": float(np.median(a)) if len(a) else np.nan,
                     "max_abs_delta": float(a.max()) if len(a) else np.nan,
                     "median_relative_delta": float(np.median(r)) if len(r) else np.nan,
                     "max_relative_delta": float(r.max()) if len(r) else np.nan})
    return pd.DataFrame(rows, columns=CONVERGENCE_COLUMNS)


def concat_shards(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Shard tables in one, sorted by accession, target, then layer and head numerically."""
    df = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    keys = [c for c in ("accession", "target", "layer", "head") if c in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def shard_tables(shard_dirs, table: str) -> list:
    """Paths of one table (``embedding`` or ``heads``) in the shards' output folders."""
    from pathlib import Path

    return [Path(d) / SHARD_FILES[table] for d in shard_dirs]


def gather_attributions(embedding_paths, heads_paths, embedding_out, heads_out, convergence_out,
                        delta_tolerance: float) -> pd.DataFrame:
    """Gather the shards of one task, flag proteins whose convergence delta exceeds
    ``delta_tolerance`` and write the embedding, head and convergence tables."""
    from .io import read_table, write_table

    emb = flag_convergence(concat_shards([read_table(p) for p in embedding_paths]), delta_tolerance)
    summary = convergence_summary(emb, delta_tolerance)
    for r in summary.itertuples(index=False):
        where = "embedding" if r.level == "embedding" else f"layer {r.layer} output"
        log.info("completeness at %s: %d of %d proteins above tolerance %.3g; |delta| median %.3g "
                 "max %.3g; relative median %.3g max %.3g", where, r.n_flagged, r.n_proteins,
                 r.tolerance, r.median_abs_delta, r.max_abs_delta, r.median_relative_delta,
                 r.max_relative_delta)
    n_flag = int(emb["delta_flagged"].sum())
    if n_flag:
        log.warning("%d of %d proteins flagged (delta_flagged): their attributions do not add up to "
                    "F(x) - F(x') within %.3g; raise attribution.n_steps", n_flag, len(emb),
                    delta_tolerance)
    write_table(embedding_out, emb)
    write_table(heads_out, concat_shards([read_table(p) for p in heads_paths]))
    write_table(convergence_out, summary)
    return summary
