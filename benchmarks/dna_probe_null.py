"""Thresholds of the TSS probe fixed before looking: the null, then fresh seeds.

    .venv/bin/python benchmarks/dna_probe_null.py null     --run results/demo --seeds 1-10
    .venv/bin/python benchmarks/dna_probe_null.py validate --run results/demo --seeds 11-15 \
        --min-relative-drop X --configfile config/demo.yaml

``null``: the intervention test (seqxai.motif_intervention) on models that cannot have learned
anything about promoters: the run's TSS architecture randomly initialised (one model per seed)
and the run's trained model with the rows of every weight matrix (Linear, Conv1d, Embedding)
and their biases permuted (Wenzel et al.'s shuffled control, one permutation per seed). Prints
the distribution of each tested head's relative drop and of the minimum BH q per model, and
the 99th percentile of the relative drop over all null heads: the ``min_relative_drop`` the
config fixes (written in config/config.yaml with this derivation).

``validate``: trains fresh models (seeds not used for the null) with the config's dna.model /
dna.train on the run's genome and TSSs, runs the whole probe with the threshold, and prints per
seed the test ROC/PR AUC, whether a -10 (-35) head is found and sequence-driven, its
intervention statistics and its Tomtom q (and decoy FDR) against the data-derived -10 reference;
then the pass rate. Writes ``<out>/<mode>.json``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from seqxai.dna_model import build_model, load_model, oriented_tokens, save_model, train_tss_model  # noqa: E402
from seqxai.io import read_fasta, read_table  # noqa: E402
from seqxai.motifs import read_meme  # noqa: E402
from seqxai.tss_probe import DEFAULT_INTERVENTION, probe_tss_attention  # noqa: E402
from seqxai.tss_probe import sequence_driven_by_intervention  # noqa: E402


def seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b) + 1)) if b else [int(x) for x in text.split(",")]


def shuffled(model, seed: int):
    """The model with the rows of every weight matrix and its bias permuted (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, "weight", None)
            if isinstance(w, torch.nn.Parameter) and w.dim() >= 2:
                perm = torch.randperm(w.shape[0], generator=g)
                w.copy_(w[perm])
                b = getattr(m, "bias", None)
                if isinstance(b, torch.nn.Parameter):
                    b.copy_(b[perm])
    return model


def load_run(run: Path):
    genome = read_fasta(run / "data/dna/genome.fasta")
    tss = read_table(run / "data/dna/tss.parquet", "tss")
    model, ckpt = load_model(run / "models/dna/model.pt")
    return genome, tss, model, ckpt


def null(args):
    genome, tss, trained, ckpt = load_run(args.run)
    seq = next(iter(genome.values()))
    tokens = oriented_tokens(seq)
    pcfg = ckpt.get("probe", {})
    omin, omax = args.offset_min, args.offset_max
    icfg = {**DEFAULT_INTERVENTION, "max_tss": args.max_tss}
    out = []
    for kind in ("random_init", "shuffled"):
        for s in seeds(args.seeds):
            t0 = time.time()
            if kind == "random_init":
                torch.manual_seed(s)
                model = build_model(trained.config)
            else:
                model, _ = load_model(args.run / "models/dna/model.pt")
                model = shuffled(model, s)
            model.eval()
            tab = sequence_driven_by_intervention(model, tokens, tss, ckpt.get("split"), icfg, omin, omax,
                                                  32, "cpu", s)
            tested = tab[~tab.query_adjacent]
            out.append({"kind": kind, "seed": s, "relative_drop": tested.relative_drop.tolist(),
                        "q": tested.q.tolist(), "n_adjacent": int(tab.query_adjacent.sum()),
                        "seconds": round(time.time() - t0, 1)})
            print(f"{kind:11s} seed {s:2d}: {len(tested)} heads tested, relative drop max "
                  f"{np.nanmax(tested.relative_drop):.3f}, min q {np.nanmin(tested.q):.3g} "
                  f"({out[-1]['seconds']} s)", flush=True)
    drops = np.array([d for r in out for d in r["relative_drop"]], float)
    drops = drops[np.isfinite(drops)]
    qs = np.array([np.nanmin(r["q"]) if np.isfinite(r["q"]).any() else np.nan for r in out])
    res = {"pcfg_note": pcfg, "models": out, "n_heads": len(drops),
           "relative_drop_quantiles": {str(k): float(np.quantile(drops, k)) for k in (0.5, 0.9, 0.95, 0.99)},
           "min_relative_drop_p99": float(np.quantile(drops, 0.99)),
           "share_of_models_with_a_head_at_q_below_0.05": float(np.mean(qs < 0.05))}
    print(json.dumps({k: v for k, v in res.items() if k != "models"}, indent=1))
    return res


def validate(args):
    genome, tss, _, _ = load_run(args.run)
    cfg = yaml.safe_load(Path(args.configfile).read_text())
    dna = cfg["dna"]
    probe = {**dna.get("probe", {}), "intervention": {**dna.get("probe", {}).get("intervention", {}),
                                                       "min_relative_drop": args.min_relative_drop}}
    motifs = read_meme(args.run / "data/dna/tf_motifs.meme")
    sites = read_table(args.run / "data/dna/tf_sites.parquet", "tf_sites")
    out = []
    for s in seeds(args.seeds):
        t0 = time.time()
        path = args.out / f"dna_model_seed{s}.pt"  # trained once, reused by later calls
        if path.exists():
            model, ckpt = load_model(path)
            metrics = ckpt["metrics"]
        else:
            model, metrics, _ = train_tss_model(genome, tss, dna.get("model"), dna.get("train"),
                                                dna.get("split"), seed=s, device="cpu")
            args.out.mkdir(parents=True, exist_ok=True)
            save_model(path, model, {"metrics": metrics, "split": metrics["split_blocks_0based_halfopen"]})
        if args.train_only:
            print(f"seed {s}: trained ({time.time() - t0:.0f} s)", flush=True)
            continue
        model.eval()
        res = probe_tss_attention(model, genome, tss, sites, motifs, probe, dna.get("elements"), seed=s,
                                  split=metrics["split_blocks_0based_halfopen"])
        m = res["head_motifs"].set_index(["layer", "head"])
        tt = res["tomtom"]
        test = metrics.get("splits", {}).get("test", {})
        row = {"seed": s, "test_roc_auc": test.get("roc_auc"), "test_pr_auc": test.get("pr_auc"),
               "seconds": round(time.time() - t0, 1)}
        for el in ("minus10", "minus35"):
            pc = res["summary"]["positive_control"][el]
            h = m.loc[(pc["layer"], pc["head"])]
            ref = tt[(tt.layer == pc["layer"]) & (tt["head"] == pc["head"]) & (tt.target == f"sigma70_{el}")]
            row[el] = {"found": pc["found"], "layer": pc["layer"], "head": pc["head"],
                       "peak_offset": pc["peak_offset"], "consensus": pc["consensus"],
                       "sequence_driven": bool(h.sequence_driven),
                       "relative_drop": float(h.get("intervention_relative_drop", np.nan)),
                       "intervention_q": float(h.get("intervention_q", np.nan)),
                       "tomtom_q": float(ref.q.iloc[0]) if len(ref) else None,
                       "decoy_fdr": float(ref.decoy_fdr.iloc[0]) if len(ref) else None,
                       "pass": bool(pc["found"] and h.sequence_driven)}
        out.append(row)
        print(json.dumps(row), flush=True)
    if args.train_only:
        return {"trained": seeds(args.seeds)}
    rate = {el: float(np.mean([r[el]["pass"] for r in out])) for el in ("minus10", "minus35")}
    print("pass rate over", len(out), "fresh seeds:", rate)
    return {"min_relative_drop": args.min_relative_drop, "seeds": out, "pass_rate": rate}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["null", "validate"])
    ap.add_argument("--run", type=Path, default=ROOT / "results/demo", help="a finished run's outdir")
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--max-tss", type=int, default=200)
    ap.add_argument("--offset-min", type=int, default=-100)
    ap.add_argument("--offset-max", type=int, default=20)
    ap.add_argument("--min-relative-drop", type=float, default=0.0)
    ap.add_argument("--configfile", default=str(ROOT / "config/demo.yaml"))
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-only", action="store_true", help="validate: train and save the models only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = null(args) if args.mode == "null" else validate(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"dna_probe_{args.mode}.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
