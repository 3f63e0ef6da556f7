"""Attribution tables without torch: gathering shards and the convergence (completeness) check.

The gather rule runs in the analysis env, which has no torch, so nothing here may import
it (tests/test_attribution.py imports this module with torch blocked).

Tables (one row per protein and target; relevance lists run over residues 1..L):
- embedding: accession, target, n_residues, relevance, relevance_start, relevance_end,
  f_input, f_baseline, delta, layer_delta[layer];
- heads: accession, target, layer, head, relevance, relevance_start, relevance_end.

Row order. The embedding table is small and gathered in memory, sorted by accession and
target. The head table (about 26 GB at paper size) is streamed shard by shard, so that the
gather holds one shard at a time: each shard's rows are sorted by accession, target, then
layer and head numerically, and appended in shard order (1-of-n, 2-of-n, ...). Every
protein sits in one shard, so each protein and target has contiguous rows, layers and heads
in numeric order within; proteins follow shard order, not accession order across shards.
Readers that stream the table (``head_statistics``) rely on the contiguous rows.

Convergence delta (Sundararajan et al.'s completeness): delta = sum(attribution) -
(F(x) - F(x')) at the embedding and at every layer output (both cuts of the network);
relative delta = |delta| / |F(x) - F(x')|.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

log = logging.getLogger("seqxai.attribution")

EMBEDDING_COLUMNS = ["accession", "target", "n_residues", "relevance", "relevance_start",
                     "relevance_end", "f_input", "f_baseline", "delta", "layer_delta"]
HEAD_COLUMNS = ["accession", "target", "layer", "head", "relevance", "relevance_start",
                "relevance_end"]
#: the two tables of one shard's output folder
SHARD_FILES = {"embedding": "embedding.parquet", "heads": "heads.parquet"}
#: head table schema written when every shard is empty (no layers attributed); otherwise the
#: first non-empty shard's schema is kept, and the other shards are cast to it
HEADS_SCHEMA = pa.schema([("accession", pa.string()), ("target", pa.string()),
                          ("layer", pa.int64()), ("head", pa.int64()),
                          ("relevance", pa.list_(pa.float32())), ("relevance_start", pa.float64()),
                          ("relevance_end", pa.float64())])
#: the sort keys of a shard's rows (layer and head are integers: numeric order)
HEAD_SORT_KEYS = ("accession", "target", "layer", "head")
#: rows per Parquet row group of the gathered head table, so that a reader going row group by
#: row group holds little (8,192 rows of 461 residues: about 15 MB of float32)
HEADS_ROW_GROUP_ROWS = 8192
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
    keys = [c for c in HEAD_SORT_KEYS if c in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def shard_tables(shard_dirs, table: str, variant: str | None = None) -> list:
    """Paths of one table (``embedding`` or ``heads``) of one model variant in the shards'
    output folders (``<shard>/<variant>/<table>.parquet``; ``<shard>/<table>.parquet`` when
    ``variant`` is None)."""
    from pathlib import Path

    return [Path(d) / (variant or "") / SHARD_FILES[table] for d in shard_dirs]


def sort_heads(table: pa.Table) -> pa.Table:
    """One shard's head rows sorted by accession, target, layer and head (stable, numeric)."""
    keys = [(c, "ascending") for c in HEAD_SORT_KEYS if c in table.column_names]
    return table.sort_by(keys) if keys and table.num_rows else table


def _conform(table: pa.Table, schema: pa.Schema, path) -> pa.Table:
    """``table`` with the columns and types of ``schema`` (the first non-empty shard's)."""
    from .io import DataError

    if table.schema.equals(schema):
        return table
    if sorted(table.column_names) != sorted(schema.names):
        raise DataError(f"{path}: head table columns {table.column_names} differ from the first "
                        f"shard's {schema.names}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        theirs = {f.name: str(f.type) for f in table.schema}
        ours = {f.name: str(f.type) for f in schema}
        fields = [n for n in schema.names if theirs[n] != ours[n]]
        raise DataError(f"{path}: head table field(s) {fields} of type "
                        f"{[theirs[n] for n in fields]} do not fit the first shard's "
                        f"{[ours[n] for n in fields]} ({exc})") from exc


def gather_heads(heads_paths, heads_out, row_group_rows: int = HEADS_ROW_GROUP_ROWS) -> int:
    """Append the shards' head tables to one Parquet file, one shard in memory at a time.

    Each shard is sorted by :func:`sort_heads` and written in shard order (the row order of
    the module docstring); the file appears at ``heads_out`` only when every shard is in.
    Returns the number of rows.
    """
    import pyarrow.parquet as pq

    from .io import atomic_path, read_arrow

    n_rows = 0
    with atomic_path(heads_out, suffix=".parquet") as tmp:
        writer = None
        try:
            for path in heads_paths:
                table = read_arrow(path)
                if not table.num_rows:  # an empty shard (or no layers): its schema may be untyped
                    continue
                table = sort_heads(table.replace_schema_metadata(None))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(_conform(table, writer.schema, path), row_group_size=row_group_rows)
                n_rows += table.num_rows
                del table
            if writer is None:
                pq.write_table(HEADS_SCHEMA.empty_table(), tmp)
        finally:
            if writer is not None:
                writer.close()
    return n_rows


# What a completeness gap means for each attribution method (the gather's warning): only IG's
# shrinks with more path nodes; the others are not complete by construction
# (docs/attribution_methods.md).
GAP_ADVICE = {
    "ig": "raise attribution.n_steps",
    "attnlrp": "expected for AttnLRP: its softmax rule absorbs part of the relevance (not a step count)",
    "grad_x_input": "expected for gradient x input, which is not complete by construction",
    "attention_rollout": "expected for attention rollout, which does not decompose the logit",
}


def gather_attributions(embedding_paths, heads_paths, embedding_out, heads_out, convergence_out,
                        delta_tolerance: float, method: str = "ig") -> pd.DataFrame:
    """Gather the shards of one task, flag proteins whose convergence delta exceeds
    ``delta_tolerance`` and write the embedding, head and convergence tables. ``method`` (an
    ``attribution.methods`` name) only chooses the advice of the warning (:data:`GAP_ADVICE`).

    The embedding table is gathered in memory; the head table is streamed shard by shard
    (:func:`gather_heads`). The head table is written first, into a temporary file renamed
    into place last, so that a bad shard leaves none of the three outputs.
    """
    from .io import atomic_path, read_table, write_table

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
                    "F(x) - F(x') within %.3g; %s", n_flag, len(emb), delta_tolerance,
                    GAP_ADVICE.get(method, GAP_ADVICE["ig"]))
    with atomic_path(heads_out, suffix=".parquet") as heads_tmp:
        n_rows = gather_heads(heads_paths, heads_tmp)
        write_table(embedding_out, emb)
        write_table(convergence_out, summary)
    log.info("gathered %d proteins and targets, %d head rows from %d shards", len(emb), n_rows,
             len(heads_paths))
    return summary
