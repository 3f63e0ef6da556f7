"""Per-protein scores of relevance against a residue annotation: the annotation masks, the
point-biserial r and rank accuracy, and the composition-keeping permutations of a mask."""
from __future__ import annotations

import numpy as np
import pandas as pd


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
