"""The paired test against the controls (seqxai.paired_r) on a null: models that differ by seed only.

    .venv/bin/python benchmarks/paired_r_null.py --run results/demo --configfile config/demo.yaml \
        --seeds 11-14 --variants frozen,shuffled --out /tmp/paired_r_null

For each task and control variant, one model per seed, as the workflow builds it (frozen: the
run's pretrained encoder, frozen, with a head trained from that seed; shuffled: the rows of
every Linear weight and bias permuted with that seed, then a head trained), attributed on the
run's proteins and summarised by the head statistics. Seeds are paired in order (11 vs 12,
13 vs 14, ...), the first standing for the fine-tuned model and the second for its control:
the two are exchangeable, so the paired one-sided Wilcoxon p is uniform under this null and
``analysis.variant_comparison.max_p`` is the rate at which an embedding-level check passes on
it. It is not: the two models differ as wholes (one head, one permutation), so every protein's
difference shifts the same way and the proteins are not independent replicates of the
comparison. Prints per comparison the embedding-level p of every (annotation, group) and the
number of BH-significant heads, and the percentiles of |median paired difference| under this
null (the floor ``analysis.variant_comparison.min_difference`` is their 99th percentile);
``--min-difference`` counts the checks that pass p and floor (validation on fresh seeds).
Writes ``<out>/null.json``.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np
import torch
import yaml


def seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b) + 1)) if b else [int(x) for x in text.split(",")]


def load_config(configfiles) -> dict:
    """config/config.yaml updated by the given files (as Snakemake merges them), schema defaults
    filled in."""
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for f in configfiles:
        update_config(config, yaml.safe_load(Path(f).read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a workflow output folder (data, pretrained encoder)")
    ap.add_argument("--configfile", nargs="+", default=["config/demo.yaml"])
    ap.add_argument("--seeds", default="11-14")
    ap.add_argument("--variants", default="frozen,shuffled")
    ap.add_argument("--tasks", default=None, help="comma-separated (default: every task)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--min-difference", type=float, default=None,
                    help="validate: the embedding-level floor on the median paired difference")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from seqxai.attribution_shards import run_attribution_shard
    from seqxai.attribution_tables import gather_attributions, shard_tables
    from seqxai.head_statistics import wenzel_statistics_streaming
    from seqxai.io import read_table
    from seqxai.paired_r import groups_of, paired_r_tests
    from seqxai.protein_model import run_finetuning

    cfg = load_config(args.configfile)
    run, out = Path(args.run), Path(args.out)
    proteins, splits = run / "data/protein/proteins.parquet", run / "data/protein/splits.parquet"
    annotations = read_table(run / "data/protein/residue_annotations.parquet", "residue_annotations")
    encoder = (str(run / "models/protein/pretrained") if cfg["protein"]["mlm"]["enabled"]
               else cfg["protein"]["encoder"]["pretrained"])
    finetune = {k: v for k, v in cfg["protein"]["finetune"].items() if k != "max_memory_gb"}
    attribution = {k: cfg["attribution"][k] for k in ("n_steps", "conductance", "split", "max_proteins", "layers")}
    an = cfg["analysis"]
    max_p = an["variant_comparison"]["max_p"]
    seed_list = seeds(args.seeds)
    if len(seed_list) % 2:
        raise SystemExit("an even number of seeds: they are compared in pairs")
    tasks = args.tasks.split(",") if args.tasks else sorted(cfg["protein"]["tasks"])
    result = {"seeds": seed_list, "max_p": max_p, "alpha": an["alpha"], "comparisons": []}
    for task in tasks:
        tcfg = cfg["protein"]["tasks"][task]
        per_target = tcfg["type"] == "single_label" or len(tcfg.get("attribute_terms", [])) > 1
        models = {}
        for variant in args.variants.split(","):
            for s in seed_list:
                name = f"{variant}_s{s}"
                d = out / task / name
                if not (d / "metrics.json").is_file():
                    run_finetuning(proteins, splits, encoder, {"name": task, **tcfg}, finetune,
                                   d / "model", d / "metrics.json", d / "training_log.tsv",
                                   max_length=cfg["protein"]["max_length"], seed=s, variant=variant,
                                   checkpoint_dir=out / "checkpoints" / task / name, device="cpu")
                models[name] = d / "model"
                print(f"{task} {name}: test {json.loads((d / 'metrics.json').read_text()).get('test')}",
                      flush=True)
        shard = out / task / "shard"
        if not shard.is_dir():
            run_attribution_shard({k: str(v) for k, v in models.items()}, proteins, splits, attribution,
                                  0, 1, shard, device="cpu", threads=1,
                                  batch_size=cfg["attribution"]["batch_size"])
        per = {}
        for name in models:
            g = out / task / name / "attribution"
            paths = [g / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
            if not paths[0].is_file():
                gather_attributions(shard_tables([shard], "embedding", name),
                                    shard_tables([shard], "heads", name), *paths,
                                    cfg["attribution"]["delta_tolerance"])
            per[name] = wenzel_statistics_streaming(read_table(paths[0]), paths[1], annotations,
                                                    an["annotation_types"], an["alpha"], per_target,
                                                    an["keep_special_tokens"])
        for variant in args.variants.split(","):
            for a, b in zip(seed_list[::2], seed_list[1::2]):
                na, nb = f"{variant}_s{a}", f"{variant}_s{b}"
                heads = per[na]["heads"]
                grid = (int(heads["layer"].max()) + 1, int(heads["head"].max()) + 1)
                tab = paired_r_tests({"finetuned": per[na]["per_protein"], nb: per[nb]["per_protein"]},
                                     grid, groups_of(heads), an["alpha"])
                emb = tab[(tab["level"] == "embedding") & tab["p"].notna()]
                hd = tab[tab["level"] == "head"]
                row = {"task": task, "variant": variant, "a": na, "b": nb,
                       "embedding": [{"annotation": r.annotation, "group": r.group, "n": int(r.n_proteins),
                                      "p": float(r.p), "median_difference": float(r.median_difference)}
                                     for r in emb.itertuples()],
                       "n_embedding_below_max_p": int((emb["p"] < max_p).sum()),
                       "n_heads_tested": int(hd["p"].notna().sum()),
                       "n_heads_significant": int(hd["significant"].sum()),
                       "n_heads_p_below_alpha": int((hd["p"] < an["alpha"]).sum()),
                       "head_median_difference": hd["median_difference"].dropna().tolist()}
                result["comparisons"].append(row)
                print(f"{task} {na} vs {nb}: embedding p < {max_p}: {row['n_embedding_below_max_p']} of "
                      f"{len(emb)} (min p {emb['p'].min():.3g}); heads BH-significant "
                      f"{row['n_heads_significant']} of {row['n_heads_tested']}, raw p < {an['alpha']}: "
                      f"{row['n_heads_p_below_alpha']}", flush=True)
    ps = np.array([e["p"] for c in result["comparisons"] for e in c["embedding"]])
    md = np.array([e["median_difference"] for c in result["comparisons"] for e in c["embedding"]])
    hmd = np.array([x for c in result["comparisons"] for x in c["head_median_difference"]])
    result["embedding_p_all"] = ps.tolist()
    result["embedding_share_below_max_p"] = float((ps < max_p).mean()) if len(ps) else None
    print(f"all embedding-level checks: {int((ps < max_p).sum())} of {len(ps)} below {max_p}; "
          f"p quartiles {np.percentile(ps, [25, 50, 75]).round(3).tolist() if len(ps) else []}")
    # the pair's order is arbitrary (exchangeable): |median difference| is the null of either order
    for name, x in (("embedding", np.abs(md)), ("head", np.abs(hmd))):
        q = np.percentile(x, [50, 90, 95, 99, 100]).round(4).tolist() if len(x) else []
        result[f"{name}_abs_median_difference_percentiles_50_90_95_99_100"] = q
        print(f"{name} level |median difference| under the null (n={len(x)}): 50/90/95/99/100th "
              f"percentiles {q}")
    if args.min_difference is not None:
        ok = (ps < max_p) & (md >= args.min_difference)
        result["min_difference"] = args.min_difference
        result["embedding_share_passing_with_floor"] = float(ok.mean()) if len(ps) else None
        per_cmp = [sum(e["p"] < max_p and e["median_difference"] >= args.min_difference
                       for e in c["embedding"]) for c in result["comparisons"]]
        print(f"with the floor {args.min_difference}: {int(ok.sum())} of {len(ps)} embedding-level "
              f"checks pass (p < {max_p} and median difference >= floor); per comparison {per_cmp}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "null.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
