"""The TSS model and the Clauwaert probe on the real E. coli genome (issue 7 and 9 evidence).

    .venv/bin/python benchmarks/real_tss_model.py [--windows 4000] [--epochs 4] [--threads 1]

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

Takes about 18 minutes of training on one CPU thread with the defaults (the README reports the
numbers); not part of the test suite. Shorter training (2 epochs of 2,000 windows) leaves the
-10 head positional and its matrix's Tomtom match to the -10 reference not significant.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from seqxai.dna_model import auc_metrics, make_labels, oriented_tokens, split_blocks  # noqa: E402
from seqxai.dna_model import oriented_block, train_tss_model  # noqa: E402
from seqxai.io import read_fasta  # noqa: E402
from seqxai.sources.genome import load_genome  # noqa: E402
from seqxai.dna_model import load_model, save_model  # noqa: E402
from seqxai.sources.regulondb import read_promoters, read_transfac  # noqa: E402
from seqxai.tss_probe import probe_tss_attention  # noqa: E402

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4000, help="training windows sampled per epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-head", type=int, default=8)
    ap.add_argument("--out", type=Path, help="write the metrics and probe summary as JSON here")
    ap.add_argument("--model", type=Path, help="save the trained model here (model.pt), or probe this "
                    "saved model without training when the file exists")
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the real E. coli data of ../shared")
    torch.set_num_threads(args.threads)
    genome = load_genome(SHARED / "GCF_000005845.2_ASM584v2_genomic.fna.gz")
    chrom, seq = next(iter(genome.items()))
    tss, _, _ = read_promoters(SHARED / "PromoterSet_RegulonDB_10.9.txt", chrom=chrom, genome_length=len(seq),
                               evidence="strong")
    model_cfg = dict(n_layers=args.layers, n_heads=args.heads, d_model=32, d_head=args.d_head, context=128,
                     conv_width=7, label_offset=20, attn_chunk=64)
    train_cfg = dict(epochs=args.epochs, batch_size=8, lr=0.003, stride=1024, max_windows_per_epoch=args.windows,
                     patience=0)
    print(f"genome {chrom}: {len(seq):,} nt; {len(tss):,} strong-evidence TSSs; model {model_cfg}; "
          f"train {train_cfg}", flush=True)
    t0 = time.perf_counter()
    if args.model and args.model.exists():
        model, ckpt = load_model(args.model)
        metrics = ckpt["metrics"]
    else:
        model, metrics, log_df = train_tss_model(genome, tss, model_cfg, train_cfg, None, seed=args.seed,
                                                 device="cpu")
        if args.model:
            save_model(args.model, model, {"metrics": metrics, "split": metrics["split_blocks_0based_halfopen"]})
    train_s = time.perf_counter() - t0

    # the AT-richness reference on exactly the positions the model's test metrics cover
    L = len(seq)
    tokens, labels = oriented_tokens(seq), make_labels(tss, L, model_cfg["label_offset"])
    block = split_blocks(L, 0.2, 0.1)["test"]
    ys, ss = [], []
    for strand in ("+", "-"):
        a, b = oriented_block(block, L, strand)
        score = at_richness_score(tokens[strand], model_cfg["label_offset"])
        ys.append(labels[strand][a:b])
        ss.append(score[a:b])
    ref = auc_metrics(np.concatenate(ys), np.concatenate(ss))
    test = metrics["splits"]["test"]

    t1 = time.perf_counter()
    split = metrics["split_blocks_0based_halfopen"]
    # Tomtom targets as in the workflow: the RegulonDB TF matrices and the sigma-70 references
    tf_motifs = {m.name: (m.counts + 0.25) / (m.counts.sum(1, keepdims=True) + 1.0)
                 for m in read_transfac(SHARED / "regulonDB_2012-05_matrices.tf")}
    res = probe_tss_attention(model, genome, tss, pd.DataFrame(columns=["site_id", "tf", "chrom", "start", "end",
                                                                         "strand"]),
                              tf_motifs, dict(tss_set="heldout", n_background=1000), None, seed=args.seed,
                              split=split)
    probe_s = time.perf_counter() - t1
    pc = res["summary"]["positive_control"]["minus10"]
    tt = res["tomtom"]
    name = (pc["layer"], pc["head"])
    m10 = tt[(tt["layer"] == name[0]) & (tt["head"] == name[1]) & (tt["target"] == "sigma70_minus10")] if len(tt) else tt
    print(f"\nTomtom targets: {len(tf_motifs)} RegulonDB TF matrices + the sigma-70 -10/-35 references")
    print(f"training {train_s:.0f} s ({metrics['epochs']} epochs x {args.windows} windows of 1,024 scored positions)")
    print(f"test block: {test['n_positions']:,} positions, {test['n_positive']} TSS labels "
          f"(positive rate {test['positive_rate']:.5f})")
    print(f"{'score':<26} {'ROC AUC':>8} {'PR AUC':>8}")
    print(f"{'chance':<26} {0.5:>8.3f} {test['positive_rate']:>8.5f}")
    print(f"{'A+T share, 40 nt upstream':<26} {ref['roc_auc']:>8.3f} {ref['pr_auc']:>8.5f}")
    print(f"{'TSS transformer':<26} {test['roc_auc']:>8.3f} {test['pr_auc']:>8.5f}")
    print(f"\nprobe ({probe_s:.0f} s) on {res['summary']['n_tss_probed']} held-out TSSs: -10 head L{name[0]}H{name[1]} "
          f"found={pc['found']} peak offset {pc['peak_offset']} consensus {pc['consensus']} "
          f"({pc.get('mismatches')} mismatches to {pc.get('element_consensus', 'TATAAT')})")
    print(f"  TSS profile at peak {pc['profile_at_peak']:.3f} vs random-position background "
          f"{pc['background_at_peak']:.3f} (ratio {pc['profile_at_peak'] / max(pc['background_at_peak'], 1e-9):.1f}x, "
          f"Mann-Whitney p = {pc['sequence_driven_p']:.2g}; sequence-driven: {pc['sequence_driven']})")
    if len(m10):
        r = m10.iloc[0]
        print(f"  Tomtom vs sigma70_minus10: p = {r['p']:.2e}, q = {r['q']:.2e}")
    best = res["summary"].get("best_tomtom_match", [])
    print("  best Tomtom matches:", best[:5])
    if args.out:
        args.out.write_text(json.dumps({"metrics": metrics, "at_reference": ref, "probe": res["summary"],
                                        "train_seconds": train_s}, indent=1, default=str))


if __name__ == "__main__":
    main()
