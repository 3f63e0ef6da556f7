"""Attribution methods side by side: AttnLRP vs one plain forward+backward, IG vs AttnLRP.

One run, the same proteins, randomly initialised ESM-2-style classifiers (rotary positions,
hidden 320, 20 heads, intermediate 1280: ESM-2 8M's shape) at 6 and 12 layers. Per protein
and model, interleaved repeats, medians:
- plain: one forward and one backward to the embedding output (no rules, no head table);
- attnlrp: seqxai.attnlrp.attnlrp with the per-head table (goal: <= 1.5x plain);
- ig exact / ig difference: integrated gradients with the per-head conductance
  (conductance jvp / difference) at ``--n-steps`` nodes, as the workflow runs it;
- grad_x_input, attention_rollout for reference.
Besides wall time, the matmul FLOPs of each (torch.utils.flop_counter's registry, forward,
backward and forward-mode AD together), which do not move with the machine's load.
Usage:
    OMP_NUM_THREADS=1 python benchmarks/attribution_methods_benchmark.py [--n-steps 50] [--quick]
Measured 2026-12-04 on 2 shared CPU cores (load 3-5), 3 proteins of 200 residues, IG at 10 nodes:
AttnLRP / plain forward+backward 1.03x (6 layers) and 0.97x (12), the same matmul FLOPs;
IG exact / AttnLRP 30.1x and 27.1x (FLOPs 25.3x), IG difference / AttnLRP 11.1x and 8.5x
(FLOPs 11.0x); at 50 nodes the FLOP ratios are 122.5x and 51.0x. docs/attribution_methods.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def proteins(n: int, length: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(AMINO), length)) for _ in range(n)]


def build(n_layers: int, workdir: Path, hidden: int, heads: int):
    import torch

    from seqxai import protein_model as pm

    torch.manual_seed(0)
    path = workdir / f"enc{n_layers}"
    pm.build_demo_encoder({"hidden_size": hidden, "num_hidden_layers": n_layers,
                           "num_attention_heads": heads, "intermediate_size": 4 * hidden,
                           "max_position_embeddings": 1026, "position_embedding_type": "rotary"},
                          path)
    model, tok = pm.make_classifier(path, 6, dropout=0.0)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    return model.eval(), tok


def plain(model, ids, att, target):
    """One forward and one backward to the embedding output: the unit of cost."""
    from seqxai.method_cost import plain_forward_backward

    return plain_forward_backward(model, ids, att, target)


def matmul_flops():
    """FlopCounterMode's registry as a dispatch mode (seqxai.method_cost, which the workflow's
    faithfulness benchmark uses too)."""
    from seqxai.method_cost import matmul_flops as count

    return count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 12])
    ap.add_argument("--proteins", type=int, default=3)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--n-steps", type=int, default=50, help="IG nodes (the study runs 500)")
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--heads", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="1 protein of 60 residues, 8 steps, 1 repeat")
    ap.add_argument("--skip-ig", action="store_true",
                    help="only the one-pass methods (more repeats of the attnlrp / plain ratio in little time)")
    args = ap.parse_args()
    if args.quick:
        args.proteins, args.length, args.n_steps, args.repeats = 1, 60, 8, 1
    import torch

    from seqxai import attribution as at
    from seqxai import protein_model as pm
    from seqxai.attribution_methods import attribute

    def runs(model, tok, seq):
        enc = pm.encode(tok, [seq], 1024)
        ids, att = enc["input_ids"][0], enc["attention_mask"][0]
        base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
        fns = {
            "plain": lambda: plain(model, ids, att, 0),
            "attnlrp": lambda: attribute("attnlrp", model, ids, att, 0, base),
            "ig exact": lambda: attribute("ig", model, ids, att, 0, base, args.n_steps, args.batch_size,
                                          conductance="jvp"),
            "ig difference": lambda: attribute("ig", model, ids, att, 0, base, args.n_steps,
                                               args.batch_size, conductance="difference"),
            "grad_x_input": lambda: attribute("grad_x_input", model, ids, att, 0, base),
            "attention_rollout": lambda: attribute("attention_rollout", model, ids, att, 0, base),
        }
        return {k: v for k, v in fns.items() if not (args.skip_ig and k.startswith("ig"))}

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.proteins} proteins of "
          f"{args.length} residues; ESM-2-style hidden {args.hidden}, {args.heads} heads; IG at "
          f"{args.n_steps} nodes, batches of {args.batch_size}; medians of {args.repeats} interleaved repeats")
    seqs = proteins(args.proteins, args.length)
    with tempfile.TemporaryDirectory() as tmp:
        for n_layers in args.layers:
            model, tok = build(n_layers, Path(tmp), args.hidden, args.heads)
            secs, flops = {}, {}
            for i, seq in enumerate(seqs):
                fns = runs(model, tok, seq)
                if i == 0:  # warm-up and FLOPs (proteins of equal length: the same for each)
                    for name, fn in fns.items():
                        with matmul_flops() as fc:
                            fn()
                        flops[name] = fc.total * len(seqs)
                for _ in range(args.repeats):
                    for name, fn in fns.items():
                        t0 = time.perf_counter()
                        fn()
                        secs.setdefault(name, []).append(time.perf_counter() - t0)
            med = {k: statistics.median(v) * len(seqs) for k, v in secs.items()}  # per protein set
            print(f"\n{n_layers} layers: time (s, all proteins) and matmul GFLOP")
            for name in med:
                print(f"  {name:18s} {med[name]:9.3f} s  {flops[name] / 1e9:10.2f} GFLOP")
            print(f"  attnlrp / plain forward+backward: time {med['attnlrp'] / med['plain']:.2f}, "
                  f"FLOPs {flops['attnlrp'] / flops['plain']:.2f} (goal <= 1.5)")
            for ig in [] if args.skip_ig else ["ig exact", "ig difference"]:
                print(f"  {ig} / attnlrp: time {med[ig] / med['attnlrp']:.1f}, "
                      f"FLOPs {flops[ig] / flops['attnlrp']:.1f} ({args.n_steps} nodes)")


if __name__ == "__main__":
    main()
