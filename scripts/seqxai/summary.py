"""summary.json: the study's headline numbers and the verdicts of the positive controls.

Positive controls (configured in ``analysis``; the demo plants the answers):
- embedding-level relevance larger inside an annotation than outside: one-sided
  Wilcoxon p < ``expect_max_p`` for each (task, group, annotation) listed, and, because the
  bare test passes on amino-acid composition alone, at least one of the nulls configured:
  (b) the composition null, p_composition < ``composition_max_p``; (a) with controls, the
  fine-tuned r above every control's r on the same proteins, paired Wilcoxon p <
  ``controls_max_p`` and median paired difference >= ``controls_min_difference`` for each
  control (seqxai.paired_r; the floor because two models that differ by seed alone pass the p
  often, benchmarks/paired_r_null.py). ``held_by`` names those that held;
- a head whose share of high-confidence attention on contacts is at least
  ``contact_enrichment`` times the background and at least ``contact_share``;
- a DNA head whose TSS-attention profile peaks at the -10 box with a TATAAT-like logo
  (computed by the TSS probe, copied here);
- a DNA head that puts more attention mass into a planted TF's sites than at the same offsets
  without the TF (BH q < alpha, mass difference above the null's floor; the probe's
  ``tf_control``, copied here with the share of heads associated with a TF).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, read_table


def _finite(x):
    return None if x is None or not np.isfinite(x) else float(x)


def build_summary(*, tasks, models, embedding, heads, metrics, probes, dna_metrics=None,
                  dna_summary=None, studies=("wenzel", "vig", "clauwaert"), check: bool = True, expect=(), expect_max_p, composition_max_p=None,
                  min_high_confidence, contact_share=0.10,
                  contact_enrichment=5.0, variants=("finetuned",), variant_metrics=(),
                  comparison=(), flipping=(), paired=(), controls_max_p=0.01,
                  controls_min_difference=0.0, faithfulness=()) -> dict:
    # config `studies`: sections and positive controls of a study that is off are left out
    out: dict = {"studies": {s: s in studies for s in ("wenzel", "vig", "clauwaert")},
                 "protein": {}, "attention": {}, "positive_controls": {}}
    emb_tables = {t: read_table(p) for t, p in zip(tasks, embedding)}
    for t, hp, mp in zip(tasks, heads, metrics):
        h = read_table(hp)
        out["protein"][t] = {
            "metrics": read_json(mp),
            "embedding_tests": emb_tables[t].replace({np.nan: None}).to_dict("records"),
            "significant_heads": {f"{a} [{g}]": int(s["significant"].sum())
                                  for (a, g), s in h.groupby(["annotation", "group"])},
            "n_heads": len(h.drop_duplicates(["layer", "head"])),
        }
    # Controls (METHODS.md 1): test metrics of every variant, Jaccard of significant heads.
    vm = iter(variant_metrics)
    for t in tasks if len(variants) > 1 else []:
        out["protein"][t]["variants"] = {v: read_json(next(vm)).get("test") for v in variants}
    for t, cp in zip(tasks, comparison):
        tab = read_table(cp)
        out["protein"][t]["variant_jaccard"] = [
            {**r, **{k: _finite(r[k]) for k in ("jaccard", "expected_jaccard", "p_permutation") if k in r}}
            for r in tab[tab["group"] == "all"].to_dict("records")]
    paired_tables = {t: read_table(pp) for t, pp in zip(tasks, paired)}
    for t, tab in paired_tables.items():
        heads_tab = tab[tab["level"] == "head"]
        out["protein"][t]["paired_r_significant_heads"] = {
            f"{a} [{g}] vs {c}": int(s["significant"].sum())
            for (a, g, c), s in heads_tab.groupby(["annotation", "group", "control"])}
    for t, per_variant in residue_flipping_summary(tasks, variants, flipping).items():
        out["protein"][t]["residue_flipping"] = per_variant
    for t, rec in faithfulness_summary(tasks, faithfulness).items():
        out["protein"][t]["faithfulness"] = rec
    if "wenzel" in studies:
        out["positive_controls"]["embedding_enrichment"] = embedding_enrichment(
            expect, emb_tables, paired_tables, expect_max_p, composition_max_p, controls_max_p,
            controls_min_difference)
    best = None
    for m, pp in zip(models, probes):
        tab = read_table(pp)
        inc = tab[tab["included"]]
        per_prop = best_heads(tab)
        out["attention"][m] = {"best_head": per_prop, "heads_included": int(len(inc) // max(inc["property"].nunique(), 1)),
                               "min_high_confidence": min_high_confidence}
        c = per_prop.get("contact")
        if c and (best is None or c["share"] > best["share"]):
            best = {"model": m, **c}
    if "vig" in studies:
        out["positive_controls"]["contact_attention"] = {
            "required_share": contact_share, "required_enrichment": contact_enrichment,
            "best": best, "pass": contact_control_passes(best, contact_share, contact_enrichment),
        }
    if "clauwaert" in studies:
        dna = read_json(dna_summary)
        out["dna"] = {"metrics": read_json(dna_metrics), "probe": dna}
        pc = dna["positive_control"]
        # the -10 head must be there and be sequence-driven: its peak must fall around random
        # non-TSS positions (a purely positional head reads a fixed distance whatever the sequence)
        out["positive_controls"]["dna_minus10_head"] = {
            **pc["minus10"],
            "pass": bool(pc["minus10_head_found"] and pc["minus10"].get("sequence_driven", False))}
        if "tf_control" in dna:
            out["positive_controls"]["dna_tf_head"] = dict(dna["tf_control"])
    verdicts = [v["pass"] for v in out["positive_controls"].values() if isinstance(v, dict)]
    # On real data the controls are numbers to read, not verdicts: nothing was planted.
    out["positive_controls"]["checked"] = bool(check)
    out["positive_controls"]["all_pass"] = all(verdicts) if check else None
    return out


def embedding_enrichment(expect, emb_tables: dict, paired_tables: dict, expect_max_p: float,
                         composition_max_p: float | None, controls_max_p: float,
                         controls_min_difference: float = 0.0) -> dict:
    """The embedding-level positive control of each (task, group, annotation) of ``expect``:
    the bare Wilcoxon p < ``expect_max_p`` and, of the nulls configured, at least one held
    (``nulls``: composition_null, controls; ``held_by``: those that held). ``emb_tables``:
    task -> embedding_statistics; ``paired_tables``: task -> paired_r (empty without controls)."""
    checks = []
    for e in expect:
        tab = emb_tables[e["task"]]
        row = tab[(tab["annotation"] == e["annotation"]) & (tab["group"] == e["group"])]
        p = _finite(row["p"].iloc[0]) if len(row) else None
        # the bare Wilcoxon passes on composition alone: one of the nulls must hold too, (b) the
        # mask moved among residues of the same amino acid, (a) the fine-tuned r above the controls'
        pc = _finite(row["p_composition"].iloc[0]) if len(row) and "p_composition" in row else None
        held = {}
        if composition_max_p is not None:
            held["composition_null"] = pc is not None and pc < composition_max_p
        controls = _paired_embedding(paired_tables.get(e["task"]), e["annotation"], e["group"])
        if controls is not None:
            held["controls"] = bool(controls) and all(
                c["p"] is not None and c["p"] < controls_max_p
                and c["median_difference"] is not None
                and c["median_difference"] >= controls_min_difference for c in controls.values())
        null_ok = any(held.values()) if held else True  # no null configured: the bare test
        checks.append({**e, "p": p, "median_r": _finite(row["median_r"].iloc[0]) if len(row) else None,
                       "n_proteins": int(row["n_proteins"].iloc[0]) if len(row) else 0,
                       "p_composition": pc, "controls": controls, "nulls": held,
                       "held_by": [k for k, v in held.items() if v],
                       "pass": p is not None and p < expect_max_p and null_ok})
    return {"max_p": expect_max_p, "composition_max_p": composition_max_p,
            "controls_max_p": controls_max_p if paired_tables else None,
            "controls_min_difference": controls_min_difference if paired_tables else None,
            "checks": checks,
            "pass": all(c["pass"] for c in checks)}


def _paired_embedding(tab, annotation: str, group: str) -> dict | None:
    """{control: {p, median_difference, n_proteins}} of the embedding-level paired test of one
    annotation and group (seqxai.paired_r); None without a paired table (no controls)."""
    if tab is None:
        return None
    rows = tab[(tab["level"] == "embedding") & (tab["annotation"] == annotation)
               & (tab["group"] == group)]
    return {r["control"]: {"p": _finite(r["p"]), "median_difference": _finite(r["median_difference"]),
                           "n_proteins": int(r["n_proteins"])} for r in rows.to_dict("records")}


def best_heads(probe: pd.DataFrame) -> dict:
    """Per property of a probe table (seqxai.attention_probes), its included head with the largest
    share: layer, head, share, background, enrichment (share / background), weights, and how many
    heads are significant."""
    inc = probe[probe["included"]]
    per_prop = {}
    for prop, sub in inc.groupby("property"):
        b = sub.sort_values("share", ascending=False).iloc[0]
        per_prop[prop] = {"layer": int(b["layer"]), "head": int(b["head"]),
                          "share": float(b["share"]), "background": float(b["background"]),
                          "enrichment": _finite(b["enrichment"]),
                          "n_high_confidence": int(b["n_high_confidence"]),
                          "significant_heads": int(sub["significant"].sum())}
    return per_prop


def contact_control_passes(best: dict | None, share: float, enrichment: float) -> bool:
    """The contact-attention control: the best contact head (None: no head has enough
    high-confidence weights) reaches both the share and the enrichment over the background."""
    return bool(best and best["share"] >= share and (best["enrichment"] or 0) >= enrichment)


def residue_flipping_summary(tasks, variants, paths) -> dict:
    """Per task and variant, the AOPC tests of residue flipping by comparison (alternative,
    n_proteins, mean AOPC of both orders, median difference, p); ``paths``: the
    residue_flipping_tests tables, task-major (``expand(..., task=tasks, variant=variants)``)."""
    paths = list(paths)
    if not paths:
        return {}
    if len(paths) != len(tasks) * len(variants):
        raise ValueError(f"{len(paths)} residue flipping tables for {len(tasks)} tasks x "
                         f"{len(variants)} variants")
    it = iter(paths)
    keep = ["alternative", "n_proteins", "mean_aopc_a", "mean_aopc_b", "median_difference", "p"]
    return {t: {v: {r["comparison"]: {k: r[k] if k in ("alternative", "n_proteins") else _finite(r[k])
                                      for k in keep}
                    for r in read_table(next(it)).to_dict("records")}
                for v in variants} for t in tasks}


def faithfulness_summary(tasks, paths) -> dict:
    """Per task, the faithfulness benchmark of the attribution methods (seqxai.faithfulness):
    ``methods`` (one record per method: flipping areas with intervals, rank, within-method
    p values, cost ratios), ``pairs`` (paired tests, Spearman agreement, head Jaccard) and
    ``enrichment`` (the group ``all`` embedding-level statistics per method and annotation).
    ``paths``: the tables analysis/protein/<task>/faithfulness/{methods,pairs,enrichment}.parquet."""
    by = {(Path(p).parents[1].name, Path(p).stem): p for p in paths}
    out = {}
    for t in tasks:
        if (t, "methods") not in by:
            continue
        rec = {}
        for name in ("methods", "pairs", "enrichment"):
            tab = read_table(by[(t, name)])
            if name == "enrichment":
                tab = tab[tab["group"] == "all"]
            rec[name] = [{k: _finite(v) if isinstance(v, float) else v for k, v in r.items()}
                         for r in tab.to_dict("records")]
        out[t] = rec
    return out


# ------------------------------------------------------------------------ provenance
# The versions of code, models and data a run used, for summary.json's "provenance" section.
PROVENANCE_PACKAGES = ("torch", "transformers", "captum", "numpy", "pandas", "scipy", "snakemake")
_RELEASE_LINE = re.compile(r"Release:\s*([0-9][0-9.]*)")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(config: dict) -> str:
    """sha256 of the resolved config (all config files and --config merged, schema defaults
    filled in), as canonical JSON, without ``outdir``: the same study in another folder has
    the same hash."""
    study = {k: v for k, v in config.items() if k != "outdir"}
    return hashlib.sha256(json.dumps(study, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(names=PROVENANCE_PACKAGES) -> dict:
    """{package: version or None} of the environment this process runs in, and its Python.

    Looked up in this interpreter's own site-packages only: Snakemake's script preamble
    appends the launching process's sys.path, where importlib.metadata.version() would find
    the launcher's copy of a package the job's env lacks. `snakemake` is not in the job's env
    (envs/torch.yaml): its version is that of the Snakemake running the job, whose module the
    preamble imported to unpickle the job's `snakemake` object; outside a job, the installed one."""
    import site
    from importlib.metadata import distributions

    own = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    installed = {}
    for dist in distributions(path=[p for p in own if os.path.isdir(p)]):
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        installed.setdefault(name, dist.version)  # the first on the path wins, as for imports
    out = {"python": platform.python_version()}
    for n in names:
        out[n] = installed.get(re.sub(r"[-_.]+", "-", n).lower())
    running = sys.modules.get("snakemake")
    if "snakemake" in names and getattr(running, "__version__", None):
        out["snakemake"] = running.__version__
    return out


def encoder_provenance(pretrained: str | None, folder: str | None) -> dict:
    """What the protein encoder was: the configured hub id or folder (None: the demo encoder
    built and MLM-pretrained by the workflow), the sha256 of the config.json and weights of the
    folder actually loaded, and for a hub id the snapshot commit of the local Hugging Face cache."""
    out = {"pretrained": pretrained, "built_by_workflow": pretrained is None, "folder": folder,
           "config_sha256": None, "weights_sha256": None, "commit": None}
    path = Path(os.path.expanduser(folder)) if folder else None
    if path is not None and not path.is_dir() and pretrained:  # a hub id: its cached snapshot
        snapshot = hub_snapshot(pretrained)
        if snapshot is not None:
            path, out["commit"] = snapshot, snapshot.name
    if path is not None and (path / "config.json").is_file():
        out["config_sha256"] = sha256_file(path / "config.json")
        for w in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                  "pytorch_model.bin.index.json"):
            if (path / w).is_file():
                out["weights_sha256"] = sha256_file(path / w)
                break
    return out


def hub_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The folder of the snapshot a hub id resolves to in the local Hugging Face cache
    (``<cache>/models--org--name/snapshots/<commit>``, the commit read from ``refs/<revision>``),
    or None when it is not cached. The cache is HF_HUB_CACHE, else HF_HOME/hub, else
    ~/.cache/huggingface/hub (huggingface_hub's order)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    if not ref.is_file():
        return None
    snap = repo / "snapshots" / ref.read_text().strip()
    return snap if snap.is_dir() else None


def _file_release(path) -> str | None:
    """The 'Release: x.y' line near the top of a RegulonDB file, if it has one."""
    try:
        with open(path, errors="replace") as f:
            head = f.read(8192)
    except OSError:
        return None
    m = _RELEASE_LINE.search(head)
    return m.group(1).rstrip(".") if m else None


def _local_files(paths) -> list[dict]:
    return [{"path": str(p), "sha256": sha256_file(p) if Path(p).is_file() else None}
            for p in ([paths] if isinstance(paths, str) else paths or [])]


def _obo_data_version(path) -> str | None:
    """The ``data-version`` header line of an OBO file (go-basic: 'releases/2024-06-17')."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("["):
                    break
                if line.startswith("data-version:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def data_provenance(config: dict) -> dict:
    """The data sources and releases named by the config (and found in local files)."""
    data = config["data"]
    if data["source"] == "demo":
        return {"source": "demo", "seed": config["seed"], "demo": data["demo"]}
    up, gen, rdb, st = data["uniprot"], data["genome"], data["regulondb"], data["structures"]
    go = data.get("go") or {}
    regulondb = {"release": rdb.get("release"), "promoter_evidence": rdb.get("evidence"),
                 "site_evidence": rdb.get("site_evidence"), "files": {}}
    for k in ("promoters", "sites", "matrices"):
        part = rdb.get(k) or {}
        local = part.get("local")
        regulondb["files"][k] = {
            "url": None if local else part.get("url"), "local": _local_files(local) if local else [],
            "pinned_release": part.get("release") or rdb.get("release"),
            "file_release": _file_release(local) if local else None}
    return {
        "source": data["source"],
        "uniprot": {"query": None if up.get("local") else up.get("query"),
                    "url": None if up.get("local") else up.get("url"),
                    "local": _local_files(up.get("local")),
                    # The REST answer's X-UniProt-Release header is not kept by the downloader.
                    "release": None},
        "genome": {"accession": gen.get("accession"), "local": _local_files(gen.get("local"))},
        "go": {"pinned_release": go.get("release"),
               "url": None if go.get("local") or not go.get("url") else go["url"].format(release=go.get("release")),
               "local": _local_files(go.get("local")),
               "file_release": _obo_data_version(go["local"]) if go.get("local") else None},
        "regulondb": regulondb,
        "structures": {"source": st.get("source"), "local": st.get("local"),
                       "mapping": _local_files(st.get("mapping")) if st.get("mapping") else []},
    }


def build_provenance(config: dict, encoder_folder: str | None) -> dict:
    """summary.json's provenance: seed, config hash, package versions, encoder, data sources."""
    return {"seed": config["seed"], "config_sha256": config_hash(config),
            "packages": package_versions(),
            "encoder": encoder_provenance(config["protein"]["encoder"]["pretrained"], encoder_folder),
            "data": data_provenance(config)}
