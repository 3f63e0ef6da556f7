"""Contacts from attention (Rao et al., ICLR 2021; ESM's contact head).

Features of the pair (i, j): every layer x head attention map, special tokens removed,
symmetrised and corrected by the average product correction,

    S = A + A^T,   APC(S)_ij = S_ij - (sum_k S_ik)(sum_k S_kj) / sum_kl S_kl,

stacked into ``features[pair, layer * n_heads + head]``. A logistic regression over the
heads (L1, C = 0.15, liblinear) is fitted on a few proteins and ranks the pairs of held-out
proteins. Precision at L, L/2, L/5 (L = sequence length) counts true contacts among the
top-scored pairs of a separation range: short 6-11, medium 12-23, long >= 24. Pairs touching
an unresolved residue are never scored (their contact status is unknown).

Arrays: ``attn[layer, head, query, key]``, ``contact[i, j]`` boolean, residues 0-based.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RANGES = {"short": (6, 11), "medium": (12, 23), "long": (24, None)}
TOP = {"L": 1, "L/2": 2, "L/5": 5}


def symmetrise_apc(attn: np.ndarray) -> np.ndarray:
    """APC(A + A^T) per map: attn[..., L, L] -> same shape (ESM's symmetrize + apc)."""
    a = np.asarray(attn, dtype=np.float64)
    s = a + np.swapaxes(a, -1, -2)
    row = s.sum(-1, keepdims=True)
    col = s.sum(-2, keepdims=True)
    total = s.sum((-1, -2), keepdims=True)
    return s - row * col / total


def pair_features(attn: np.ndarray) -> np.ndarray:
    """features[i, j, layer * n_heads + head] = APC(A + A^T) of every head."""
    n_layers, n_heads, n, _ = attn.shape
    f = symmetrise_apc(attn).reshape(n_layers * n_heads, n, n)
    return np.moveaxis(f, 0, -1).astype(np.float32)


def scored_pairs(n: int, resolved: np.ndarray | None = None, min_separation: int = 6):
    """0-based (i, j), i < j, j - i >= min_separation, both residues resolved."""
    i, j = np.triu_indices(n, k=min_separation)
    if resolved is not None:
        ok = np.asarray(resolved, bool)
        keep = ok[i] & ok[j]
        i, j = i[keep], j[keep]
    return i, j


class ContactRegression:
    """L1 logistic regression over stacked heads (Rao et al.): fit on a few proteins."""

    def __init__(self, C: float = 0.15, seed: int = 0, min_separation: int = 6):
        self.C, self.seed, self.min_separation = C, seed, min_separation
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self.model = None

    def add_training(self, attn: np.ndarray, contact: np.ndarray, resolved=None) -> None:
        """Keep the scored pairs' features of one training protein."""
        i, j = scored_pairs(attn.shape[-1], resolved, self.min_separation)
        self._x.append(pair_features(attn)[i, j])
        self._y.append(np.asarray(contact, bool)[i, j])

    @property
    def n_training(self) -> int:
        return len(self._x)

    def fit(self) -> ContactRegression:
        from sklearn.linear_model import LogisticRegression

        x, y = np.concatenate(self._x), np.concatenate(self._y)
        if y.all() or not y.any():
            raise ValueError(f"contact regression: the {self.n_training} training proteins have "
                             f"{int(y.sum())} contacts among {len(y)} pairs; need both classes")
        self.model = LogisticRegression(l1_ratio=1.0, C=self.C, solver="liblinear",
                                        random_state=self.seed, max_iter=1000).fit(x, y)
        self._x, self._y = [], []  # training features are no longer needed
        return self

    def predict(self, attn: np.ndarray) -> np.ndarray:
        """prob[i, j] of contact (symmetric) for one protein."""
        n = attn.shape[-1]
        prob = self.model.predict_proba(pair_features(attn).reshape(n * n, -1))[:, 1]
        return prob.reshape(n, n)


def precision_at(score: np.ndarray, contact: np.ndarray, resolved=None,
                 min_separation: int = 6) -> dict[str, float]:
    """{"long P@L/5": ..., ...}: precision of the top L/k pairs (i < j) per separation range.

    Only pairs with both residues resolved are ranked; ties keep the lower (i, j) first.
    """
    n = score.shape[-1]
    i, j = scored_pairs(n, resolved, min_separation)
    sep = j - i
    s, c = np.asarray(score)[i, j], np.asarray(contact, bool)[i, j]
    out = {}
    for rng, (lo, hi) in RANGES.items():
        m = (sep >= lo) & ((sep <= hi) if hi is not None else True)
        order = np.argsort(-s[m], kind="stable")
        cm = c[m][order]
        for label, k in TOP.items():
            top = max(n // k, 1)
            out[f"{rng} P@{label}"] = float(cm[:top].mean()) if len(cm) else np.nan
    return out


def contact_rate(contact: np.ndarray, resolved=None, min_separation: int = 24) -> tuple[int, int]:
    """(contacts, pairs) among resolved pairs with j - i >= min_separation (the background)."""
    i, j = scored_pairs(contact.shape[-1], resolved, min_separation)
    return int(np.asarray(contact, bool)[i, j].sum()), len(i)


def precision_table(rows: list[dict]) -> pd.DataFrame:
    """Per-protein precision rows -> the table plus a ``mean`` row (unweighted over proteins),
    one per ``method`` (and split) when the rows name one."""
    df = pd.DataFrame(rows)
    if not len(df):
        return df
    keys = [k for k in ("method", "split") if k in df.columns]
    groups = df.groupby(keys, sort=False) if keys else [((), df)]
    means = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        num = g.drop(columns=[c for c in ("length", "n_train") if c in g]).select_dtypes("number").mean()
        means.append({**num.to_dict(), **dict(zip(keys, key)), "accession": "mean", "length": np.nan,
                      **({"n_train": g["n_train"].iloc[0]} if "n_train" in g else {})})
    return pd.concat([df, pd.DataFrame(means)], ignore_index=True)[df.columns]
