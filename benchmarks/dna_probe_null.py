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

``tf-null`` (same null models, seeds given): per model the TF attention-mass test
(seqxai.tf_probe.tf_mass_enrichment) of every head and planted TF and the total information
content of every head matrix (the top-1 windows' PFM) with its best Tomtom match; prints the
99th percentile and the maximum of ``mass_difference`` over all null heads x TFs (the
``dna.probe.tf_control.min_mass_difference`` floor) and of the information content over all
null heads (the ``dna.probe.motif_match.min_information_content`` floor), and per model whether
the TF control would pass at the p99 floor. ``tf-validate --seeds 11-15 --models DIR``: the same
statistics on the trained models ``DIR/dna_model_seed<s>.pt`` (``--trained --seeds 1``: the run's
own model), with the floors of the config, and the pass rate.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np
import pandas as pd
import torch
import yaml

from seqxai.dna_model import build_model, key_receptive_field, load_model, save_model
from seqxai.io import read_fasta, read_table
from seqxai.motifs import read_meme, tomtom_with_decoys
from seqxai.sigma70 import sigma70_reference
from seqxai.tf_probe import reported_matches, tf_control, tf_mass_enrichment, total_information
from seqxai.tf_site_enrichment import site_intervals
from seqxai.tss_probe import (
    DEFAULT_INTERVENTION,
    attention_rows,
    head_pfms,
    probe_tss_attention,
    sequence_driven_by_intervention,
)
from seqxai.tss_profiles import motif_flank, probe_window, top_offsets
from seqxai.tss_training import train_tss_model
from seqxai.tss_windows import oriented_tokens


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


def null_model(kind: str, seed: int, trained, run: Path):
    """A null model in eval mode: the trained model's architecture randomly initialised
    (``random_init``) or the run's trained model with its weight rows permuted (``shuffled``)."""
    if kind == "random_init":
        torch.manual_seed(seed)
        model = build_model(trained.config)
    else:
        model, _ = load_model(run / "models/dna/model.pt")
        model = shuffled(model, seed)
    return model.eval()


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
            model = null_model(kind, s, trained, args.run)
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


def tf_statistics(model, seq, tss, sites, motifs, seed, omin, omax, min_mass=np.inf, min_ic=np.inf,
                  n_decoys=20, alpha=0.05):
    """One model's TF mass test, TF control verdict, head-matrix information and Tomtom matches."""
    cfg = model.config
    L = len(seq)
    tokens = oriented_tokens(seq)
    t = np.where(tss.strand == "+", tss.position - 1, L - tss.position).astype(np.int64)
    keep = t + cfg["label_offset"] < L
    tss, t, s = tss[keep].reset_index(drop=True), t[keep], tss.strand.to_numpy()[keep]
    rows = attention_rows(model, tokens, t, s, 32, "cpu")
    _, key_offset = probe_window(cfg)
    f = key_receptive_field(cfg).iloc[0]
    enrich = tf_mass_enrichment(rows, key_offset, site_intervals(tss, sites, L, omin, omax),
                                int(f.lo - f.centre), int(f.hi - f.centre), seed, alpha)
    top = top_offsets(rows, key_offset, omin, omax, 1)
    pfm = head_pfms(tokens, t, s, top, motif_flank(cfg, 3))
    names = {f"L{l}H{h}": (l, h) for l in range(pfm.shape[0]) for h in range(pfm.shape[1])}
    ic = {n: total_information(pfm[l, h]) for n, (l, h) in names.items()}
    ref, _ = sigma70_reference(seq, tss)
    tt = tomtom_with_decoys({n: pfm[l, h] for n, (l, h) in names.items()}, {**motifs, **ref}, n_decoys, seed)
    tt = reported_matches(tt, ic, min_ic, alpha)
    best = tt.sort_values("p").groupby("query").head(1).set_index("query")
    heads = [{"head": n, "information_content": ic[n], "best_target": best.loc[n, "target"],
              "q": float(best.loc[n, "q"]), "decoy_p": float(best.loc[n, "decoy_p"]),
              "old_label": bool(best.loc[n, "q"] < alpha),
              "reported": sorted(tt[(tt["query"] == n) & tt.reported].target)} for n in names]
    return enrich, heads, tf_control(enrich, min_mass)


def tf_null(args):
    genome, tss, trained, _ = load_run(args.run)
    seq = next(iter(genome.values()))
    sites = read_table(args.run / "data/dna/tf_sites.parquet", "tf_sites")
    motifs = read_meme(args.run / "data/dna/tf_motifs.meme")
    out = []
    for kind in ("random_init", "shuffled"):
        for s in seeds(args.seeds):
            model = null_model(kind, s, trained, args.run)
            enrich, heads, _ = tf_statistics(model, seq, tss, sites, motifs, s, args.offset_min, args.offset_max)
            out.append({"kind": kind, "seed": s, "tf": enrich.replace({np.inf: None}).to_dict("records"),
                        "heads": heads})
            print(f"{kind:11s} seed {s:2d}: mass_difference max {enrich.mass_difference.max():.4f}, "
                  f"{int(enrich.significant.sum())} significant tests, IC max "
                  f"{max(h['information_content'] for h in heads):.2f} bits, old 'best:' labels "
                  f"{sum(h['old_label'] for h in heads)}/{len(heads)}", flush=True)
    diff = np.array([r["mass_difference"] for m in out for r in m["tf"]], float)
    auc = np.array([r["auc"] for m in out for r in m["tf"]], float)
    ic = np.array([h["information_content"] for m in out for h in m["heads"]], float)
    q = lambda x: {str(k): float(np.quantile(x, k)) for k in (0.5, 0.9, 0.95, 0.99, 1.0)}  # noqa: E731
    floor_mass, floor_ic = float(np.quantile(diff, 0.99)), float(np.quantile(ic, 0.99))
    per_model = []
    for m in out:
        e = pd.DataFrame(m["tf"])
        v = tf_control(e, floor_mass)
        per_model.append({"kind": m["kind"], "seed": m["seed"], "pass_at_p99": v["pass"],
                          "n_significant": int(e.significant.sum()),
                          "n_significant_above_p99": v["n_heads_associated"],
                          "n_heads_above_ic_p99": int(sum(h["information_content"] >= floor_ic for h in m["heads"])),
                          "old_labels": int(sum(h["old_label"] for h in m["heads"]))})
    res = {"models": out, "n_tests": len(diff), "n_heads": len(ic),
           "mass_difference_quantiles": q(diff), "auc_quantiles": q(auc), "information_content_quantiles": q(ic),
           "min_mass_difference_p99": floor_mass, "min_information_content_p99": floor_ic,
           "per_model": per_model,
           "false_positive_rate_per_model_at_p99": float(np.mean([r["pass_at_p99"] for r in per_model])),
           "share_of_models_with_a_significant_test": float(np.mean([r["n_significant"] > 0 for r in per_model]))}
    print(json.dumps({k: v for k, v in res.items() if k != "models"}, indent=1))
    return res


def tf_validate(args):
    genome, tss, _, _ = load_run(args.run)
    seq = next(iter(genome.values()))
    cfg = yaml.safe_load(Path(args.configfile).read_text())
    probe = cfg["dna"].get("probe", {})
    min_mass = float(probe["tf_control"]["min_mass_difference"])
    min_ic = float(probe["motif_match"]["min_information_content"])
    sites = read_table(args.run / "data/dna/tf_sites.parquet", "tf_sites")
    motifs = read_meme(args.run / "data/dna/tf_motifs.meme")
    out = []
    for s in seeds(args.seeds):
        path = args.run / "models/dna/model.pt" if args.trained else args.models / f"dna_model_seed{s}.pt"
        model, _ = load_model(path)
        model.eval()
        enrich, heads, verdict = tf_statistics(model, seq, tss, sites, motifs, s, args.offset_min,
                                               args.offset_max, min_mass, min_ic)
        row = {"seed": s, "model": str(path), **verdict,
               "max_mass_difference": float(enrich.mass_difference.max()),
               "tf_table": enrich.drop(columns=["n_with_site", "n_without_site"]).round(5)
               .replace({np.inf: None}).to_dict("records"), "heads": heads}
        out.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("tf_table", "heads")}), flush=True)
        for h in heads:
            print("   ", h, flush=True)
    rate = float(np.mean([r["pass"] for r in out]))
    print(f"TF control pass rate over {len(out)} models: {rate}; share of heads associated:",
          [r["share_heads_associated"] for r in out])
    return {"min_mass_difference": min_mass, "min_information_content": min_ic, "seeds": out, "pass_rate": rate}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["null", "validate", "tf-null", "tf-validate"])
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
    ap.add_argument("--models", type=Path, default=None, help="tf-validate: folder of dna_model_seed<s>.pt "
                    "(default: --out)")
    ap.add_argument("--trained", action="store_true", help="tf-validate: the run's own model (seed = --seeds)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.models = args.models or args.out
    res = {"null": null, "validate": validate, "tf-null": tf_null, "tf-validate": tf_validate}[args.mode](args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"dna_probe_{args.mode.replace('-', '_')}.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
