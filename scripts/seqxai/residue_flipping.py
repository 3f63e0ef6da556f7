"""Residue flipping (Wenzel et al. 2024): does the model need the residues IG ranks highest?

Replace the top-n residues by embedding-level relevance with alanine, n = 1, 2, 4, ..., n_max
(each protein's n capped at its length), and re-measure the task metric on the attributed
target; compare with n residues drawn uniformly at random (several seeds). Relevance that
points at what the model uses makes accuracy fall faster than random flips do.

Metric per protein, for the attributed target t:
- single_label (EC): correct = argmax_k logit_k == t; probability = softmax(logit)_t;
- multi_label (GO): correct = sigmoid(logit_t) >= 0.5 (a hit of the selected term);
  probability = sigmoid(logit_t).
Positions: ``relevance[residue]`` runs over residues 1..L, 0-based here; the sequence
character at index r is residue r + 1.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.residue_flipping")

COLUMNS = ["n", "order", "seed", "n_proteins", "accuracy", "mean_probability"]


def flip_counts(n_max: int, max_length: int) -> list[int]:
    """1, 2, 4, ..., up to n_max and no larger than the longest protein."""
    out, n = [], 1
    while n <= min(n_max, max_length):
        out.append(n)
        n *= 2
    return out


def top_positions(relevance: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest relevances (ties: the earlier residue first)."""
    return np.argsort(-np.asarray(relevance, dtype=np.float64), kind="stable")[: min(n, len(relevance))]


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


def residue_flipping(predict: Callable[[list[str]], np.ndarray], sequences: Sequence[str],
                     relevances: Sequence[np.ndarray], target_index: Sequence[int], task_type: str,
                     n_max: int = 64, n_random: int = 5, seed: int = 0,
                     replacement: str = "A") -> pd.DataFrame:
    """Accuracy and mean target probability after flipping the top-n residues by relevance
    ("relevance") and n random residues ("random", ``n_random`` seeds), n = 0, 1, 2, 4, ...

    ``predict(sequences) -> logits[protein, label]``; ``relevances[p][residue]`` covers the
    first len(relevance) residues of sequence p (the attributed, possibly truncated part,
    where the flips are drawn). Returns one row per n, order and seed (seed -1: relevance
    order; n = 0 is the unflipped input, listed for both orders).
    """
    seqs = list(sequences)
    rels = [np.asarray(r, dtype=np.float64) for r in relevances]
    tgt = np.asarray(target_index, dtype=np.int64)
    if not (len(seqs) == len(rels) == len(tgt)):
        raise ValueError("sequences, relevances and target_index differ in length")
    for k, (s, r) in enumerate(zip(seqs, rels)):
        if len(r) > len(s):
            raise ValueError(f"protein {k}: {len(r)} relevances for {len(s)} residues")
    rows = []

    def measure(n, order, sd, flipped):
        correct, prob = score(predict(flipped), tgt, task_type)
        rows.append({"n": n, "order": order, "seed": sd, "n_proteins": len(seqs),
                     "accuracy": float(np.mean(correct)) if len(seqs) else np.nan,
                     "mean_probability": float(np.mean(prob)) if len(seqs) else np.nan})

    if not seqs:
        return pd.DataFrame(rows, columns=COLUMNS)
    measure(0, "relevance", -1, seqs)
    for k in range(n_random):
        rows.append({**rows[0], "order": "random", "seed": k})
    for n in flip_counts(n_max, max(len(r) for r in rels)):
        measure(n, "relevance", -1,
                [flip(s, top_positions(r, n), replacement) for s, r in zip(seqs, rels)])
        for k in range(n_random):
            rng = np.random.default_rng([seed, k, n])
            measure(n, "random", k,
                    [flip(s, rng.choice(len(r), min(n, len(r)), replace=False), replacement)
                     for s, r in zip(seqs, rels)])
    return pd.DataFrame(rows, columns=COLUMNS)


def run_residue_flipping(model_dir, proteins_path, splits_path, embedding_path, out_path,
                         params: dict, seed: int, device: str = "auto", batch_size: int = 16,
                         threads: int = 1) -> pd.DataFrame:
    """Flip the attributed proteins of one task with its fine-tuned model; write the table.

    ``params``: n_max, n_random, replacement. ``device``, ``batch_size`` and ``threads`` set
    the speed only.
    """
    import torch

    from .io import DataError, read_table, write_table
    from .protein_model import encode, load_classifier

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
    splits = pd.Series([split_of.get(a, "?") for a in emb["accession"]]).value_counts().to_dict()
    log.info("%d attributed proteins, splits %s", len(emb), splits)
    if splits.get("train"):
        log.warning("%d flipped proteins are from the training split: accuracy is optimistic",
                    splits["train"])

    @torch.no_grad()
    def predict(seqs: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(seqs), batch_size):
            enc = encode(tok, seqs[i : i + batch_size], meta["max_length"])
            out.append(model(enc["input_ids"].to(dev), enc["attention_mask"].to(dev)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(labels)))

    table = residue_flipping(predict, [seq_of[a] for a in emb["accession"]], list(emb["relevance"]),
                             [labels.index(t) for t in emb["target"]], meta["task"]["type"],
                             params["n_max"], params["n_random"], seed, params["replacement"])
    for n, sub in table.groupby("n", sort=True):
        rel = sub[sub["order"] == "relevance"]["accuracy"].iloc[0]
        rnd = sub[sub["order"] == "random"]["accuracy"]
        log.info("n=%d flipped: accuracy %.3f by relevance, %.3f (min %.3f) at random", n, rel,
                 rnd.mean() if len(rnd) else np.nan, rnd.min() if len(rnd) else np.nan)
    write_table(out_path, table)
    return table
