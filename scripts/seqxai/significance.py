"""Significance across proteins: the one-sided Wilcoxon signed-rank test of median > 0 and the
Benjamini-Hochberg adjustment."""
from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests


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
