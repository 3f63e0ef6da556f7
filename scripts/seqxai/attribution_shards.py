"""Which proteins a shard attributes, and the shard job itself.

Targets are (protein, target logit) pairs (:func:`attribution_targets`); proteins are dealt to
shards by their estimated cost, tokens x path nodes (:func:`balanced_shards`), so every shard
costs about the mean; a shard job attributes its share under every model variant and writes
one embedding and one head table per variant, all or none (:func:`run_attribution_shard`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .attribution import baseline_ids

log = logging.getLogger("seqxai.attribution")


def attribution_targets(proteins, splits, meta: dict, split: str = "test",
                        max_proteins: int | None = None):
    """Which (protein, target logit) pairs to attribute.

    single_label tasks: the ground-truth class of every protein in ``split``;
    multi_label tasks: each term in ``task.attribute_terms`` for the proteins positive for it.
    Returns a DataFrame accession, sequence, target_index, target_label, sorted by accession.
    """
    import pandas as pd

    task, labels = meta["task"], meta["labels"]
    df = proteins.merge(splits[["accession", "split"]], on="accession")
    if split != "all":
        df = df[df["split"] == split]
    df = df.sort_values("accession")
    if task["type"] == "single_label":  # the task's label (EC cut to ec_level when set)
        from .protein_tasks import single_labels

        df = df.assign(task_label=single_labels(df, task)[0].to_numpy())
    rows = []
    for r in df.itertuples(index=False):
        if task["type"] == "single_label":
            value = r.task_label
            if value in labels:
                rows.append((r.accession, r.sequence, labels.index(value), value))
        else:
            terms = set(getattr(r, task["column"]))
            for t in task.get("attribute_terms", labels):
                if t in terms:
                    rows.append((r.accession, r.sequence, labels.index(t), t))
    out = pd.DataFrame(rows, columns=["accession", "sequence", "target_index", "target_label"])
    if max_proteins:
        keep = out["accession"].drop_duplicates().iloc[:max_proteins]
        out = out[out["accession"].isin(keep)]
    return out.reset_index(drop=True)


def estimated_cost(sequences, max_length: int, n_steps: int) -> np.ndarray:
    """cost[protein] = tokens x n_steps: the tokens the model sees (residues cut at
    ``max_length - 2``, plus the two special tokens) times the path nodes.

    One IG run is n_steps forward, JVP and backward passes over the tokens; their work is
    linear in the tokens up to attention's quadratic term (ProtBert-BFD at 1000 tokens:
    4 T^2 H / 24 T H^2 = T / 6H, about 16%), so tokens are the cost that stays honest
    without a model at hand.
    """
    tokens = np.array([min(len(s), max_length - 2) + 2 for s in sequences], dtype=np.int64)
    return tokens * int(n_steps)


def balanced_shards(cost: np.ndarray, n_shards: int) -> np.ndarray:
    """shard[item] in 0..n_shards-1: longest processing time first, deterministically.

    Items in decreasing cost (ties: input order) each go to the shard with the least cost
    so far (ties: the lowest shard). Greedy list scheduling keeps the largest shard within
    mean + max(cost) and LPT within 4/3 of the optimum, so with many proteins per shard
    every shard costs about the mean; round robin does not (sorted by accession, long
    proteins land together by chance).
    """
    import heapq

    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    cost = np.asarray(cost)
    order = np.lexsort((np.arange(len(cost)), -cost))  # cost descending, then input order
    loads = [(0, s) for s in range(n_shards)]  # already a heap
    shard = np.empty(len(cost), dtype=np.int64)
    for i in order:
        load, s = heapq.heappop(loads)
        shard[i] = s
        heapq.heappush(loads, (load + cost[i], s))
    return shard


def shard_targets(targets, shard: int, n_shards: int, max_length: int, n_steps: int):
    """The rows of ``targets`` that shard ``shard`` (0-based) attributes.

    Proteins (with all their targets) are dealt by :func:`balanced_shards` on
    :func:`estimated_cost` summed over their targets; every shard job computes the same
    assignment from the same table, so each protein lands in exactly one shard.
    """
    proteins = targets.drop_duplicates("accession")[["accession", "sequence"]]
    n_targets = targets.groupby("accession", sort=False).size()
    cost = (estimated_cost(proteins["sequence"], max_length, n_steps)
            * n_targets.loc[proteins["accession"]].to_numpy())
    where = dict(zip(proteins["accession"], balanced_shards(cost, n_shards)))
    return targets[targets["accession"].map(where) == shard]


def attribute_shard(model_dir: str, targets, shard: int, n_shards: int, n_steps: int,
                    batch_size: int, device: str = "auto", layers: bool = True, conductance: str = "jvp",
                    method: str = "ig", max_memory_gb=None):
    """Attribute the targets of shard ``shard`` (0-based) of ``n_shards`` (:func:`shard_targets`)
    by ``method`` (seqxai.attribution_methods.METHODS; ``attention_rollout`` writes no head rows).

    Path nodes go through the model ``batch_size`` at a time, or, with ``max_memory_gb`` (GiB or
    "auto"), as many as the estimate of :mod:`seqxai.micro_batches` fits for each protein's length.

    Returns two DataFrames: embedding relevance (one row per protein and target, a list
    over residues 1..L, the convergence deltas of the embedding and of every layer output)
    and head relevance (one row per protein, target, layer and head, a list over
    residues). The lists are float32, as computed (Parquet list<float>: half the bytes of
    doubles; readers cast to float64 without changing a value). Special tokens are not in
    the lists; their values are kept apart in ``relevance_start``/``relevance_end``
    ([CLS]/<cls> and [SEP]/<eos>; exactly 0 at the embedding, not at the heads) for
    statistics that keep them as the original code did.
    """
    import pandas as pd

    from .attribution_methods import attribute
    from .attribution_tables import EMBEDDING_COLUMNS, HEAD_COLUMNS
    from .io import Progress
    from .micro_batches import (
        GIB,
        attribution_host_bytes,
        attribution_row_bytes,
        budget_bytes,
        path_batch_for,
        path_store_bytes,
        weight_bytes,
    )
    from .protein_model import encode, load_classifier

    model, tok, meta = load_classifier(model_dir, device=device)
    budget = budget_bytes(max_memory_gb, next(model.parameters()).device)
    if budget is not None:
        log.info("attribution.max_memory_gb %s: %.2f GiB for the path batches", max_memory_gb, budget / GIB)
    mine = shard_targets(targets, shard, n_shards, meta["max_length"], n_steps)
    cost = estimated_cost(mine["sequence"], meta["max_length"], n_steps).sum()
    total = estimated_cost(targets["sequence"], meta["max_length"], n_steps).sum()
    log.info("shard %d/%d: %d targets, estimated cost %.3g of the mean shard's %.3g "
             "(tokens x steps)", shard + 1, n_shards, len(mine), cost, total / n_shards)
    if len(mine):  # what the longest protein of the shard asks (seqxai.micro_batches)
        tokens = min(int(mine["sequence"].str.len().max()), meta["max_length"] - 2) + 2
        row = attribution_row_bytes(model.encoder.config, tokens, layers, conductance)
        batch = min(batch_size, n_steps) if budget is None else path_batch_for(
            model, tokens, n_steps, batch_size, None, None, layers=layers, conductance=conductance,
            budget=budget)
        log.info("longest protein, %d tokens: path batches of %d nodes, estimated %.2f GiB of "
                 "activations (%.3f GiB per node)", tokens, batch, batch * row / GIB, row / GIB)
        on_host = batch * row + path_store_bytes(model.encoder.config, tokens, n_steps, layers, conductance) \
            if next(model.parameters()).device.type == "cpu" else 0
        log.info("host memory estimate for it: %d MiB (seqxai.micro_batches.attribution_host_bytes)",
                 attribution_host_bytes(weight_bytes(model_dir), on_host) // 2 ** 20)
    special = set(tok.all_special_ids)
    emb_rows, head_rows = [], []
    progress = Progress(len(mine), f"{method} shard {shard + 1}/{n_shards}", logger=log)
    for r in mine.itertuples(index=False):
        enc = encode(tok, [r.sequence], meta["max_length"])
        ids, att = enc["input_ids"][0], enc["attention_mask"][0]
        n_res = int(att.sum()) - 2
        batch = min(batch_size, n_steps) if budget is None else path_batch_for(
            model, len(ids), n_steps, batch_size, None, None, layers=layers, conductance=conductance,
            budget=budget)
        res = attribute(method, model, ids, att, int(r.target_index),
                        baseline_ids(ids, special, tok.pad_token_id), n_steps, batch, layers,
                        conductance)
        emb_all = res["embedding"].astype(np.float32)
        emb_rows.append({"accession": r.accession, "target": r.target_label, "n_residues": n_res,
                         "relevance": emb_all[1 : n_res + 1].copy(),  # list<float32>
                         "relevance_start": float(emb_all[0]),
                         "relevance_end": float(emb_all[n_res + 1]),
                         "f_input": res["f_input"], "f_baseline": res["f_baseline"],
                         "delta": res["delta"],
                         "layer_delta": [float(x) for x in res.get("layer_delta", [])]})
        if layers and "heads" in res:
            heads = res["heads"].astype(np.float32)
            for l in range(heads.shape[0]):
                for h in range(heads.shape[1]):
                    head_rows.append({"accession": r.accession, "target": r.target_label,
                                      "layer": l, "head": h,
                                      "relevance": heads[l, h, 1 : n_res + 1].copy(),
                                      "relevance_start": float(heads[l, h, 0]),
                                      "relevance_end": float(heads[l, h, n_res + 1])})
        progress.update()
    return (pd.DataFrame(emb_rows, columns=EMBEDDING_COLUMNS),
            pd.DataFrame(head_rows, columns=HEAD_COLUMNS))


def run_attribution_shard(model_dirs, proteins_path, splits_path, params: dict, shard: int,
                          n_shards: int, out_dir, device: str = "auto",
                          threads: int = 1, batch_size: int = 16, max_memory_gb=None) -> None:
    """Select the targets, attribute this shard's share under every model variant and write
    both tables per variant into the folder ``out_dir``: ``<variant>/embedding.parquet`` and
    ``<variant>/heads.parquet`` (:data:`SHARD_FILES`).

    ``model_dirs`` maps a variant name (``finetuned``, a control) to its model folder; a single
    path stands for ``{"finetuned": path}``. One job for all variants of a task keeps a
    10,000-shard run with two controls at 10,000 jobs rather than 30,000 (Snakemake's DAG
    costs about 1.8 ms per job); the variants see exactly the same proteins.
    ``params`` holds what defines the result (n_steps, split, max_proteins, layers and the
    attribution ``method``, default ``ig``);
    ``device``, ``threads``, ``batch_size`` (path nodes per pass) and ``max_memory_gb`` (the
    budget that sizes the path batches instead) only set the speed.
    """
    import json

    from .attribution_tables import SHARD_FILES, convergence_summary
    from .io import DataError, atomic_dir, read_table, write_table
    from .micro_batches import GIB, peak_rss_bytes

    if isinstance(model_dirs, (str, Path)):
        model_dirs = {"finetuned": model_dirs}
    if not model_dirs:
        raise DataError("attribution shard: no model variant to attribute")
    torch.set_num_threads(threads)
    proteins, splits = read_table(proteins_path, "proteins"), read_table(splits_path, "splits")
    # every variant's targets first: a mismatch fails before any attribution runs
    chosen = {}
    for variant, model_dir in model_dirs.items():
        meta = json.loads((Path(model_dir) / "seqxai_model.json").read_text())
        chosen[variant] = attribution_targets(proteins, splits, meta, params["split"], params["max_proteins"])
        log.info("variant %s (%s): %d attribution targets in split '%s'; this shard %d of %d", variant,
                 model_dir, len(chosen[variant]), params["split"], shard + 1, n_shards)
    first = next(iter(chosen))
    for variant, targets in chosen.items():
        if not targets[["accession", "target_label"]].equals(chosen[first][["accession", "target_label"]]):
            raise DataError(f"{model_dirs[variant]}: variant {variant} selects other attribution targets "
                            f"({len(targets)}) than {first} ({len(chosen[first])}): the variants of a task "
                            "must share its labels")
    tables = {}
    for variant, targets in chosen.items():
        emb, heads = attribute_shard(str(model_dirs[variant]), targets, shard, n_shards, params["n_steps"],
                                     batch_size, device, params["layers"], params.get("conductance", "jvp"),
                                     params.get("method", "ig"), max_memory_gb)
        if len(emb):
            for r in convergence_summary(emb, tolerance=np.inf).itertuples(index=False):
                log.info("%s completeness at %s: |delta| median %.3g max %.3g; |delta| / |F(x)-F(x')| "
                         "median %.3g max %.3g", variant, r.level, r.median_abs_delta, r.max_abs_delta,
                         r.median_relative_delta, r.max_relative_delta)
        tables[variant] = (emb, heads)
    # All tables or none: they go into a temporary folder that is renamed onto out_dir only
    # after every one is written (an interrupted shard leaves nothing that looks complete).
    # One output per shard job also keeps Snakemake's DAG of a 10,000-shard run small.
    log.info("peak RSS %.3f GiB (this job, ru_maxrss)", peak_rss_bytes() / GIB)
    with atomic_dir(out_dir) as tmp:
        for variant, (emb, heads) in tables.items():
            (tmp / variant).mkdir()
            write_table(tmp / variant / SHARD_FILES["embedding"], emb)
            write_table(tmp / variant / SHARD_FILES["heads"], heads)
