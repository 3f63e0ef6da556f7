"""The TSS model and the Clauwaert probe on the real E. coli genome, over training seeds.

    .venv/bin/python benchmarks/real_tss_model.py --seeds 1,2,3 --null-seeds 1-3 --out DIR \
        [--windows 4000] [--epochs 4] [--threads 1]

Reads the real genome (RefSeq NC_000913.3) and the RegulonDB 10.9 promoter set (strong
evidence) from ../shared/data/ecoli, trains a small TSS transformer on the first 70% of the
genome (both strands; a seeded sample of training windows per epoch), scores every position of
the held-out test block (last 20%), and runs the attention probe on the test-block TSSs with a
background of random non-TSS positions. Prints:

- test ROC AUC and PR AUC over all test positions, next to two references computed on the same
  positions: chance (ROC 0.5, PR = positive rate) and an AT-richness score (the A+T share of
  the 40 nt upstream of the predicted TSS), a sequence heuristic any promoter model should beat;
- the head the probe reports at the -10 box: its peak offset, consensus, TSS profile at the
  peak vs the random-position background, and the Tomtom match of its matrix against the
  sigma-70 -10 reference with p and q values.

Seeds and thresholds (issue 16, points 4 and 6). The script first trains (or loads from
``DIR/real_model_seed<s>.pt``) one model per seed, then measures the null of the intervention
test on this architecture and genome before probing any trained model: the architecture randomly
initialised (``--null-seeds``) and the first seed's model with the rows of its weight matrices
permuted (the same seeds); the 99th percentile of the relative drop over all tested null heads
becomes ``min_relative_drop`` for the trained seeds. Then each trained model gets the whole probe
(held-out TSSs, 1,000 A/T-matched background positions, the intervention, Tomtom against the
RegulonDB TF matrices and the sigma-70 -10/-35 matrices estimated from the strong promoters, with
column-shuffled decoys; TF-site enrichment on the strong-evidence RegulonDB binding sites). It
writes ``DIR/real_seeds.json`` and ``DIR/real_seeds.tsv`` (one row per seed) and prints the table
and the fraction of seeds that find a -10 / -35 head and call it sequence-driven.

Takes about 18 minutes of training per seed on one CPU thread with the defaults; not part of
the test suite. Shorter training (2 epochs of 2,000 windows) leaves the -10 head positional and
its matrix's Tomtom match to the -10 reference not significant.
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np
import pandas as pd
import torch
from dna_probe_null import seeds as parse_seeds
from dna_probe_null import shuffled

from seqxai.dna_model import build_model, load_model, save_model
from seqxai.seed_robustness import seed_fractions
from seqxai.seed_robustness import seed_row as robustness_row
from seqxai.sources.genome import load_genome
from seqxai.sources.regulondb import read_promoters, read_sites, read_transfac
from seqxai.tss_probe import (
    DEFAULT_INTERVENTION,
    probe_tss_attention,
    sequence_driven_by_intervention,
)
from seqxai.tss_training import auc_metrics, train_tss_model
from seqxai.tss_windows import make_labels, oriented_block, oriented_tokens, split_blocks

SHARED = ROOT.parent / "shared" / "data" / "ecoli"


def at_richness_score(tokens: np.ndarray, label_offset: int, width: int = 40) -> np.ndarray:
    """Per position p: the A+T share of the ``width`` nt upstream of the TSS that a label at p
    stands for (p - label_offset); a sequence-only reference score."""
    at = ((tokens == 0) | (tokens == 3)).astype(np.float64)
    c = np.concatenate([[0.0], np.cumsum(at)])
    p = np.arange(len(tokens))
    hi = np.clip(p - label_offset, 0, len(tokens))
    lo = np.clip(hi - width, 0, len(tokens))
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def at_reference(seq: str, tss: pd.DataFrame, label_offset: int) -> dict:
    """ROC/PR AUC of the A+T-richness score on the test block's positions (both strands)."""
    L = len(seq)
    tokens, labels = oriented_tokens(seq), make_labels(tss, L, label_offset)
    block = split_blocks(L, 0.2, 0.1)["test"]
    ys, ss = [], []
    for strand in ("+", "-"):
        a, b = oriented_block(block, L, strand)
        ys.append(labels[strand][a:b])
        ss.append(at_richness_score(tokens[strand], label_offset)[a:b])
    return auc_metrics(np.concatenate(ys), np.concatenate(ss))


def train_or_load(path: Path, genome, tss, model_cfg, train_cfg, seed: int):
    t0 = time.perf_counter()
    if path.exists():
        model, ckpt = load_model(path)
        return model, ckpt["metrics"], ckpt.get("train_seconds")
    model, metrics, _ = train_tss_model(genome, tss, model_cfg, train_cfg, None, seed=seed, device="cpu")
    train_s = round(time.perf_counter() - t0, 1)
    save_model(path, model, {"metrics": metrics, "split": metrics["split_blocks_0based_halfopen"],
                             "train_seconds": train_s})
    return model, metrics, train_s


def null_drops(first_model, split, tokens, tss, null_seeds, max_tss: int) -> dict:
    """The intervention's relative drop on every tested head of the null models."""
    icfg = {**DEFAULT_INTERVENTION, "max_tss": max_tss}
    rows = []
    for kind in ("random_init", "shuffled"):
        for s in null_seeds:
            t0 = time.perf_counter()
            if kind == "random_init":
                torch.manual_seed(s)
                model = build_model(first_model.config)
            else:
                model = shuffled(copy.deepcopy(first_model), s)
            model.eval()
            tab = sequence_driven_by_intervention(model, tokens, tss, split, icfg, -100, 20, 32, "cpu", s)
            tested = tab[~tab.query_adjacent]
            rows.append({"kind": kind, "seed": s, "relative_drop": tested.relative_drop.tolist(),
                         "q": tested.q.tolist(), "seconds": round(time.perf_counter() - t0, 1)})
            print(f"null {kind:11s} seed {s}: {len(tested)} heads tested, relative drop max "
                  f"{np.nanmax(tested.relative_drop):.3f}, min q {np.nanmin(tested.q):.3g} "
                  f"({rows[-1]['seconds']} s)", flush=True)
    drops = np.array([d for r in rows for d in r["relative_drop"]], float)
    drops = drops[np.isfinite(drops)]
    return {"models": rows, "n_heads": len(drops),
            "relative_drop_quantiles": {str(k): float(np.quantile(drops, k)) for k in (0.5, 0.9, 0.99)},
            "min_relative_drop_p99": float(np.quantile(drops, 0.99)),
            "share_of_models_with_a_head_at_q_below_0.05":
                float(np.mean([np.nanmin(r["q"]) < 0.05 for r in rows]))}


def seed_row(seed, metrics, train_s, res, ref) -> dict:
    """One seed's line of the table: the workflow's seed-robustness row (AUCs, the -10/-35
    heads, their intervention and Tomtom statistics) plus the A+T reference and TF heads."""
    row = robustness_row(seed, metrics, res["summary"], res["head_motifs"], res["tomtom"], "real genome")
    row.update({"train_seconds": train_s, "at_roc_auc": ref["roc_auc"], "at_pr_auc": ref["pr_auc"],
                "n_tss_probed": res["summary"]["n_tss_probed"], "n_heads": len(res["head_motifs"]),
                "heads_with_tf_enrichment": len({(r["layer"], r["head"])
                                                 for r in res["summary"]["significant_tf_enrichment"]})})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4000, help="training windows sampled per epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="1,2,3", help="training seeds, e.g. 1,2,3 or 1-3")
    ap.add_argument("--null-seeds", default="1-3", help="seeds of the random-init and shuffled null models")
    ap.add_argument("--max-tss", type=int, default=200, help="held-out TSSs of the intervention test")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-head", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True, help="models, real_seeds.json and real_seeds.tsv go here")
    ap.add_argument("--train-only", action="store_true", help="train and save the models, probe nothing")
    ap.add_argument("--min-relative-drop", type=float, help="use this intervention floor instead of measuring "
                    "the null (the floor an earlier run of the same seeds printed); rows are appended to "
                    "real_seeds.tsv")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the real E. coli data of ../shared")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    genome = load_genome(SHARED / "GCF_000005845.2_ASM584v2_genomic.fna.gz")
    chrom, seq = next(iter(genome.items()))
    tss, _, _ = read_promoters(SHARED / "PromoterSet_RegulonDB_10.9.txt", chrom=chrom, genome_length=len(seq),
                               evidence="strong")
    sites, _ = read_sites(SHARED / "BindingSiteSet_RegulonDB_10.8.txt", chrom=chrom, genome_length=len(seq),
                          evidence="strong")
    model_cfg = dict(n_layers=args.layers, n_heads=args.heads, d_model=32, d_head=args.d_head, context=128,
                     conv_width=7, label_offset=20, attn_chunk=64)
    train_cfg = dict(epochs=args.epochs, batch_size=8, lr=0.003, stride=1024, max_windows_per_epoch=args.windows,
                     patience=0)
    print(f"genome {chrom}: {len(seq):,} nt; {len(tss):,} strong-evidence TSSs, {len(sites):,} strong TF sites; "
          f"model {model_cfg}; train {train_cfg}", flush=True)
    seed_list = parse_seeds(args.seeds)
    if args.train_only:
        for s in seed_list:
            train_or_load(args.out / f"real_model_seed{s}.pt", genome, tss, model_cfg, train_cfg, s)
        return
    tokens = oriented_tokens(seq)
    tf_motifs = {m.name: (m.counts + 0.25) / (m.counts.sum(1, keepdims=True) + 1.0)
                 for m in read_transfac(SHARED / "regulonDB_2012-05_matrices.tf")}
    ref = at_reference(seq, tss, model_cfg["label_offset"])
    rows, null, floor = [], None, args.min_relative_drop
    if floor is not None:  # an earlier run's null: keep its rows, add these seeds'
        null = {"min_relative_drop_p99": floor, "from": "--min-relative-drop"}
        prev = args.out / "real_seeds.tsv"
        rows = pd.read_csv(prev, sep="\t").to_dict("records") if prev.exists() else []
    for s in seed_list:  # one seed after the other, so that an interrupted run keeps its finished rows
        model, metrics, train_s = train_or_load(args.out / f"real_model_seed{s}.pt", genome, tss, model_cfg,
                                                train_cfg, s)
        print(f"seed {s}: trained ({train_s} s); test ROC {metrics['splits']['test']['roc_auc']:.3f}", flush=True)
        split = metrics["split_blocks_0based_halfopen"]
        if null is None:  # the threshold, fixed on the null before any trained model is probed
            null = null_drops(model, split, tokens, tss, parse_seeds(args.null_seeds), args.max_tss)
            floor = null["min_relative_drop_p99"]
            print(f"null: {null['n_heads']} heads; relative drop quantiles {null['relative_drop_quantiles']}; "
                  f"min_relative_drop = p99 = {floor:.3f}", flush=True)
        probe_cfg = {"tss_set": "heldout", "n_background": 1000,
                     "intervention": {"max_tss": args.max_tss, "min_relative_drop": floor}}
        model.eval()
        t0 = time.perf_counter()
        res = probe_tss_attention(model, genome, tss, sites, tf_motifs, probe_cfg, None, seed=s, split=split)
        rows.append({**seed_row(s, metrics, train_s, res, ref), "probe_seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1], default=str), flush=True)
        pd.DataFrame(rows).to_csv(args.out / "real_seeds.tsv", sep="\t", index=False)
    table = pd.DataFrame(rows)
    rates = seed_fractions(table)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False))
    print(f"fraction of {len(table)} seeds: {rates}")
    (args.out / "real_seeds.json").write_text(json.dumps(
        {"model": model_cfg, "train": train_cfg, "null": null, "min_relative_drop": floor,
         "seeds": rows, "fraction_of_seeds": rates}, indent=1, default=str))


if __name__ == "__main__":
    main()
