"""Seed robustness of the DNA study: one row per training seed, and the fraction of seeds.

A -10 head found in one training run is an anecdote; the same architecture, data and probe
trained from several seeds says how often the claim holds. Per seed (the run's own ``seed`` and
every seed of ``dna.seed_robustness.seeds``) the table holds the test ROC/PR AUC of the TSS
model, and per promoter element (-10, -35) whether the probe found a head there, the head, its
peak offset and consensus, its intervention statistics (relative drop, BH q), whether it is
sequence-driven, and the Tomtom q and decoy FDR of its matrix against the data-derived sigma-70
reference. :func:`seed_fractions` gives, per element, the fraction of seeds that find the head
and the fraction that find it *and* call it sequence-driven.

Columns: ``seed, test_roc_auc, test_pr_auc`` and, for ``el`` in ``minus10, minus35``:
``{el}_found, {el}_head, {el}_peak_offset, {el}_consensus, {el}_relative_drop,
{el}_intervention_q, {el}_sequence_driven, {el}_tomtom_q, {el}_decoy_fdr``.
"""
from __future__ import annotations

import logging

import pandas as pd

from .io import DataError

log = logging.getLogger("seqxai.seed_robustness")

ELEMENTS = ("minus10", "minus35")


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def seed_row(seed: int, metrics: dict, summary: dict, head_motifs: pd.DataFrame, tomtom: pd.DataFrame,
             source: str = "run") -> dict:
    """One seed's row from its TSS model's metrics, the probe's summary, head motifs and Tomtom
    tables (the outputs of rules ``train_dna`` and ``tss_attention``)."""
    try:
        test = metrics["splits"]["test"]
        controls = summary["positive_control"]
    except KeyError as e:
        raise DataError(f"{source}: seed {seed}: field {e} missing (metrics.json splits.test, "
                        "dna_summary.json positive_control)") from None
    row = {"seed": int(seed), "test_roc_auc": _float(test.get("roc_auc")), "test_pr_auc": _float(test.get("pr_auc"))}
    heads = head_motifs.set_index(["layer", "head"])
    for el in ELEMENTS:
        pc = controls.get(el)
        if pc is None:
            raise DataError(f"{source}: seed {seed}: dna_summary.json has no positive_control.{el}")
        key = (int(pc["layer"]), int(pc["head"]))
        if key not in heads.index:
            raise DataError(f"{source}: seed {seed}: head L{key[0]}H{key[1]} of positive_control.{el} "
                            "is not in head_motifs")
        h = heads.loc[key]
        ref = tomtom[(tomtom["layer"] == key[0]) & (tomtom["head"] == key[1])
                     & (tomtom["target"] == f"sigma70_{el}")] if len(tomtom) else tomtom
        row.update({
            f"{el}_found": bool(pc["found"]), f"{el}_head": f"L{key[0]}H{key[1]}",
            f"{el}_peak_offset": int(pc["peak_offset"]), f"{el}_consensus": str(pc.get("consensus", "")),
            f"{el}_relative_drop": _float(h.get("intervention_relative_drop")),
            f"{el}_intervention_q": _float(h.get("intervention_q")),
            f"{el}_sequence_driven": bool(h["sequence_driven"]),
            f"{el}_tomtom_q": _float(ref["q"].iloc[0]) if len(ref) else float("nan"),
            f"{el}_decoy_fdr": _float(ref["decoy_fdr"].iloc[0]) if len(ref) and "decoy_fdr" in ref else float("nan"),
        })
    tf = summary.get("tf_control")
    if tf is not None:  # the TF positive control (seqxai.tf_probe.tf_control), when the probe ran it
        row.update({"tf_control_pass": bool(tf["pass"]),
                    "tf_share_heads_associated": _float(tf.get("share_heads_associated"))})
    return row


def seed_fractions(table: pd.DataFrame) -> dict:
    """Per element: over the seeds, the fraction that find the head and the fraction that find
    it and call it sequence-driven; plus the AUC range."""
    if table.empty:
        raise DataError("seed robustness: no seed rows")
    out = {"n_seeds": int(len(table)), "seeds": table["seed"].astype(int).tolist(),
           "test_roc_auc": {"min": float(table.test_roc_auc.min()), "median": float(table.test_roc_auc.median()),
                            "max": float(table.test_roc_auc.max())},
           "test_pr_auc": {"min": float(table.test_pr_auc.min()), "median": float(table.test_pr_auc.median()),
                           "max": float(table.test_pr_auc.max())}}
    for el in ELEMENTS:
        found = table[f"{el}_found"].astype(bool)
        driven = found & table[f"{el}_sequence_driven"].astype(bool)
        out[el] = {"found": float(found.mean()), "found_and_sequence_driven": float(driven.mean()),
                   "seeds_found": table.seed[found].astype(int).tolist(),
                   "seeds_sequence_driven": table.seed[driven].astype(int).tolist()}
    if "tf_control_pass" in table:  # over the seeds whose probe ran the TF control (NaN: did not)
        ran = table[table.tf_control_pass.notna()]
        tf = ran.tf_control_pass.astype(bool)
        out["tf_control"] = {"n_seeds": int(len(ran)), "pass": float(tf.mean()) if len(ran) else None,
                             "seeds_pass": ran.seed[tf].astype(int).tolist(),
                             "share_heads_associated": ran.tf_share_heads_associated.astype(float).tolist()}
    return out


def run_seed_robustness(runs: list[dict], out_table, out_json) -> dict:
    """File-level entry of rule ``dna_seed_robustness``: ``runs`` holds per seed the paths
    ``seed, metrics, summary, head_motifs, tomtom``; writes the table (Parquet) and the
    fractions (JSON)."""
    import json

    from .io import read_table, write_json, write_table

    rows = []
    for r in runs:
        with open(r["metrics"]) as fh:
            metrics = json.load(fh)
        with open(r["summary"]) as fh:
            summary = json.load(fh)
        rows.append(seed_row(int(r["seed"]), metrics, summary, read_table(r["head_motifs"]),
                             read_table(r["tomtom"]), source=str(r["summary"])))
    seeds = [row["seed"] for row in rows]
    if len(set(seeds)) != len(seeds):
        raise DataError(f"dna.seed_robustness.seeds: seed listed twice (or equal to the run's seed): {seeds}")
    table = pd.DataFrame(rows).sort_values("seed").reset_index(drop=True)
    frac = seed_fractions(table)
    write_table(out_table, table)
    write_json(out_json, frac)
    for el in ELEMENTS:
        log.info("%s head over %d seeds: found %.0f%%, found and sequence-driven %.0f%% (seeds %s)", el,
                 frac["n_seeds"], 100 * frac[el]["found"], 100 * frac[el]["found_and_sequence_driven"],
                 frac[el]["seeds_sequence_driven"])
    log.info("test ROC AUC %s, PR AUC %s", frac["test_roc_auc"], frac["test_pr_auc"])
    return {"table": table, **frac}

