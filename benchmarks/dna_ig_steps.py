"""How many Gauss-Legendre nodes the DNA integrated gradients need (issue 16, point 7).

    .venv/bin/python benchmarks/dna_ig_steps.py --run results/demo --configfile config/demo.yaml \\
        --ladder 8,16,32 --max-steps 256 --null-seeds 1-3

For a finished run's TSS model and the windows ``attribute_dna`` attributes (same TSS sample):
- ``ladder``: the relative completeness delta ``|sum attr - (F(x) - F(x'))| / |F(x) - F(x')|``
  of every window at each fixed node count (median, 90th percentile, max, windows above the
  tolerance), and the smallest ``|F(x) - F(x')|`` (a near-zero denominator would inflate it);
- ``adaptive``: :func:`seqxai.dna_attribution.adaptive_integrated_gradients` from the config's
  ``n_steps`` to ``--max-steps``: windows per node count, not converged, and the cost in
  (window, node) gradient rows against the fixed ``n_steps``;
- ``scan``: for the worst windows at ``n_steps``, F along the path on a 2001-point grid: the
  largest |dF/dalpha| against its mean, and per layer and head the steepest change of an
  attention weight of the predicting position (per unit alpha): a saturated head switching
  within a small stretch of the path makes the integrand nearly a step, which no fixed rule
  of a few nodes integrates;
- ``null``: the ladder on randomly initialised models of the same architecture (one per seed).
Writes ``<out>/dna_ig_steps.json``. Uses 1 CPU thread.
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

from seqxai import dna_attribution as da  # noqa: E402
from seqxai.dna_model import build_model, load_model  # noqa: E402
from seqxai.io import read_fasta, read_table  # noqa: E402
from seqxai.tss_windows import oriented_tokens  # noqa: E402


def windows(run: Path, cfg: dict, seed: int):
    genome = read_fasta(run / "data/dna/genome.fasta")
    tss = read_table(run / "data/dna/tss.parquet", "tss")
    model, ckpt = load_model(run / "models/dna/model.pt", "cpu")
    seq = next(iter(genome.values()))
    lo = model.config["label_offset"]
    sel = da.select_tss(tss, len(seq), lo, cfg["tss_set"], ckpt.get("split"), int(cfg["max_tss"]), seed)
    left, right = da.window_extent(model.config, int(cfg["offset_min"]), int(cfg["offset_max"]))
    x = da.tss_windows(oriented_tokens(seq), sel.t_index.to_numpy(), sel.strand.to_numpy(), lo, left, right)
    ref = da.reference_distribution(cfg["baseline"], oriented_tokens(seq)["+"])
    return model, x, left, ref


def describe(rel, tol):
    return {"median": float(np.median(rel)), "p90": float(np.quantile(rel, 0.9)), "max": float(rel.max()),
            "above_tolerance": int((rel > tol).sum()), "windows": len(rel)}


def ladder(model, x, left, ref, steps, tol, batch):
    out = {}
    for n in steps:
        t0 = time.time()
        r = da.integrated_gradients(model, x, left, ref, n, batch)
        out[n] = {**describe(da.relative_delta(r), tol),
                  "min_abs_gap": float(np.abs(r["f_input"] - r["f_baseline"]).min())}
        print(f"  {n:4d} nodes: {out[n]}  ({time.time() - t0:.0f} s)", flush=True)
    return out


def scan(model, x, left, ref, idx, grid=2001):
    """F along the path and the steepest attention change of the predicting position."""
    E4 = model.embed.weight[:4].detach()
    al = np.linspace(0, 1, grid)
    res = {}
    for i in idx:
        F, A = [], []
        xt1 = torch.as_tensor(x[i : i + 1])
        acgt = (xt1 < 4).float()[..., None]
        R0 = torch.as_tensor(ref, dtype=torch.float32) * acgt
        with torch.no_grad():
            e0 = model.embed(xt1) * (1 - acgt) + R0 @ E4
            diff = (torch.as_tensor(da.one_hot(x[i : i + 1])) - R0) @ E4
            for c in range(0, grid, 256):
                a = torch.as_tensor(al[c : c + 256], dtype=torch.float32)
                path = e0 + a[:, None, None] * diff
                with da._hooks(model, lambda path=path: path):
                    f, att = model(xt1.expand(len(a), -1), return_attention=True,
                                   attention_queries=torch.tensor([left]))
                F.append(f[:, left].double().numpy())
                A.append(att[:, :, :, 0].numpy())                       # alpha, layer, head, key
        F, A = np.concatenate(F), np.concatenate(A)
        dF = np.diff(F) / np.diff(al)
        dA = np.abs(np.diff(A, axis=0)).max(-1) / np.diff(al)[:, None, None]
        l, h = np.unravel_index(dA.max(0).argmax(), dA.shape[1:])
        res[int(i)] = {"max_abs_dF": float(np.abs(dF).max()), "mean_abs_dF": float(np.abs(dF).mean()),
                       "alpha_of_max_dF": float(al[np.abs(dF).argmax()]),
                       "steepest_head": [int(l), int(h)], "max_attention_change_per_alpha": float(dA.max()),
                       "alpha_of_steepest_head": float(al[dA[:, l, h].argmax()])}
        print(f"  window {i}: {res[int(i)]}", flush=True)
    return res


def seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b) + 1)) if b else [int(v) for v in text.split(",") if v]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "results/demo")
    ap.add_argument("--configfile", type=Path, default=ROOT / "config/demo.yaml")
    ap.add_argument("--ladder", default="8,16,32", help="fixed node counts on every window")
    ap.add_argument("--max-steps", type=int, default=256)
    ap.add_argument("--scan", type=int, default=3, help="path scans of the worst windows")
    ap.add_argument("--null-seeds", default="", help="randomly initialised models, e.g. 1-3")
    ap.add_argument("--null-windows", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-tss", type=int, default=None, help="override dna.attribution.max_tss (a quick look)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = {**da.DEFAULT_ATTRIBUTION, **yaml.safe_load(args.configfile.read_text())["dna"]["attribution"]}
    if args.max_tss is not None:
        cfg["max_tss"] = args.max_tss
    tol, n0 = float(cfg["delta_tolerance"]), int(cfg["n_steps"])
    model, x, left, ref = windows(args.run, cfg, args.seed)
    print(f"{len(x)} windows of {x.shape[1]} tokens; tolerance {tol}", flush=True)
    out = {"tolerance": tol, "n_windows": len(x), "ladder": ladder(model, x, left, ref, seeds(args.ladder), tol,
                                                                      args.batch_size)}
    t0 = time.time()
    r = da.adaptive_integrated_gradients(model, x, left, ref, n0, args.max_steps, tol, args.batch_size)
    rows = sum(d["steps"] * d["windows"] for d in r["rounds"])
    out["adaptive"] = {"n_steps": n0, "max_steps": args.max_steps, "rounds": r["rounds"],
                       "windows_by_steps": {int(k): int((r["steps"] == k).sum()) for k in np.unique(r["steps"])},
                       "not_converged": int((~r["converged"]).sum()),
                       "relative_delta": describe(r["relative_delta"], tol),
                       "gradient_rows": rows, "cost_vs_fixed_n_steps": rows / (n0 * len(x)),
                       "seconds": time.time() - t0}
    print(f"adaptive: {out['adaptive']}", flush=True)
    worst = np.argsort(-da.relative_delta(da.integrated_gradients(model, x, left, ref, n0, args.batch_size)))
    out["scan"] = scan(model, x, left, ref, worst[: args.scan]) if args.scan else {}
    out["null"] = {}
    for s in seeds(args.null_seeds):
        torch.manual_seed(s)
        null = build_model(model.config).eval()
        print(f"randomly initialised model, seed {s}:", flush=True)
        out["null"][s] = ladder(null, x[: args.null_windows], left, ref, seeds(args.ladder), tol, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dna_ig_steps.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
