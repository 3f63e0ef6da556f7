"""Integrated gradients at every layer: what the one-pass design saves and what it costs.

Measured side by side in one run, on randomly initialised ESM-style classifiers (CPU):
1. all layers in one pass along the IG path vs one full path per layer (the original code's
   one-job-per-layer design), on a 6- and a 12-layer model: speed-up;
2. the all-layer pass (forward-mode JVP + backward per batch of nodes) vs the same number of
   plain forward+backward passes of the model: overhead ratio; and vs embedding-only IG;
3. peak memory (RSS above the loaded model, each in a fresh process) at n_steps 20 vs 200 with
   the same batch size: path nodes are processed in batches and accumulated, so memory should
   not grow with the number of steps;
4. shard balance: most expensive / mean shard of the cost-balanced assignment vs round robin.
Timings are medians of interleaved repeats. Usage:
    OMP_NUM_THREADS=1 python benchmarks/attribution_benchmark.py [--quick]

Measured 2026-12-02 on 2 shared CPU cores (load 6-8, so +-20%), hidden 64, 4 heads, 166 tokens,
32 steps in batches of 16: one pass vs per-layer recomputation 5.7x (6 layers) and 13.4x
(12 layers); all-layer pass vs the same number of plain forward+backward passes 2.4x / 2.6x
(vs embedding-only IG 2.6x / 2.7x); peak RSS above the model at batch 10: 179 MiB at 20 steps,
197 MiB at 200 steps (1.10x; 1.39x and 1.43x in two earlier runs under load); shards of
25,000 log-normal proteins in 400: 1.002 balanced vs 1.231 round robin. docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

SEQ = ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLG"
       "QHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQ")


def build(n_layers: int, hidden: int, heads: int, workdir: Path):
    import torch

    from seqxai import attribution as at
    from seqxai import protein_model as pm

    torch.manual_seed(0)
    path = workdir / f"enc{n_layers}"
    pm.build_demo_encoder({"hidden_size": hidden, "num_hidden_layers": n_layers,
                           "num_attention_heads": heads, "intermediate_size": 2 * hidden,
                           "max_position_embeddings": 512, "position_embedding_type": "absolute"},
                          path)
    model, tok = pm.make_classifier(path, 6, dropout=0.0)
    model.eval()
    enc = pm.encode(tok, [SEQ], 512)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    return model, ids, att, base


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_of(fns: dict, repeats: int) -> dict:
    """Interleaved repeats (A B C A B C ...) so that load changes hit every variant alike."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def speed(n_layers: int, n_steps: int, batch: int, repeats: int, workdir: Path) -> dict:

    from seqxai import attribution as at

    model, ids, att, base = build(n_layers, 64, 4, workdir)
    fwd = {"residue_mask": model.residue_mask(ids[None], att[None]),
           "position_ids": model.position_ids(ids[None])}

    def plain():  # the same number of forward+backward passes over batches of `batch` sequences
        for start in range(0, n_steps, batch):
            m = min(batch, n_steps - start)
            out = model(ids[None].expand(m, -1), att[None].expand(m, -1),
                        **{k: v.expand(m, -1) for k, v in fwd.items()})[:, 0].sum()
            model.zero_grad(set_to_none=True)
            out.backward()

    def all_layers():
        at.integrated_gradients(model, ids, att, 0, base, n_steps, batch)

    def per_layer():
        for l in range(n_layers):
            at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, layer_ids=[l])

    def embedding_only():
        at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, layers=False)

    def difference():  # conductance="difference": Captum's scheme, no forward-mode pass
        at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, conductance="difference")

    all_layers()  # warm-up
    difference()
    t = median_of({"plain": plain, "embedding_only": embedding_only, "all_layers": all_layers,
                   "per_layer": per_layer, "difference": difference}, repeats)
    return {"n_layers": n_layers, "tokens": int(ids.numel()), "n_steps": n_steps, "batch": batch,
            "seconds": t,
            "speedup_one_pass_vs_per_layer": t["per_layer"] / t["all_layers"],
            "overhead_all_layers_vs_plain_fwd_bwd": t["all_layers"] / t["plain"],
            "overhead_all_layers_vs_embedding_only": t["all_layers"] / t["embedding_only"],
            "overhead_difference_vs_plain_fwd_bwd": t["difference"] / t["plain"]}


def memory_child(n_layers: int, n_steps: int, batch: int) -> None:
    """Print the peak RSS (MiB) above the loaded model of one all-layer IG run (fresh process)."""
    import resource
    import threading

    import psutil
    import torch

    from seqxai import attribution as at

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        model, ids, att, base = build(n_layers, 64, 4, Path(d))
        at.integrated_gradients(model, ids, att, 0, base, 2, 2)  # load lazy kernels first
        proc = psutil.Process()
        before = proc.memory_info().rss
        peak = [before]
        done = threading.Event()

        def sample():  # RSS every 2 ms: ru_maxrss cannot be reset between phases
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.002)

        th = threading.Thread(target=sample)
        th.start()
        at.integrated_gradients(model, ids, att, 0, base, n_steps, batch)
        done.set()
        th.join()
        peak[0] = max(peak[0], proc.memory_info().rss)
    print(json.dumps({"n_steps": n_steps, "peak_above_model_mib": (peak[0] - before) / 2**20,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory(n_layers: int, steps: list[int], batch: int, repeats: int) -> dict:
    out = {}
    for n in steps:
        vals = []
        for _ in range(repeats):
            res = subprocess.run([sys.executable, __file__, "--memory-child", str(n_layers), str(n),
                                  str(batch)], capture_output=True, text=True, check=True)
            vals.append(json.loads(res.stdout.strip().splitlines()[-1])["peak_above_model_mib"])
        out[n] = statistics.median(vals)
    return out


def shard_balance() -> list[str]:
    """Most expensive shard / mean shard (estimated cost tokens x n_steps) of the cost-balanced
    assignment vs round robin over accessions (the previous assignment), on log-normal
    protein lengths (median 350, sigma 0.6, cut at 998 residues; seed 0)."""
    import numpy as np

    from seqxai.attribution import balanced_shards, estimated_cost

    rng = np.random.default_rng(0)
    lines = []
    for n, m in [(200, 8), (1000, 100), (2700, 400), (25000, 400)]:
        lengths = np.minimum(np.round(rng.lognormal(np.log(350), 0.6, n)).astype(int), 998)
        cost = estimated_cost(["A" * x for x in lengths], 1000, 500)
        ratio = {}
        for name, shard in [("balanced", balanced_shards(cost, m)), ("round robin", np.arange(n) % m)]:
            loads = np.bincount(shard, weights=cost, minlength=m)
            ratio[name] = loads.max() / loads.mean()
        lines.append(f"{n} proteins in {m} shards: max/mean shard cost balanced "
                     f"{ratio['balanced']:.3f}, round robin {ratio['round robin']:.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    import torch

    torch.set_num_threads(1)
    for line in shard_balance():
        print(line)
    n_steps, batch, repeats = (16, 8, 2) if args.quick else (32, 16, 3)
    with tempfile.TemporaryDirectory() as d:
        for n_layers in (6, 12):
            r = speed(n_layers, n_steps, batch, repeats, Path(d))
            s = r["seconds"]
            print(f"{n_layers} layers, {r['tokens']} tokens, {n_steps} steps in batches of {batch}: "
                  f"plain fwd+bwd {s['plain']:.2f}s, embedding-only IG {s['embedding_only']:.2f}s, "
                  f"all-layer IG {s['all_layers']:.2f}s, per-layer IG x{n_layers} {s['per_layer']:.2f}s")
            print("  speed-up one pass vs per-layer recomputation: "
                  f"{r['speedup_one_pass_vs_per_layer']:.2f}x")
            print(f"  overhead all-layer pass vs the same number of plain fwd+bwd passes: "
                  f"{r['overhead_all_layers_vs_plain_fwd_bwd']:.2f}x "
                  f"(vs embedding-only IG {r['overhead_all_layers_vs_embedding_only']:.2f}x)")
            print(f"  overhead all-layer pass with conductance=difference vs plain fwd+bwd: "
                  f"{r['overhead_difference_vs_plain_fwd_bwd']:.2f}x ({s['difference']:.2f}s)")
    mem = memory(6, [20, 200], batch=10, repeats=1 if args.quick else 2)
    print(f"peak RSS above the loaded 6-layer model, batch 10: n_steps 20 {mem[20]:.1f} MiB, "
          f"n_steps 200 {mem[200]:.1f} MiB; ratio 200/20 = {mem[200] / max(mem[20], 1e-9):.2f}")


if __name__ == "__main__":
    main()
