"""The TSS probe's background: A/T-matched random non-TSS positions, the attention at a head's
peak offset around them, and the test that tells a sequence-driven head from a positional one."""
from __future__ import annotations

import numpy as np

from .io import DataError

#: upstream window whose A/T share the background positions match (TSS-relative, inclusive)
AT_WINDOW = (-40, 0)
AT_BINS = 10


def at_share(tokens: np.ndarray, t: np.ndarray, window: tuple[int, int] = AT_WINDOW) -> np.ndarray:
    """A/T share of the bases at offsets ``window`` around each oriented index ``t`` of one
    strand's ``tokens`` (positions outside the strand count as neither)."""
    at = np.concatenate([[0], np.cumsum((tokens == 0) | (tokens == 3))])
    lo = np.clip(t + window[0], 0, len(tokens))
    hi = np.clip(t + window[1] + 1, 0, len(tokens))
    return (at[hi] - at[lo]) / (window[1] - window[0] + 1)


def background_positions(t_index: np.ndarray, strands: np.ndarray, length: int, n: int, min_distance: int,
                         label_offset: int, seed: int = 0, tokens: dict | None = None,
                         match_at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random pseudo-TSSs (oriented 0-based index, strand; strands 50/50, seeded) at least
    ``min_distance`` nt from every annotated TSS on the same strand, with the predicting query
    ``t + label_offset`` inside the strand. The background of a sequence-driven head: its
    profile around these positions should lack the peak it shows around TSSs.

    With ``tokens`` and ``match_at`` (the A/T shares of :data:`AT_WINDOW` at the probed TSSs),
    the positions are drawn per A/T decile of ``match_at`` in its proportions, so that promoters'
    A/T richness alone cannot separate TSSs from background (a head that attends A/T-rich DNA
    wherever it is does not look sequence-driven at a TSS)."""
    rng = np.random.default_rng(seed)
    edges = None
    if match_at is not None and len(match_at):
        edges = np.unique(np.quantile(match_at, np.linspace(0, 1, AT_BINS + 1)))
        want = np.histogram(match_at, edges)[0] / len(match_at)
    out_t, out_s = [], []
    for strand in ("+", "-"):
        ok = np.ones(length, dtype=bool)
        ok[max(length - label_offset, 0):] = False
        for t in t_index[strands == strand]:
            ok[max(t - min_distance, 0) : t + min_distance + 1] = False
        cand = np.flatnonzero(ok)
        k = n // 2 + (n % 2 if strand == "+" else 0)
        if len(cand) < k:
            raise DataError(f"dna.probe.n_background = {n}: only {len(cand)} positions on strand {strand} lie "
                            f">= {min_distance} nt from every TSS")
        if edges is None:
            out_t.append(np.sort(rng.choice(cand, size=k, replace=False)))
        else:
            share = at_share(tokens[strand], cand)
            b = np.clip(np.searchsorted(edges, share, side="right") - 1, 0, len(edges) - 2)
            per_bin = rng.multinomial(k, want)
            pick = []
            for j, m in enumerate(per_bin):
                pool = cand[b == j]
                if len(pool) < m:
                    raise DataError(f"dna.probe.n_background = {n}: only {len(pool)} candidate positions on "
                                    f"strand {strand} have the A/T share of the TSSs' decile {j + 1}")
                pick.append(rng.choice(pool, size=m, replace=False))
            out_t.append(np.sort(np.concatenate(pick)))
        out_s.append(np.full(k, strand))
    return np.concatenate(out_t).astype(np.int64), np.concatenate(out_s)


def attention_at_offset(attn_rows: np.ndarray, key_offset: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``a[position, layer, head]`` = each position's attention at that head's offset
    ``offset[layer, head]`` (0 where no key maps to it)."""
    n, nl, nh = attn_rows.shape[:3]
    out = np.zeros((n, nl, nh))
    for l in range(nl):
        for h in range(nh):
            k = np.flatnonzero(key_offset == offset[l, h])
            if len(k):
                out[:, l, h] = attn_rows[:, l, h, k[0]]
    return out


def peak_vs_background_p(at_tss: np.ndarray, at_background: np.ndarray) -> np.ndarray:
    """One-sided Mann-Whitney U p per head: is the attention at the head's peak offset larger
    around TSSs (``at_tss[tss, layer, head]``) than around random non-TSS positions
    (``at_background[position, layer, head]``)? NaN without background positions."""
    from scipy.stats import mannwhitneyu

    if not len(at_background) or not len(at_tss):
        return np.full(at_tss.shape[1:], np.nan)
    return mannwhitneyu(at_tss, at_background, alternative="greater", axis=0).pvalue


def sequence_driven(profile_at_peak: np.ndarray, background_at_peak: np.ndarray, ratio: float,
                    p: np.ndarray | None = None, alpha: float = 0.01) -> np.ndarray:
    """A head is sequence-driven when its mean attention at its TSS peak offset is at least
    ``ratio`` times its mean attention at that offset around random non-TSS positions and,
    when ``p`` (:func:`peak_vs_background_p`) is given, significantly larger (p < alpha): the
    peak comes with the promoter's sequence, not with the distance from the query. False where
    no background was computed (NaN)."""
    bg = np.asarray(background_at_peak, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(bg) & (np.asarray(profile_at_peak, dtype=float) >= ratio * bg)
        if p is not None:
            ok &= np.asarray(p, dtype=float) < alpha
    return ok
