"""Position frequency matrices: counting, consensus, information content, MEME I/O, Tomtom.

Convention: a PFM is ``pfm[position, letter]`` with letters in ``ACGT`` order (rows =
positions, 0-based). memelite wants ``(4, width)``; :func:`tomtom` transposes at the edge.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from .io import DataError, Progress, atomic_path

ALPHABET = "ACGT"
log = logging.getLogger("seqxai.motifs")
# queries per memelite call: Tomtom's p of a query depends on the targets only, so a chunked
# run gives the same table and a progress line per chunk (real runs: minutes in total)
TOMTOM_CHUNK = 8

def counts_from_sequences(seqs, alphabet: str = ALPHABET) -> np.ndarray:
    """Count matrix ``counts[position, letter]`` of equal-length aligned sequences;
    letters outside ``alphabet`` (N, padding) are not counted."""
    seqs = list(seqs)
    if not seqs:
        raise ValueError("counts_from_sequences: no sequences")
    width = len(seqs[0])
    if any(len(s) != width for s in seqs):
        raise ValueError("counts_from_sequences: sequences differ in length")
    lut = np.full(256, len(alphabet), dtype=np.int64)
    for i, c in enumerate(alphabet):
        lut[ord(c)] = lut[ord(c.lower())] = i
    codes = lut[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)].reshape(len(seqs), width)
    counts = np.zeros((width, len(alphabet) + 1))
    np.add.at(counts, (np.broadcast_to(np.arange(width), codes.shape), codes), 1.0)
    return counts[:, : len(alphabet)]


def frequencies(counts: np.ndarray, pseudocount: float = 0.0) -> np.ndarray:
    """Row-normalised ``(counts + pseudocount) / sum``; all-zero rows become uniform."""
    c = np.asarray(counts, dtype=float) + pseudocount
    tot = c.sum(axis=1, keepdims=True)
    return np.where(tot > 0, c / np.where(tot > 0, tot, 1), 1.0 / c.shape[1])


def information_content(pfm: np.ndarray, background=None) -> np.ndarray:
    """Per-position information in bits: ``IC_i = sum_b f_ib log2(f_ib / q_b)``
    (relative entropy to the background ``q``, uniform by default)."""
    f = frequencies(pfm)
    q = np.full(f.shape[1], 1.0 / f.shape[1]) if background is None else np.asarray(background)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(f > 0, f * np.log2(f / q), 0.0)
    return terms.sum(axis=1)


def consensus(pfm: np.ndarray, alphabet: str = ALPHABET) -> str:
    """Argmax letter per position (ties -> first letter in ACGT order)."""
    return "".join(alphabet[i] for i in np.argmax(np.asarray(pfm), axis=1))


def best_match(consensus_seq: str, target: str) -> tuple[int, int]:
    """Best-matching ``len(target)``-wide window of ``consensus_seq`` (same strand):
    returns ``(mismatches, 0-based start)``; ties -> leftmost. Consensus shorter than the
    target -> ``(len(target), -1)``."""
    w = len(target)
    if len(consensus_seq) < w:
        return w, -1
    a = np.frombuffer(consensus_seq.upper().encode(), dtype=np.uint8)
    b = np.frombuffer(target.upper().encode(), dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(a, w)
    mism = (windows != b).sum(axis=1)
    start = int(np.argmin(mism))
    return int(mism[start]), start


def write_meme(path, pfms: dict, nsites=None, background=None) -> None:
    """Write ``{name: pfm[position, ACGT]}`` (counts or frequencies; rows are normalised)
    in MEME minimal format (readable by ``memelite.io.read_meme`` and the MEME suite).
    ``nsites``: int for all, dict per name, or None (row sums of the matrix)."""
    bg = np.full(4, 0.25) if background is None else np.asarray(background, float)
    lines = ["MEME version 4", "", f"ALPHABET= {ALPHABET}", "", "strands: + -", "",
             "Background letter frequencies",
             " ".join(f"{a} {q:.4f}" for a, q in zip(ALPHABET, bg)), ""]
    for name, pfm in pfms.items():
        pfm = np.asarray(pfm, dtype=float)
        if pfm.ndim != 2 or pfm.shape[1] != 4 or pfm.shape[0] == 0:
            raise DataError(f"{path}: motif '{name}' must have shape (width, 4), got {pfm.shape}")
        if " " in str(name) or not str(name):
            raise DataError(f"{path}: motif name '{name}' must be non-empty without spaces")
        n = nsites.get(name) if isinstance(nsites, dict) else nsites
        n = int(round(pfm.sum(axis=1).max())) if n is None else int(n)
        f = frequencies(pfm)
        lines.append(f"MOTIF {name}")
        lines.append(f"letter-probability matrix: alength= 4 w= {pfm.shape[0]} nsites= {max(n, 1)} E= 0")
        lines.extend(" ".join(f"{x:.6f}" for x in row) for row in f)
        lines.append("")
    with atomic_path(path, suffix=".meme") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_meme(path) -> dict[str, np.ndarray]:
    """Read a MEME file into ``{motif id: pfm[position, ACGT]}`` (frequencies).

    Uses ``memelite.io.read_meme``; the key is the motif id (first word of the MOTIF line).
    """
    from memelite.io import read_meme as _read

    try:
        raw = _read(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable MEME file ({exc})") from exc
    if not raw:
        raise DataError(f"{path}: no MOTIF records")
    out = {}
    for key, pwm in raw.items():
        name = key.split()[0]
        if name in out:
            raise DataError(f"{path}: duplicate MOTIF id '{name}'")
        out[name] = np.asarray(pwm, dtype=float).T.copy()
    return out


def tomtom(queries: dict, targets: dict, pseudocount: float = 0.01, every: float = 10.0) -> pd.DataFrame:
    """Tomtom (memelite, complete score, both target strands) of every query against every
    target. Inputs are ``{name: pfm[position, ACGT]}``; rows are normalised with a small
    pseudocount. Returns one row per (query, target): ``query, target, p, e, q, score,
    offset, overlap, orientation`` where ``e = p * n_targets`` (MEME's E-value) and ``q`` is
    the Benjamini-Hochberg adjusted p over all query x target pairs.

    Note: memelite's background is built from the target columns, so with a handful of
    targets (demo) the p-values are indicative only (memelite warns below 25 targets).
    Queries run in chunks of ``TOMTOM_CHUNK`` (the p of a query does not depend on the other
    queries), with a progress line (count, rate, eta) at most every ``every`` seconds.
    """
    from memelite import tomtom as _tomtom
    from statsmodels.stats.multitest import multipletests

    if not queries or not targets:
        return pd.DataFrame(columns=["query", "target", "p", "e", "q", "score", "offset",
                                     "overlap", "orientation"])
    qn, tn = list(queries), list(targets)
    Q = [np.asfortranarray(frequencies(queries[k], pseudocount).T) for k in qn]
    T = [np.ascontiguousarray(frequencies(targets[k], pseudocount).T) for k in tn]
    log.info("Tomtom: %d query matrices against %d targets (%d pairs)", len(Q), len(T), len(Q) * len(T))
    prog = Progress(len(Q), "Tomtom query matrices", every=every, logger=log)
    parts = []
    for k in range(0, len(Q), TOMTOM_CHUNK):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few-target warning; documented above
            parts.append([np.asarray(x) for x in _tomtom(Q[k:k + TOMTOM_CHUNK], T, n_jobs=1)])
        prog.update(len(Q[k:k + TOMTOM_CHUNK]))
    p, score, offset, overlap, strand = (np.concatenate([part[i] for part in parts]) for i in range(5))
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    rows = pd.DataFrame({
        "query": np.repeat(qn, len(tn)),
        "target": np.tile(tn, len(qn)),
        "p": p.ravel(),
        "e": p.ravel() * len(tn),
        "score": np.asarray(score, float).ravel(),
        "offset": np.asarray(offset).astype(int).ravel(),
        "overlap": np.asarray(overlap).astype(int).ravel(),
        "orientation": np.where(np.asarray(strand).ravel() == 0, "+", "-"),
    })
    rows["q"] = multipletests(rows.p.to_numpy(), method="fdr_bh")[1] if len(rows) else []
    return rows[["query", "target", "p", "e", "q", "score", "offset", "overlap", "orientation"]]


DECOY_TAG = "~decoy"


def column_shuffled_decoys(targets: dict, n_decoys: int, seed: int) -> dict[str, np.ndarray]:
    """``n_decoys`` copies of every target with its positions (rows) permuted, seeded:
    the same letter composition per column, no positional order. Named ``<target>~decoy<k>``.

    A permutation whose consensus is the target's own or its reverse complement's is drawn
    again (up to ``max_redraws`` times): for an A/T-only target such as TATAAT one permutation
    in ten is the target itself (3! 3! / 6! per strand), and such a "decoy" matches every real
    hit as well as the target does."""
    rng = np.random.default_rng(seed)
    out = {}
    max_redraws = 100
    for name, target in targets.items():
        pfm = np.asarray(target, dtype=float)
        own = {consensus(pfm), consensus(pfm[::-1, ::-1])}   # ACGT reversed = complement
        for k in range(n_decoys):
            for _ in range(max_redraws):
                decoy = pfm[rng.permutation(len(pfm))]
                if consensus(decoy) not in own:
                    break
            out[f"{name}{DECOY_TAG}{k}"] = decoy
    return out


def tomtom_with_decoys(queries: dict, targets: dict, n_decoys: int = 20, seed: int = 0,
                       pseudocount: float = 0.01) -> pd.DataFrame:
    """:func:`tomtom` of every query against ``targets`` and their column-shuffled decoys in one
    run (one background), one row per real (query, target) pair with two more columns:

    - ``decoy_p`` = (1 + #{decoys of this target matching the query with p' <= p}) / (1 + n):
      is the match better than the same columns in a random order? A query that matches an
      A/T-rich target only through its composition matches the target's decoys as well
      (``decoy_p`` near 1 or above ~0.5);
    - ``decoy_fdr``: per query, the target-decoy estimate of the false discovery rate at this
      pair's p, (#decoy pairs with p' <= p / n) / #real pairs with p' <= p, made monotone.

    ``q`` stays the Benjamini-Hochberg adjusted p over the real pairs only.
    """
    from statsmodels.stats.multitest import multipletests

    cols = ["query", "target", "p", "e", "q", "score", "offset", "overlap", "orientation",
            "decoy_p", "decoy_fdr"]
    if not queries or not targets:
        return pd.DataFrame(columns=cols)
    if any(DECOY_TAG in str(t) for t in targets):
        raise ValueError(f"target names must not contain '{DECOY_TAG}'")
    decoys = column_shuffled_decoys(targets, n_decoys, seed)
    rows = tomtom(queries, {**targets, **decoys}, pseudocount)
    is_decoy = rows["target"].str.contains(DECOY_TAG, regex=False)
    real, dec = rows[~is_decoy].copy(), rows[is_decoy].copy()
    real["e"] = real["p"] * len(targets)
    real["q"] = multipletests(real["p"].to_numpy(), method="fdr_bh")[1]
    dec["target"] = dec["target"].str.split(DECOY_TAG, regex=False).str[0]
    dec_p = {key: np.sort(g["p"].to_numpy()) for key, g in dec.groupby(["query", "target"])}
    real["decoy_p"] = [(1 + np.searchsorted(dec_p[(qn, tn)], p, side="right")) / (1 + n_decoys)
                       for qn, tn, p in zip(real["query"], real["target"], real["p"])]
    fdr = np.empty(len(real))
    for _, idx in real.groupby("query").indices.items():
        p = real["p"].to_numpy()[idx]
        dq = np.sort(dec[dec["query"] == real["query"].iat[idx[0]]]["p"].to_numpy())
        order = np.argsort(p, kind="stable")
        n_real = np.arange(1, len(p) + 1)
        n_dec = np.searchsorted(dq, p[order], side="right") / max(n_decoys, 1)
        est = np.minimum(1.0, n_dec / n_real)
        est = np.minimum.accumulate(est[::-1])[::-1]  # monotone in p
        out = np.empty(len(p))
        out[order] = est
        fdr[idx] = out
    real["decoy_fdr"] = fdr
    return real[cols].reset_index(drop=True)


def draw_logo(ax, pfm: np.ndarray, title: str = "", start: int = 0):
    """Information-content logo (logomaker) of ``pfm[position, ACGT]`` on ``ax``; x axis
    labelled from ``start``. Returns the logomaker Logo."""
    import logomaker

    f = frequencies(pfm, 0.0)
    ic = information_content(f)
    df = pd.DataFrame(f * ic[:, None], columns=list(ALPHABET), index=np.arange(start, start + len(f)))
    logo = logomaker.Logo(df, ax=ax, color_scheme="classic")
    ax.set_ylim(0, 2)
    ax.set_ylabel("bits")
    if title:
        ax.set_title(title, fontsize=8)
    return logo
