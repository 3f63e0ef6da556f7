"""summary.json: the study's headline numbers and the verdicts of the positive controls.

Positive controls (configured in ``analysis``; the demo plants the answers):
- embedding-level relevance larger inside an annotation than outside: one-sided
  Wilcoxon p < ``expect_max_p`` for each (task, group, annotation) listed;
- a head whose share of high-confidence attention on contacts is at least
  ``contact_enrichment`` times the background and at least ``contact_share``;
- a DNA head whose TSS-attention profile peaks at the -10 box with a TATAAT-like logo
  (computed by the TSS probe, copied here).
"""
from __future__ import annotations

import numpy as np

from .io import read_json, read_table


def _finite(x):
    return None if x is None or not np.isfinite(x) else float(x)


def build_summary(*, tasks, models, embedding, heads, metrics, probes, dna_metrics, dna_summary,
                  check: bool = True, expect=(), expect_max_p, min_high_confidence, contact_share=0.10,
                  contact_enrichment=5.0, variants=("finetuned",), variant_metrics=(),
                  comparison=()) -> dict:
    out: dict = {"protein": {}, "attention": {}, "positive_controls": {}}
    emb_tables = {t: read_table(p) for t, p in zip(tasks, embedding)}
    for t, hp, mp in zip(tasks, heads, metrics):
        h = read_table(hp)
        out["protein"][t] = {
            "metrics": read_json(mp),
            "embedding_tests": emb_tables[t].replace({np.nan: None}).to_dict("records"),
            "significant_heads": {f"{a} [{g}]": int(s["significant"].sum())
                                  for (a, g), s in h.groupby(["annotation", "group"])},
            "n_heads": int(len(h.drop_duplicates(["layer", "head"]))),
        }
    # Controls (METHODS.md 1): test metrics of every variant, Jaccard of significant heads.
    vm = iter(variant_metrics)
    for t in tasks if len(variants) > 1 else []:
        out["protein"][t]["variants"] = {v: read_json(next(vm)).get("test") for v in variants}
    for t, cp in zip(tasks, comparison):
        tab = read_table(cp)
        out["protein"][t]["variant_jaccard"] = [
            {**r, "jaccard": _finite(r["jaccard"])}
            for r in tab[tab["group"] == "all"].to_dict("records")]
    checks = []
    for e in expect:
        tab = emb_tables[e["task"]]
        row = tab[(tab["annotation"] == e["annotation"]) & (tab["group"] == e["group"])]
        p = _finite(row["p"].iloc[0]) if len(row) else None
        checks.append({**e, "p": p, "median_r": _finite(row["median_r"].iloc[0]) if len(row) else None,
                       "n_proteins": int(row["n_proteins"].iloc[0]) if len(row) else 0,
                       "pass": p is not None and p < expect_max_p})
    out["positive_controls"]["embedding_enrichment"] = {"max_p": expect_max_p, "checks": checks,
                                                        "pass": all(c["pass"] for c in checks)}
    best = None
    for m, pp in zip(models, probes):
        tab = read_table(pp)
        inc = tab[tab["included"]]
        per_prop = {}
        for prop, sub in inc.groupby("property"):
            b = sub.sort_values("share", ascending=False).iloc[0]
            per_prop[prop] = {"layer": int(b["layer"]), "head": int(b["head"]),
                              "share": float(b["share"]), "background": float(b["background"]),
                              "enrichment": _finite(b["enrichment"]),
                              "n_high_confidence": int(b["n_high_confidence"]),
                              "significant_heads": int(sub["significant"].sum())}
        out["attention"][m] = {"best_head": per_prop, "heads_included": int(len(inc) // max(inc["property"].nunique(), 1)),
                               "min_high_confidence": min_high_confidence}
        c = per_prop.get("contact")
        if c and (best is None or c["share"] > best["share"]):
            best = {"model": m, **c}
    out["positive_controls"]["contact_attention"] = {
        "required_share": contact_share, "required_enrichment": contact_enrichment,
        "best": best,
        "pass": bool(best and best["share"] >= contact_share
                     and (best["enrichment"] or 0) >= contact_enrichment),
    }
    dna = read_json(dna_summary)
    out["dna"] = {"metrics": read_json(dna_metrics), "probe": dna}
    pc = dna["positive_control"]
    out["positive_controls"]["dna_minus10_head"] = {**pc["minus10"],
                                                    "pass": bool(pc["minus10_head_found"])}
    verdicts = [v["pass"] for v in out["positive_controls"].values() if isinstance(v, dict)]
    # On real data the controls are numbers to read, not verdicts: nothing was planted.
    out["positive_controls"]["checked"] = bool(check)
    out["positive_controls"]["all_pass"] = all(verdicts) if check else None
    return out
