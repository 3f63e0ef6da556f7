"""Residue flipping (Wenzel et al. 2024) in both directions: does the model need the residues
IG ranks highest, and not those it ranks lowest?

Replace n residues by the replacement residue (alanine by default), n = 1, 2, 4, ..., n_max,
in three orders, and re-measure the attributed target:
- ``most_relevant`` (MoRF): descending embedding-level relevance;
- ``least_relevant`` (LeRF): ascending relevance;
- ``random``: a seeded random permutation per protein and seed (``n_random`` seeds); the
  first n positions of the same permutation are flipped at every n, so the curve is nested
  like the relevance orders.
Candidates: the attributed residues (the first len(relevance) of the sequence) that are not
already the replacement residue; flipping an alanine to alanine changes nothing and is
neither done nor counted. Each protein flips min(n, its number of candidates) residues.
Ties in relevance: the earlier residue comes first in both relevance orders (a stable sort of
-relevance for MoRF, of +relevance for LeRF), so LeRF is not MoRF reversed where values tie.

Metric per protein, for the attributed target t:
- single_label (EC): correct = argmax_k logit_k == t; probability = softmax(logit)_t;
- multi_label (GO): correct = sigmoid(logit_t) >= 0.5 (a hit of the selected term);
  probability = sigmoid(logit_t).

Per protein, on its own grid n_0 = 0 < n_1 < ... < n_K (1, 2, 4, ... up to min(n_max, its
candidates)), the AOPC of an order (Samek et al. 2017, n = 0 included) is

    AOPC_order = 1 / (K + 1) * sum_k (p(n_0) - p_order(n_k)),

with the random curve the mean over seeds. A relevance that points at what the model uses
gives AOPC_most_relevant > AOPC_random > AOPC_least_relevant; across proteins, paired
one-sided Wilcoxon signed-rank tests of these differences (see :func:`flipping_tests`).
Positions: ``relevance[residue]`` runs over residues 1..L, 0-based here; the sequence
character at index r is residue r + 1.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.residue_flipping")

ORDERS = ("most_relevant", "least_relevant", "random")
# curves: one row per n, order and seed (seed -1: a relevance order), over all proteins
COLUMNS = ["n", "order", "seed", "n_proteins", "accuracy", "mean_probability", "mean_flipped"]
# per protein: curves on the protein's own grid n[k] (lists), AOPC per order and their differences
PER_PROTEIN_COLUMNS = ["accession", "target", "n_candidates", "n",
                       *[f"probability_{o}" for o in ORDERS], *[f"aopc_{o}" for o in ORDERS],
                       "aopc_most_minus_random", "aopc_most_minus_least"]
# tests: one row per comparison of two orders' AOPC across proteins
TEST_COLUMNS = ["comparison", "order_a", "order_b", "alternative", "n_proteins", "n_nonzero",
                "mean_aopc_a", "mean_aopc_b", "median_difference", "statistic", "p"]
COMPARISONS = [("most_relevant", "random", "greater"), ("least_relevant", "random", "less"),
               ("most_relevant", "least_relevant", "greater")]


def flip_counts(n_max: int, max_length: int) -> list[int]:
    """1, 2, 4, ..., up to n_max and no larger than ``max_length`` (the candidates)."""
    out, n = [], 1
    while n <= min(n_max, max_length):
        out.append(n)
        n *= 2
    return out


def candidate_positions(sequence: str, n_attributed: int, replacement: str = "A") -> np.ndarray:
    """0-based positions among the first ``n_attributed`` residues that differ from ``replacement``."""
    return np.array([r for r in range(n_attributed) if sequence[r] != replacement], dtype=np.int64)


def top_positions(relevance: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest relevances (ties: the earlier residue first)."""
    return np.argsort(-np.asarray(relevance, dtype=np.float64), kind="stable")[: min(n, len(relevance))]


def flip_order(relevance: np.ndarray, candidates: np.ndarray, order: str,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """The candidate positions in the order they are flipped (see module doc for ties)."""
    rel = np.asarray(relevance, dtype=np.float64)[candidates]
    if order == "most_relevant":
        return candidates[np.argsort(-rel, kind="stable")]
    if order == "least_relevant":
        return candidates[np.argsort(rel, kind="stable")]
    if order == "random":
        return rng.permutation(candidates)
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def flip(sequence: str, positions, replacement: str = "A") -> str:
    """``sequence`` with the residues at the 0-based ``positions`` replaced."""
    chars = list(sequence)
    for p in positions:
        chars[int(p)] = replacement
    return "".join(chars)


def score(logits: np.ndarray, target_index: np.ndarray, task_type: str) -> tuple[np.ndarray, np.ndarray]:
    """correct[protein] and probability[protein] of the attributed target (see module doc)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    if task_type == "single_label":
        z = logits - logits.max(1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return logits.argmax(1) == target_index, prob[rows, target_index]
    if task_type == "multi_label":
        prob = 1.0 / (1.0 + np.exp(-logits[rows, target_index]))
        return prob >= 0.5, prob
    raise ValueError(f"task type must be single_label or multi_label, got {task_type!r}")


def aopc(probability: np.ndarray) -> float:
    """AOPC of one curve probability[k] over n_0 = 0, n_1, ..., n_K: mean_k (p[0] - p[k])."""
    p = np.asarray(probability, dtype=np.float64)
    return float(np.mean(p[0] - p))


def residue_flipping(predict: Callable[[list[str]], np.ndarray], sequences: Sequence[str],
                     relevances: Sequence[np.ndarray], target_index: Sequence[int], task_type: str,
                     n_max: int = 64, n_random: int = 5, seed: int = 0, replacement: str = "A",
                     orders: Sequence[str] = ORDERS, ids: pd.DataFrame | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flip every protein in each order at n = 0, 1, 2, 4, ...; return (curves, per_protein).

    ``predict(sequences) -> logits[protein, label]``; ``relevances[p][residue]`` covers the
    first len(relevance) residues of sequence p (the attributed, possibly truncated part,
    where the flips are drawn). ``curves`` (:data:`COLUMNS`) holds accuracy, mean target
    probability and mean number of flipped residues per n, order and seed (seed -1 for the
    relevance orders; n = 0 is the unflipped input, listed for every order and seed), on the
    grid of the protein with the most candidates (others flip all their candidates there).
    ``per_protein`` (:data:`PER_PROTEIN_COLUMNS`) holds each protein's curves on its own grid
    and their AOPC; orders not run are NaN. ``ids`` (accession, target) labels its rows.
    """
    seqs = list(sequences)
    rels = [np.asarray(r, dtype=np.float64) for r in relevances]
    tgt = np.asarray(target_index, dtype=np.int64)
    if not (len(seqs) == len(rels) == len(tgt)):
        raise ValueError("sequences, relevances and target_index differ in length")
    unknown = [o for o in orders if o not in ORDERS]
    if unknown or not orders:
        raise ValueError(f"orders must be a non-empty subset of {', '.join(ORDERS)}, got {list(orders)}")
    if len(replacement) != 1:
        raise ValueError(f"replacement must be one residue, got {replacement!r}")
    for k, (s, r) in enumerate(zip(seqs, rels)):
        if len(r) > len(s):
            raise ValueError(f"protein {k}: {len(r)} relevances for {len(s)} residues")
        if not np.isfinite(r).all():
            raise ValueError(f"protein {k}: relevance at residue {int(np.argmin(np.isfinite(r))) + 1} "
                             "is not finite")
    orders = [o for o in ORDERS if o in orders]  # one row order whatever order the config lists
    cands = [candidate_positions(s, len(r), replacement) for s, r in zip(seqs, rels)]
    n_cand = np.array([len(c) for c in cands], dtype=np.int64)
    runs = [(o, -1) for o in orders if o != "random"]
    runs += [("random", k) for k in range(n_random)] if "random" in orders else []
    def rng(o, k, p):  # random: one permutation per seed and protein, whatever the batch
        return np.random.default_rng([seed, k, p]) if o == "random" else None

    # each run's flip order per protein; only the first n_max are ever flipped
    ranked = {(o, k): [flip_order(r, c, o, rng(o, k, p))[:n_max] for p, (r, c) in enumerate(zip(rels, cands))]
              for o, k in runs}
    grid = [0] + flip_counts(n_max, int(n_cand.max()) if len(seqs) else 0)
    prob = {run: np.full((len(seqs), len(grid)), np.nan) for run in runs}
    rows = []
    if not seqs:
        return pd.DataFrame(rows, columns=COLUMNS), _per_protein(prob, grid, n_cand, orders, n_random,
                                                                  ids, 0)
    correct0, prob0 = score(predict(seqs), tgt, task_type)
    for j, n in enumerate(grid):
        for o, k in runs:
            if n == 0:
                correct, p = correct0, prob0
            else:
                correct, p = score(predict([flip(s, pos[:n], replacement)
                                            for s, pos in zip(seqs, ranked[(o, k)])]), tgt, task_type)
            prob[(o, k)][:, j] = p
            rows.append({"n": n, "order": o, "seed": k, "n_proteins": len(seqs),
                         "accuracy": float(np.mean(correct)), "mean_probability": float(np.mean(p)),
                         "mean_flipped": float(np.mean(np.minimum(n, n_cand)))})
    curves = pd.DataFrame(rows, columns=COLUMNS)
    return curves, _per_protein(prob, grid, n_cand, orders, n_random, ids, len(seqs))


def _per_protein(prob: dict, grid: list[int], n_cand: np.ndarray, orders, n_random: int,
                 ids: pd.DataFrame | None, n_proteins: int) -> pd.DataFrame:
    """Per protein: each order's curve on the protein's own grid (n <= its candidates) and AOPC."""
    if ids is None:
        ids = pd.DataFrame({"accession": [str(p) for p in range(n_proteins)], "target": ""})
    out = ids[["accession", "target"]].reset_index(drop=True).copy()
    out["n_candidates"] = n_cand
    keep = [np.array([j for j, n in enumerate(grid) if n <= c]) for c in n_cand]
    out["n"] = [[grid[j] for j in kj] for kj in keep]
    for o in ORDERS:
        if o not in orders or (o == "random" and n_random == 0):
            out[f"probability_{o}"] = [[np.nan] * len(kj) for kj in keep]
            out[f"aopc_{o}"] = np.nan
            continue
        mat = np.mean([v for (oo, _), v in prob.items() if oo == o], axis=0)  # random: mean over seeds
        out[f"probability_{o}"] = [mat[p, kj].tolist() for p, kj in enumerate(keep)]
        out[f"aopc_{o}"] = [aopc(mat[p, kj]) for p, kj in enumerate(keep)]
    out["aopc_most_minus_random"] = out["aopc_most_relevant"] - out["aopc_random"]
    out["aopc_most_minus_least"] = out["aopc_most_relevant"] - out["aopc_least_relevant"]
    return out[PER_PROTEIN_COLUMNS]


def flipping_tests(per_protein: pd.DataFrame) -> pd.DataFrame:
    """Paired one-sided Wilcoxon signed-rank tests across proteins of AOPC(a) - AOPC(b).

    most_relevant vs random (alternative greater: MoRF drops the target more), least_relevant
    vs random (less: LeRF drops it less) and most_relevant vs least_relevant (greater).
    Proteins where either AOPC is NaN are left out; zero differences are dropped
    (``zero_method="wilcox"``); p is NaN with fewer than 2 non-zero differences.
    """
    from scipy.stats import wilcoxon

    rows = []
    for a, b, alt in COMPARISONS:
        x = per_protein[f"aopc_{a}"].to_numpy(np.float64)
        y = per_protein[f"aopc_{b}"].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        d = x[ok] - y[ok]
        nz = int((d != 0).sum())
        stat, p = np.nan, np.nan
        if nz >= 2:
            res = wilcoxon(d, alternative=alt, zero_method="wilcox")
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"comparison": f"{a} vs {b}", "order_a": a, "order_b": b, "alternative": alt,
                     "n_proteins": int(ok.sum()), "n_nonzero": nz,
                     "mean_aopc_a": float(x[ok].mean()) if ok.any() else np.nan,
                     "mean_aopc_b": float(y[ok].mean()) if ok.any() else np.nan,
                     "median_difference": float(np.median(d)) if ok.any() else np.nan,
                     "statistic": stat, "p": p})
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def run_residue_flipping(model_dir, proteins_path, splits_path, embedding_path, out_path,
                         per_protein_path, tests_path, params: dict, seed: int, device: str = "auto",
                         batch_size: int = 16, threads: int = 1
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Flip the attributed proteins of one task with one model variant; write the curves, the
    per-protein table and the tests (see :func:`residue_flipping`, :func:`flipping_tests`).

    ``params``: n_max, n_random, replacement, orders. ``device``, ``batch_size`` and
    ``threads`` set the speed only.
    """
    import torch

    from .io import DataError, read_table, write_table
    from .protein_model import load_classifier

    torch.set_num_threads(threads)
    model, tok, meta = load_classifier(model_dir, device=device)
    dev = next(model.parameters()).device
    labels = list(meta["labels"])
    emb = read_table(embedding_path)
    seq_of = dict(read_table(proteins_path, "proteins")[["accession", "sequence"]].itertuples(index=False))
    split_of = dict(read_table(splits_path, "splits")[["accession", "split"]].itertuples(index=False))
    for r in emb.itertuples():
        if r.accession not in seq_of:
            raise DataError(f"{embedding_path}: record {r.Index}: accession {r.accession} is not in "
                            f"{proteins_path}")
        if r.target not in labels:
            raise DataError(f"{embedding_path}: record {r.Index}: field target {r.target!r} is not a "
                            f"label of the model in {model_dir}")
        rel = np.asarray(r.relevance, dtype=np.float64)
        if len(rel) > len(seq_of[r.accession]) or not np.isfinite(rel).all():
            raise DataError(f"{embedding_path}: record {r.Index}: field relevance has {len(rel)} values "
                            f"({int((~np.isfinite(rel)).sum())} not finite) for the "
                            f"{len(seq_of[r.accession])} residues of {r.accession}")
    splits = pd.Series([split_of.get(a, "?") for a in emb["accession"]]).value_counts().to_dict()
    log.info("%d attributed proteins, splits %s", len(emb), splits)
    if splits.get("train"):
        log.warning("%d flipped proteins are from the training split: accuracy is optimistic",
                    splits["train"])

    predict = batched_predictor(model, tok, meta["max_length"], dev, batch_size, len(labels))

    curves, per_protein = residue_flipping(
        predict, [seq_of[a] for a in emb["accession"]], list(emb["relevance"]),
        [labels.index(t) for t in emb["target"]], meta["task"]["type"], params["n_max"],
        params["n_random"], seed, params["replacement"], params["orders"], ids=emb[["accession", "target"]])
    tests = flipping_tests(per_protein)
    for n, sub in curves.groupby("n", sort=True):
        acc = sub.groupby("order")["accuracy"].mean()
        log.info("n=%d flipped: accuracy %s", n, ", ".join(f"{o} {a:.3f}" for o, a in acc.items()))
    for t in tests.itertuples():
        log.info("AOPC %s: mean %.4f vs %.4f, median difference %.4f, %d proteins, one-sided (%s) "
                 "Wilcoxon p = %.3g", t.comparison, t.mean_aopc_a, t.mean_aopc_b, t.median_difference,
                 t.n_proteins, t.alternative, t.p)
    write_table(out_path, curves)
    write_table(per_protein_path, per_protein)
    write_table(tests_path, tests)
    return curves, per_protein, tests


def batched_predictor(model, tok, max_length: int, dev, batch_size: int, n_labels: int):
    """predict(sequences) -> logits array (n, n_labels), in batches of ``batch_size``, no grad."""
    import torch

    from seqxai.protein_model import encode

    @torch.no_grad()
    def predict(seqs: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(seqs), batch_size):
            enc = encode(tok, seqs[i : i + batch_size], max_length)
            out.append(model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, n_labels))

    return predict
