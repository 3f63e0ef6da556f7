"""TF-MoDISco (modisco-lite) motifs from the DNA model's integrated gradients, matched with
Tomtom like the attention-derived motifs, and both sources side by side.

Conventions
-----------
- Inputs: ``onehot[window, L, ACGT]`` and ``hypothetical[window, L, ACGT]``
  (:mod:`seqxai.dna_attribution`) of the TSS windows whose integrated gradients converged
  (``converged``: relative completeness delta within ``dna.attribution.delta_tolerance``);
  TF-MoDISco scores seqlets by ``onehot * hypothetical``. A window whose attributions do not
  add up to its logit change is left out, never used as a fallback: with none left the
  tables are empty and the summary says why.
- A pattern is named ``{metacluster}_pattern_{i}`` (``pos``: positive contribution, ``neg``:
  negative), as modisco-lite's own report. Its ``ppm[position, ACGT]`` (seqlet base
  frequencies) and ``cwm[position, ACGT]`` (mean contribution) are trimmed as modisco-lite's
  report trims them: to the positions whose summed |CWM| reaches ``trim_threshold`` x its
  maximum (first to last such position). The trimmed PPM is what Tomtom matches.
- Seeds: modisco-lite 3.0.0's TFMoDISco takes no seed argument; it seeds itself (Leiden runs
  with seeds 1..n_leiden_runs, null distributions and subsamples with 1234), so a run is
  reproducible as it is.
- Side-by-side table: one row per motif of either source (``attention`` head ``L{l}H{h}`` of
  the probe, or ``modisco`` pattern) with its best Tomtom target. ``q`` is Benjamini-Hochberg
  within each source's own Tomtom run (attention: heads x targets, as ``tomtom.parquet``;
  modisco: patterns x targets), so the attention rows equal the probe's table. An attention
  head's best target is taken among its *reported* matches only (``tomtom.parquet`` column
  ``reported``: information content above the null's floor, q and the decoy test below alpha,
  :func:`seqxai.tf_probe.reported_matches`); a head with none has no target ("no match").
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .io import DataError
from .motifs import consensus, tomtom

log = logging.getLogger("seqxai.dna_modisco")

DEFAULT_MODISCO = {"sliding_window_size": 21, "flank_size": 10, "min_metacluster_size": 100,
                   "max_seqlets_per_metacluster": 20000, "target_seqlet_fdr": 0.2, "n_leiden_runs": 50,
                   "trim_to_window_size": 30, "initial_flank_to_add": 10, "final_min_cluster_size": 20,
                   "trim_threshold": 0.3}
# settings that are not TFMoDISco arguments
_OWN = {"trim_threshold"}
PATTERN_COLUMNS = ["pattern", "metacluster", "n_seqlets", "consensus", "width", "trim_start", "ppm", "cwm"]
MATCH_COLUMNS = ["source", "motif", "consensus", "n_sites", "target", "p", "q", "orientation", "offset",
                 "significant"]


def trim(ppm: np.ndarray, cwm: np.ndarray, threshold: float = 0.3) -> tuple[int, int]:
    """``(start, end)`` (0-based, half-open) of the positions from the first to the last whose
    ``sum_b |cwm[i, b]| >= threshold * max_i sum_b |cwm[i, b]|`` (modisco-lite's report)."""
    score = np.abs(cwm).sum(axis=1)
    ok = np.flatnonzero(score >= threshold * score.max())
    return int(ok.min()), int(ok.max()) + 1


def find_patterns(onehot: np.ndarray, hypothetical: np.ndarray, settings: dict | None = None
                  ) -> tuple[pd.DataFrame, str]:
    """Run modisco-lite's TFMoDISco; returns ``(patterns, reason)`` with one row per pattern
    (:data:`PATTERN_COLUMNS`; ``ppm``/``cwm`` trimmed, as lists of rows) and ``reason`` = why
    the table is empty ("" when it is not)."""
    s = {**DEFAULT_MODISCO, **(settings or {})}
    empty = pd.DataFrame(columns=PATTERN_COLUMNS)
    onehot = np.asarray(onehot, dtype=np.float32)
    hypothetical = np.asarray(hypothetical, dtype=np.float32)
    if onehot.shape != hypothetical.shape or onehot.ndim != 3 or onehot.shape[-1] != 4:
        raise ValueError(f"onehot {onehot.shape} and hypothetical {hypothetical.shape} must both be "
                         "(n, L, 4)")
    seqlet = s["sliding_window_size"] + 2 * s["flank_size"]
    if len(onehot) == 0:
        return empty, "no attributed window"
    if onehot.shape[1] < seqlet:
        return empty, (f"windows of {onehot.shape[1]} nt are shorter than one seqlet (sliding_window_size + "
                       f"2 x flank_size = {seqlet})")
    if not np.abs(onehot * hypothetical).sum() > 0:
        return empty, "all contributions are zero"
    from modiscolite.tfmodisco import TFMoDISco

    # Threads: set NUMBA_NUM_THREADS before numba is imported (the rule script does). Calling
    # numba.set_num_threads here would start numba's threading layer before modisco-lite's
    # precompile step, which then neither forks nor uses its on-disk kernel cache, and every
    # run would recompile its kernels (measured: 26 s instead of 3 s on the planted-motif test).
    kw = {k: v for k, v in s.items() if k not in _OWN}
    try:
        pos, neg = TFMoDISco(onehot, hypothetical, **kw)
    except (ValueError, IndexError) as exc:
        # modisco-lite fails inside seqlet calling when too few windows pass its null (tiny inputs)
        log.warning("TFMoDISco found no seqlets: %s", exc)
        return empty, (f"TF-MoDISco failed to call seqlets on {len(onehot)} windows "
                       f"({type(exc).__name__}: {exc})")
    rows = []
    for name, patterns in (("pos", pos), ("neg", neg)):
        for i, p in enumerate(patterns or []):
            ppm, cwm = np.asarray(p.sequence, float), np.asarray(p.contrib_scores, float)
            a, b = trim(ppm, cwm, s["trim_threshold"])
            rows.append({"pattern": f"{name}_pattern_{i}", "metacluster": name, "n_seqlets": len(p.seqlets),
                         "consensus": consensus(ppm[a:b]), "width": b - a, "trim_start": a,
                         "ppm": ppm[a:b].tolist(), "cwm": cwm[a:b].tolist()})
    if not rows:
        return empty, (f"TF-MoDISco found no pattern on {len(onehot)} windows of {onehot.shape[1]} nt "
                       f"(too few seqlets per metacluster: min_metacluster_size {s['min_metacluster_size']}, "
                       f"final_min_cluster_size {s['final_min_cluster_size']})")
    return pd.DataFrame(rows, columns=PATTERN_COLUMNS), ""


def converged_windows(windows: pd.DataFrame, kind: str = "tss", source: str = "windows table"
                      ) -> tuple[pd.DataFrame, int]:
    """The windows of ``kind`` whose IG converged, and how many of that kind did not."""
    if "converged" not in windows.columns:
        raise DataError(f"{source}: no column 'converged' (written by the attribute_dna rule); "
                        "rerun attribute_dna")
    df = windows[windows.kind == kind]
    ok = df.converged.astype(bool)
    return df[ok], int((~ok).sum())


def modisco_inputs(windows: pd.DataFrame, kind: str = "tss") -> tuple[np.ndarray, np.ndarray]:
    """``(onehot[window, L, 4], hypothetical[window, L, 4])`` (float32) of the windows of
    ``kind`` in an attribution table (:func:`seqxai.dna_attribution.attribute_tss`); N is an
    all-zero row."""
    df = windows[windows.kind == kind]
    if len(df) == 0:
        return np.zeros((0, 0, 4), np.float32), np.zeros((0, 0, 4), np.float32)
    lut = np.full(256, 4, dtype=np.int64)
    for i, c in enumerate("ACGT"):
        lut[ord(c)] = i
    codes = np.stack([lut[np.frombuffer(s.encode("ascii"), dtype=np.uint8)] for s in df.sequence])
    oh = (codes[..., None] == np.arange(4)).astype(np.float32)
    hyp = np.stack(df.hypothetical.to_numpy()).reshape(oh.shape).astype(np.float32)
    return oh, hyp


def pattern_pfms(patterns: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{pattern: ppm[position, ACGT]}`` of the trimmed patterns."""
    return {r.pattern: np.asarray(r.ppm, float) for r in patterns.itertuples(index=False)}


def best_matches(tt: pd.DataFrame, query_col: str = "query") -> pd.DataFrame:
    """The lowest-p target per query of a :func:`seqxai.motifs.tomtom` table (ties: table order)."""
    if len(tt) == 0:
        return tt
    return tt.sort_values("p", kind="stable").groupby(query_col, sort=False).head(1)


def side_by_side(attention_motifs: pd.DataFrame, attention_tomtom: pd.DataFrame, patterns: pd.DataFrame,
                 targets: dict, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table of both motif sources with their best Tomtom match (:data:`MATCH_COLUMNS`),
    attention heads first (layer, head order), then patterns; and the full Tomtom table of the
    patterns. ``attention_motifs``/``attention_tomtom``: the probe's ``head_motifs`` and
    ``tomtom`` tables."""
    pfms = pattern_pfms(patterns)
    tt = tomtom(pfms, targets)
    rows = []
    # only reported matches (information above the null floor, decoy test passed: the probe's
    # tomtom column "reported"); a head without one gets no "best" target
    reported = (attention_tomtom[attention_tomtom["reported"].astype(bool)]
                if "reported" in attention_tomtom else attention_tomtom)
    att = best_matches(reported.assign(query=[f"L{l}H{h}" for l, h in zip(reported.layer, reported["head"])]))
    att = att.set_index("query")
    for r in attention_motifs.sort_values(["layer", "head"]).itertuples(index=False):
        name = f"L{r.layer}H{r.head}"
        m = att.loc[name] if name in att.index else None
        rows.append(_row("attention", name, r.consensus, int(r.n_sites), m, alpha))
    mod = best_matches(tt).set_index("query") if len(tt) else None
    for r in patterns.itertuples(index=False):
        m = mod.loc[r.pattern] if mod is not None and r.pattern in mod.index else None
        rows.append(_row("modisco", r.pattern, r.consensus, int(r.n_seqlets), m, alpha))
    return pd.DataFrame(rows, columns=MATCH_COLUMNS), tt


def _row(source, name, cons, n, m, alpha):
    if m is None:
        return {"source": source, "motif": name, "consensus": cons, "n_sites": n, "target": None, "p": np.nan,
                "q": np.nan, "orientation": None, "offset": None, "significant": False}
    return {"source": source, "motif": name, "consensus": cons, "n_sites": n, "target": m["target"],
            "p": float(m["p"]), "q": float(m["q"]), "orientation": m["orientation"],
            "offset": int(m["offset"]),
            "significant": bool(m["q"] < alpha)}


def run_modisco(windows_path, tf_motifs_path, head_motifs_path, attention_tomtom_path, sigma70_path,
                out: dict, settings=None, alpha: float = 0.05) -> dict:
    """File-level entry point of the ``dna_modisco`` rule: ``out`` maps patterns, meme,
    tomtom, matches, summary to paths. Tomtom targets: the TF matrices and the sigma-70
    references the probe estimated (``sigma70_path``, MEME). An empty result (no pattern) writes empty tables and
    the reason in the summary."""
    from .io import read_table, write_json, write_table, write_text
    from .motifs import read_meme, write_meme

    windows, n_dropped = converged_windows(read_table(windows_path), "tss", str(windows_path))
    onehot, hyp = modisco_inputs(windows, "tss")
    log.info("TF-MoDISco on %d TSS windows of %d nt whose attributions converged (integrated gradients; "
             "AttnLRP and gradient x input: every window); %d left out "
             "(relative delta above dna.attribution.delta_tolerance at max_steps)", len(onehot),
             onehot.shape[1] if len(onehot) else 0, n_dropped)
    if n_dropped:
        log.warning("%d TSS windows left out of TF-MoDISco: their integrated gradients did not converge",
                    n_dropped)
    if len(onehot) == 0 and n_dropped:
        patterns, reason = pd.DataFrame(columns=PATTERN_COLUMNS), (
            f"none of the {n_dropped} TSS windows' integrated gradients converged "
            "(raise dna.attribution.max_steps)")
    else:
        patterns, reason = find_patterns(onehot, hyp, settings)
    if reason:
        log.warning("no TF-MoDISco pattern: %s", reason)
    targets = {**read_meme(tf_motifs_path), **read_meme(sigma70_path)}
    matches, tt = side_by_side(read_table(head_motifs_path), read_table(attention_tomtom_path), patterns,
                               targets, alpha)
    write_table(out["patterns"], patterns)
    if len(patterns):
        write_meme(out["meme"], pattern_pfms(patterns),
                   nsites=dict(zip(patterns.pattern, patterns.n_seqlets)))
    else:  # a MEME file without motifs: header only
        write_text(out["meme"], "MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n"
                   "Background letter frequencies\nA 0.2500 C 0.2500 G 0.2500 T 0.2500\n")
    write_table(out["tomtom"], tt)
    write_table(out["matches"], matches)
    mod = matches[matches.source == "modisco"]
    records = mod[["motif", "consensus", "n_sites", "target", "p", "q"]].to_dict("records")
    summary = {"n_windows": len(onehot), "n_windows_not_converged": n_dropped,
               "n_patterns": len(patterns),
               "empty_reason": reason or None,
               "settings": {**DEFAULT_MODISCO, **(settings or {})}, "alpha": alpha,
               "n_targets": len(targets),
               "patterns": [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                            for r in records],
               "targets_matched": {src: sorted(set(matches[(matches.source == src)
                                                           & matches.significant].target))
                                   for src in ("attention", "modisco")}}
    write_json(out["summary"], summary)
    log.info("%d patterns; matched targets (q < %g): %s", len(patterns), alpha, summary["targets_matched"])
    return summary
