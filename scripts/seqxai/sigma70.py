"""Sigma-70 -10 and -35 box matrices estimated from the promoters of the run's own TSS table.

The TSS probe matches attention-derived head matrices against reference matrices of the two
sigma-70 boxes. Instead of hand-written matrices, the references are estimated from the
promoters themselves: each promoter (TSS at offset 0, the first transcribed base; -1 the base
upstream) contributes one -10 box (6 nt, start offset in ``minus10_starts``) and one -35 box
(6 nt) placed ``spacer`` nt upstream of it (``spacer`` = bases between the -35 box's last base
and the -10 box's first, 15..19 as in the literature). The boxes are aligned by hard EM
(one occurrence per promoter): start from the textbook consensus TATAAT / TTGACA, place every
promoter's pair of boxes where the summed log-odds score of both matrices (against the
windows' own base composition) is largest, re-estimate the counts from those placements, and
repeat until no placement changes. The consensus only seeds the search; the returned matrices
are the counts of the aligned boxes.

Offsets are relative to the TSS on the TSS's strand (5'->3'); token codes are those of
:mod:`seqxai.dna_model` (A, C, G, T = 0..3, N = 4).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .io import DataError
from .tss_windows import oriented_tokens, oriented_tss_index, tokenize

log = logging.getLogger("seqxai.sigma70")

BOX = 6
SEED_CONSENSUS = {"minus10": "TATAAT", "minus35": "TTGACA"}
#: reference matrix names (Tomtom targets)
NAMES = {"minus10": "sigma70_minus10", "minus35": "sigma70_minus35"}


def promoter_windows(genome_seq: str, tss: pd.DataFrame, upstream: int, downstream: int) -> np.ndarray:
    """tokens[promoter, offset + upstream] for offsets -upstream..downstream-1 around each TSS
    (on its strand); TSSs whose window leaves the chromosome are left out."""
    toks = oriented_tokens(genome_seq)
    idx = oriented_tss_index(tss, len(genome_seq))
    rows = []
    for strand in ("+", "-"):
        t = idx[strand]
        t = t[(t - upstream >= 0) & (t + downstream <= len(genome_seq))]
        if len(t):
            rows.append(toks[strand][t[:, None] + np.arange(-upstream, downstream)[None, :]])
    return np.concatenate(rows) if rows else np.zeros((0, upstream + downstream), dtype=np.int64)


def _log_odds(counts: np.ndarray, background: np.ndarray, pseudocount: float) -> np.ndarray:
    f = (counts + pseudocount * background) / (counts.sum(1, keepdims=True) + pseudocount)
    return np.log2(f / background)


def _box_scores(windows: np.ndarray, pwm: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """score[promoter, start] of the 6-mer beginning at window column ``start``; N scores -inf."""
    pad = np.vstack([pwm.T, np.full((1, BOX), -np.inf)])  # [letter (+N), position]
    cols = starts[:, None] + np.arange(BOX)[None, :]  # [start, position]
    return pad[windows[:, cols], np.arange(BOX)[None, None, :]].sum(-1)


def align_boxes(windows: np.ndarray, upstream: int, minus10_starts=(-16, -8), spacers=(15, 19),
                pseudocount: float = 0.5, max_iter: int = 50) -> dict:
    """Hard-EM alignment of the -10 and -35 boxes in ``windows`` (tokens[promoter, column], TSS at
    column ``upstream``). Returns counts ``minus10``/``minus35`` [position, ACGT], per promoter
    ``placed`` (False where every placement crosses an N), for the placed promoters
    ``minus10_start`` (offset of the box's first base) and ``spacer``, and ``n_promoters``,
    ``iterations`` and ``converged`` (no placement changed in the last iteration)."""
    windows = np.asarray(windows)
    if len(windows) < 2:
        raise DataError(f"sigma-70 reference: {len(windows)} promoter window(s); need at least 2")
    s10 = np.arange(minus10_starts[0], minus10_starts[1] + 1)
    sp = np.arange(spacers[0], spacers[1] + 1)
    c10 = upstream + s10  # window columns of the -10 starts
    c35 = c10[:, None] - sp[None, :] - BOX  # [s10, spacer]
    if c35.min() < 0 or c10.max() + BOX > windows.shape[1]:
        raise DataError(f"sigma-70 reference: windows of {windows.shape[1]} nt (TSS at {upstream}) do not "
                        f"hold -10 starts {minus10_starts} with spacers {spacers}")
    acgt = windows[windows < 4]
    background = (np.bincount(acgt, minlength=4) + 1.0) / (len(acgt) + 4.0)
    counts = {k: np.full((BOX, 4), 0.1) for k in SEED_CONSENSUS}
    for k, cons in SEED_CONSENSUS.items():
        counts[k][np.arange(BOX), tokenize(cons)] = 0.7
    placed = None
    for it in range(1, max_iter + 1):  # noqa: B007  (the count is returned)
        sc10 = _box_scores(windows, _log_odds(counts["minus10"], background, pseudocount), c10)
        sc35 = _box_scores(windows, _log_odds(counts["minus35"], background, pseudocount), c35.ravel())
        total = sc10[:, :, None] + sc35.reshape(len(windows), len(s10), len(sp))  # [promoter, s10, spacer]
        best = np.argmax(total.reshape(len(windows), -1), axis=1)
        ok = np.isfinite(total.reshape(len(windows), -1)[np.arange(len(windows)), best])
        if placed is not None and np.array_equal(best, placed):
            break
        placed = best
        i10, isp = np.unravel_index(best[ok], (len(s10), len(sp)))
        for k, cols in (("minus10", c10[i10]), ("minus35", c35[i10, isp])):
            seqs = windows[ok][np.arange(ok.sum())[:, None], cols[:, None] + np.arange(BOX)[None, :]]
            counts[k] = np.stack([np.bincount(seqs[:, j], minlength=5)[:4] for j in range(BOX)]).astype(float)
    i10, isp = np.unravel_index(placed, (len(s10), len(sp)))
    return {"minus10": counts["minus10"], "minus35": counts["minus35"], "placed": ok,
            "minus10_start": s10[i10][ok], "spacer": sp[isp][ok],
            "n_promoters": int(ok.sum()), "iterations": it, "converged": bool(np.array_equal(best, placed))}


def sigma70_promoters(tss: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The TSS rows annotated with sigma-70 (``sigma`` containing "70", e.g. "Sigma70"), or every
    row when none is (the returned label says which)."""
    sig = tss["sigma"].astype(str) if "sigma" in tss else pd.Series("", index=tss.index)
    is70 = sig.str.contains("70", regex=False)
    if is70.any():
        return tss[is70], "sigma70-annotated promoters"
    return tss, "all promoters (no sigma-70 annotation in the TSS table)"


def sigma70_reference(genome_seq: str, tss: pd.DataFrame, upstream: int = 60, downstream: int = 20,
                      **align) -> tuple[dict[str, np.ndarray], dict]:
    """({sigma70_minus10, sigma70_minus35: counts[position, ACGT]}, provenance) estimated from the
    sigma-70 promoters of ``tss`` (see :func:`align_boxes`)."""
    rows, which = sigma70_promoters(tss)
    res = align_boxes(promoter_windows(genome_seq, rows, upstream, downstream), upstream, **align)
    sp, s10 = res["spacer"], res["minus10_start"]
    info = {"source": which, "n_promoters": res["n_promoters"], "iterations": res["iterations"],
            "converged": res["converged"],
            "spacer_counts": {int(k): int(v) for k, v in zip(*np.unique(sp, return_counts=True))},
            "minus10_start_counts": {int(k): int(v) for k, v in zip(*np.unique(s10, return_counts=True))}}
    log.info("sigma-70 reference from %d %s: %d EM iterations (converged: %s), spacer counts %s",
             info["n_promoters"], which, info["iterations"], info["converged"], info["spacer_counts"])
    return {NAMES[k]: res[k] for k in ("minus10", "minus35")}, info
