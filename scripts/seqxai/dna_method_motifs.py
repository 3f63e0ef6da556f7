"""The motifs TF-MoDISco finds on each DNA attribution method's contributions, side by side.

Conventions
-----------
- Methods in the order of ``dna.attribution.methods`` with ``ig`` first; per method the
  TF-MoDISco patterns (:mod:`seqxai.dna_modisco`, ``modisco_patterns.parquet``) and their
  Tomtom table (``modisco_tomtom.parquet``: every pattern against every target, ``q``
  Benjamini-Hochberg within that method's run).
- Targets: the sigma-70 -10 and -35 references and the TF matrices, as dna_modisco matches.
- ``pattern`` table (:data:`PATTERN_COLUMNS`): one row per method and pattern, most seqlets
  first, with its best target (lowest p) and whether that match has ``q < alpha``.
- ``target`` table (:data:`TARGET_COLUMNS`): one row per method and target: the pattern that
  matches it best (lowest q, then p; only patterns whose best target it is count, so one
  pattern names one target), its seqlets and q; ``found`` = ``q < alpha``; ``n_patterns`` and
  ``n_seqlets_all``: every pattern (positive or negative metacluster) whose best target it is
  with ``q < alpha``, and their seqlets together.
- Cost: gradient passes (one forward and one backward pass of one window) per window, from
  each method's attribution summary: IG, the Gauss-Legendre nodes it needed summed over its
  rounds (``rounds``: steps x windows) per window; attnlrp and grad_x_input, 1 (grad_x_input
  adds a no-grad forward pass of the baseline, attnlrp a dense copy of the attention for its
  rule). ``relative_to_ig`` = passes / IG's passes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

PATTERN_COLUMNS = ["method", "pattern", "metacluster", "n_seqlets", "consensus", "width", "target", "p", "q",
                   "orientation", "significant"]
TARGET_COLUMNS = ["method", "target", "pattern", "consensus", "n_seqlets", "p", "q", "found", "n_patterns",
                  "n_seqlets_all"]


def method_cost(summary: dict, method: str) -> dict:
    """Gradient passes per window of one method's attribution summary (module docstring)."""
    if method == "ig":
        rounds = summary.get("rounds") or []
        n = sum(int(v) for v in (summary.get("windows_by_steps") or {}).values())
        passes = sum(r["steps"] * r["windows"] for r in rounds) / max(n, 1)
    else:
        passes = float(summary["passes_per_window"])
    return {"method": method, "gradient_passes_per_window": float(passes)}


def pattern_rows(method: str, patterns: pd.DataFrame, tomtom: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """One method's patterns, most seqlets first, with their best Tomtom target."""
    best = (tomtom.sort_values("p", kind="stable").groupby("query", sort=False).head(1).set_index("query")
            if len(tomtom) else None)
    rows = []
    for r in patterns.sort_values("n_seqlets", ascending=False, kind="stable").itertuples(index=False):
        m = best.loc[r.pattern] if best is not None and r.pattern in best.index else None
        rows.append({"method": method, "pattern": r.pattern, "metacluster": r.metacluster,
                     "n_seqlets": int(r.n_seqlets), "consensus": r.consensus, "width": int(r.width),
                     "target": None if m is None else m["target"], "p": np.nan if m is None else float(m["p"]),
                     "q": np.nan if m is None else float(m["q"]),
                     "orientation": None if m is None else m["orientation"],
                     "significant": bool(m is not None and m["q"] < alpha)})
    return pd.DataFrame(rows, columns=PATTERN_COLUMNS)


def target_rows(method: str, table: pd.DataFrame, targets: list[str], alpha: float) -> pd.DataFrame:
    """Per target the method's pattern that matches it best (among the patterns whose best
    target it is): its seqlets and q; ``found`` = ``q < alpha``."""
    rows = []
    for t in targets:
        hits = table[table.target == t].sort_values(["q", "p"], kind="stable")
        sig = hits[hits.q < alpha]
        every = {"n_patterns": len(sig), "n_seqlets_all": int(sig.n_seqlets.sum())}
        if len(hits):
            h = hits.iloc[0]
            rows.append({"method": method, "target": t, "pattern": h.pattern, "consensus": h.consensus,
                         "n_seqlets": int(h.n_seqlets), "p": float(h.p), "q": float(h.q),
                         "found": bool(h.q < alpha), **every})
        else:
            rows.append({"method": method, "target": t, "pattern": None, "consensus": None, "n_seqlets": 0,
                         "p": np.nan, "q": np.nan, "found": False, **every})
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


def method_motifs(methods: list[str], patterns: list[pd.DataFrame], tomtom: list[pd.DataFrame],
                  summaries: list[dict], targets: list[str], alpha: float = 0.05) -> dict:
    """The side-by-side tables (module docstring): ``{"patterns", "targets", "summary"}``."""
    if not (len(methods) == len(patterns) == len(tomtom) == len(summaries)):
        raise ValueError(f"{len(methods)} methods but {len(patterns)} pattern tables, {len(tomtom)} Tomtom "
                         f"tables and {len(summaries)} attribution summaries")
    pat = [pattern_rows(m, p, t, alpha) for m, p, t in zip(methods, patterns, tomtom)]
    tgt = [target_rows(m, p, targets, alpha) for m, p in zip(methods, pat)]
    cost = [method_cost(s, m) for m, s in zip(methods, summaries)]
    ig = next((c["gradient_passes_per_window"] for c in cost if c["method"] == "ig"), None)
    for c in cost:
        c["relative_to_ig"] = c["gradient_passes_per_window"] / ig if ig else None
    summary = {"alpha": alpha, "targets": list(targets), "methods": {}}
    for m, p, t, c in zip(methods, pat, tgt, cost):
        summary["methods"][m] = {
            "n_patterns": len(p), "n_seqlets": int(p.n_seqlets.sum()) if len(p) else 0,
            "found": sorted(t.target[t.found]),
            "targets": {r.target: {"pattern": r.pattern, "n_seqlets": int(r.n_seqlets),
                                   "q": None if pd.isna(r.q) else float(r.q), "found": bool(r.found),
                                   "n_patterns": int(r.n_patterns), "n_seqlets_all": int(r.n_seqlets_all)}
                        for r in t.itertuples(index=False)},
            "gradient_passes_per_window": c["gradient_passes_per_window"], "relative_to_ig": c["relative_to_ig"]}
    empty = pd.DataFrame(columns=PATTERN_COLUMNS)
    return {"patterns": pd.concat(pat, ignore_index=True) if any(len(p) for p in pat) else empty,
            "targets": pd.concat(tgt, ignore_index=True), "summary": summary}


def run_method_motifs(methods, pattern_paths, tomtom_paths, attribution_paths, target_paths, out: dict,
                      alpha: float = 0.05, n_motifs: int = 6) -> dict:
    """File-level entry point of the ``dna_method_motifs`` rule: ``out`` maps table, targets,
    summary, figure to paths."""
    from .dna_plots import plot_method_motifs
    from .io import read_json, read_table, write_json, write_table
    from .motifs import read_meme

    patterns = [read_table(p) for p in pattern_paths]
    targets = [t for path in target_paths for t in read_meme(path)]
    res = method_motifs(list(methods), patterns, [read_table(p) for p in tomtom_paths],
                        [read_json(p) for p in attribution_paths], targets, alpha)
    write_table(out["table"], res["patterns"])
    write_table(out["targets"], res["targets"])
    write_json(out["summary"], res["summary"])
    plot_method_motifs(list(methods), patterns, res["patterns"], out["figure"], n_motifs)
    return res["summary"]
