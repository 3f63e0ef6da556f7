"""The demo's contact-attention control: its thresholds from a null, then fresh seeds.

    .venv/bin/python benchmarks/protein_contact_null.py --seeds 1-3 --conditions all \
        --configfile config/demo.yaml --out results/contact_null

For every seed and condition the demo's data are generated anew (config ``data.demo.protein``,
seeded), split (config ``split``, whole families), and an encoder from
``protein.encoder.demo_config`` is probed with the workflow's own functions
(``mlm_pretraining.run_pretraining``, ``attention_probes.run_attention_probe``,
``summary.best_heads``):

- ``trained``: MLM (``protein.mlm``) on the train split of data WITH covariation;
- ``no_covariation``: the same MLM on the same families, lengths, alignments and contact maps
  with ``coupling: 0`` (no covariation between contacting residues);
- ``random_init``: the same architecture randomly initialised (no MLM), on data with covariation.

Per run: the best contact head's share of high-confidence attention, its background and
enrichment (share / background), the relative offsets (key - query) where most of its
high-confidence weights land (50 proteins), and the contact regression's long-range P@L/5 on the test
split's families (never seen by MLM or the regression) with the long-range background. With
``--share`` / ``--enrichment`` the control's verdict is printed too (pass rates per condition).
Writes ``<out>/runs.json`` (one row per run, appended across calls) and prints each row.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np
import torch
import yaml

from seqxai.attention_probes import run_attention_probe
from seqxai.io import read_json, read_table
from seqxai.mlm_pretraining import run_pretraining
from seqxai.protein_model import build_demo_encoder, seed_everything
from seqxai.splits import run_splits
from seqxai.summary import best_heads, contact_control_passes
from seqxai.synth_protein import write_demo_proteins

CONDITIONS = ("trained", "no_covariation", "random_init")


def seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b) + 1)) if b else [int(x) for x in text.split(",")]


def load_config(path) -> dict:
    """The config with the schema's defaults filled in, as the workflow sees it."""
    from snakemake.utils import validate

    cfg = yaml.safe_load(Path(path).read_text())
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


def finetune_tasks(cfg: dict, paths: dict, encoder: Path, seed: int, workdir: Path) -> dict:
    """The demo's classifier side on the same data: fine-tune every task (protein.tasks,
    protein.finetune) from the encoder; EC test accuracy and GO test macro ROC AUC."""
    from seqxai.protein_model import run_finetuning

    params = {k: v for k, v in cfg["protein"]["finetune"].items() if k != "max_memory_gb"}
    out = {}
    for name, task in cfg["protein"]["tasks"].items():
        d = workdir / f"ft_{name}"
        run_finetuning(paths["proteins"], paths["splits"], str(encoder), {"name": name, **task}, params,
                       d / "model", d / "metrics.json", d / "log.tsv", max_length=cfg["protein"]["max_length"],
                       seed=seed, device="cpu", threads=1)
        test = read_json(d / "metrics.json")["test"]
        out[name] = {k: test.get(k) for k in ("accuracy", "macro_roc_auc") if test.get(k) is not None}
    return out


@torch.no_grad()
def head_offsets(encoder_path: Path, proteins_path: Path, layer: int, head: int, theta: float = 0.3,
                 n_proteins: int = 50, top: int = 3) -> list[list]:
    """Where one head's high-confidence weights (a >= theta) land, by relative offset key - query
    over the first ``n_proteins`` proteins: the ``top`` offsets with their share of the weights."""
    from seqxai.attention_probes import attention_maps
    from seqxai.protein_model import load_encoder, load_tokenizer

    enc, tok = load_encoder(encoder_path).eval(), load_tokenizer(encoder_path)
    counts: dict[int, int] = {}
    for seq in read_table(proteins_path)["sequence"].head(n_proteins):
        t = tok(seq, return_tensors="pt")
        a = attention_maps(enc, t["input_ids"][0], t["attention_mask"][0], len(seq))[layer, head]
        q, k = np.nonzero(a >= theta)
        for off, n in zip(*np.unique(k - q, return_counts=True)):
            counts[int(off)] = counts.get(int(off), 0) + int(n)
    total = sum(counts.values()) or 1
    return [[off, round(n / total, 3)] for off, n in sorted(counts.items(), key=lambda x: -x[1])[:top]]


def run_one(cfg: dict, condition: str, seed: int, workdir: Path, finetune: bool = False) -> dict:
    """Generate, split, (pre)train and probe one condition at one seed; the probe's numbers."""
    demo = dict(cfg["data"]["demo"]["protein"])
    if condition == "no_covariation":
        demo["coupling"] = 0.0
    d = workdir
    paths = {k: d / f"{k}.parquet" for k in ("proteins", "annotations", "contacts", "report", "splits")}
    write_demo_proteins(demo, seed, paths["proteins"], paths["annotations"], paths["contacts"], paths["report"])
    run_splits(paths["proteins"], cfg["split"], seed, paths["splits"])
    t0 = time.process_time()
    if condition == "random_init":  # the demo encoder's random initial weights, as MLM starts from them
        seed_everything(seed)
        build_demo_encoder(cfg["protein"]["encoder"]["demo_config"], d / "encoder")
    else:
        run_pretraining(paths["proteins"], paths["splits"], d / "encoder", d / "mlm_log.tsv", init=None,
                        demo_config=cfg["protein"]["encoder"]["demo_config"], mlm=cfg["protein"]["mlm"],
                        max_length=cfg["protein"]["max_length"], seed=seed, device="cpu", threads=1)
    mlm_cpu = time.process_time() - t0
    vig = {**cfg["analysis"]["vig"], "bootstrap": {"draws": 0}}
    outputs = {k: d / f"probe_{k}.{'json' if k == 'summary' else 'parquet'}"
               for k in ("probe", "trend", "aa", "blosum", "contacts", "summary")}
    t0 = time.process_time()
    run_attention_probe(d / "encoder", paths["proteins"], paths["splits"], paths["contacts"],
                        paths["annotations"], vig, [], cfg["protein"]["max_length"], outputs,
                        seed=seed, device="cpu", threads=1)
    probe_cpu = time.process_time() - t0
    best = best_heads(read_table(outputs["probe"])).get("contact")
    summ = read_json(outputs["summary"])
    splits = read_table(paths["splits"])
    prot = read_table(paths["proteins"]).merge(splits, on="accession")
    fam_splits = prot.groupby("family")["split"].nunique()
    offsets = head_offsets(d / "encoder", paths["proteins"], best["layer"], best["head"]) if best else None
    tasks = finetune_tasks(cfg, paths, d / "encoder", seed, d) if finetune else None
    return {
        "condition": condition, "seed": seed, "tasks": tasks,
        "share": best["share"] if best else None, "background": best["background"] if best else None,
        "enrichment": best["enrichment"] if best else None,
        "head": [best["layer"], best["head"]] if best else None, "head_top_offsets": offsets,
        "n_high_confidence": best["n_high_confidence"] if best else 0,
        "long_p_l5": (summ.get("precision") or {}).get("long P@L/5"),
        "long_background": summ.get("long_range_background"),
        "n_test_families": int(prot.loc[prot["split"] == "test", "family"].nunique()),
        "families_crossing_splits": int((fam_splits > 1).sum()),
        "mlm_cpu_s": round(mlm_cpu, 1), "probe_cpu_s": round(probe_cpu, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(ROOT / "config" / "demo.yaml"))
    ap.add_argument("--seeds", default="1-3")
    ap.add_argument("--conditions", default="all", help="comma-separated of " + ", ".join(CONDITIONS))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "contact_null")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override data.demo.protein keys (YAML values), e.g. coupled_conservation=5")
    ap.add_argument("--mlm", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override protein.mlm keys (YAML values), e.g. steps=1500")
    ap.add_argument("--finetune", action="store_true",
                    help="trained condition: also fine-tune the demo's tasks (EC accuracy, GO ROC AUC)")
    ap.add_argument("--share", type=float, help="the control's share threshold (verdicts)")
    ap.add_argument("--enrichment", type=float, help="the control's enrichment threshold (verdicts)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.configfile)
    for kv in args.set:
        k, _, v = kv.partition("=")
        cfg["data"]["demo"]["protein"][k] = yaml.safe_load(v)
    for kv in args.mlm:
        k, _, v = kv.partition("=")
        cfg["protein"]["mlm"][k] = yaml.safe_load(v)
    conditions = CONDITIONS if args.conditions == "all" else args.conditions.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
    for s in seeds(args.seeds):
        for c in conditions:
            with tempfile.TemporaryDirectory() as tmp:
                row = run_one(cfg, c, s, Path(tmp), finetune=args.finetune and c == "trained")
            runs = [r for r in runs if (r["condition"], r["seed"]) != (c, s)] + [row]
            runs_path.write_text(json.dumps(runs, indent=1))
            print(json.dumps(row), flush=True)
    for c in conditions:
        rows = [r for r in runs if r["condition"] == c and r["seed"] in seeds(args.seeds)]
        sh = np.array([r["share"] or 0.0 for r in rows])
        en = np.array([r["enrichment"] or 0.0 for r in rows])
        pl = np.array([r["long_p_l5"] if r["long_p_l5"] is not None else np.nan for r in rows])
        line = (f"{c}: {len(rows)} seeds; share {np.round(sh, 3).tolist()}, enrichment "
                f"{np.round(en, 2).tolist()}, long P@L/5 {np.round(pl, 3).tolist()}")
        if args.share is not None and args.enrichment is not None:
            ok = [contact_control_passes(r if r["share"] is not None else None, args.share, args.enrichment)
                  for r in rows]
            line += f"; pass {sum(ok)} of {len(ok)}"
        print(line)


if __name__ == "__main__":
    main()
