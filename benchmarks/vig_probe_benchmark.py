"""Vig probe counter: vectorised streaming counter against a per-pair Python loop.

Both count the same definition (METHODS.md section 2) on identical attention arrays; the
script checks the numbers agree, prints the speed-up, and the peak memory of the streaming
counter for N and 4N proteins (it should barely grow with the number of proteins: only the
per-protein counts behind the protein-level bootstrap, proteins x heads x properties small integers,
are kept).

    .venv/bin/python benchmarks/vig_probe_benchmark.py [--length 100] [--proteins 3]
"""
import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from seqxai.attention_probes import amino_acid_masks  # noqa: E402
from seqxai.high_confidence_attention import HighConfidenceCounter  # noqa: E402


def protein(rng, n, n_layers, n_heads):
    attn = rng.dirichlet(np.full(n, 0.05), size=(n_layers, n_heads, n)).astype(np.float32)
    contact = np.triu(rng.random((n, n)) < 0.03, 1)
    contact = contact | contact.T
    resolved = rng.random(n) > 0.05
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))
    keys = {"binding_site": rng.random(n) < 0.05, **amino_acid_masks(seq)}
    return attn, contact, keys, resolved


def naive(proteins, theta=0.3, min_sep=6):
    """The definition, pair by pair: total[l,h], hits[name][l,h]."""
    n_layers, n_heads = proteins[0][0].shape[:2]
    total = np.zeros((n_layers, n_heads), np.int64)
    hits = {"contact": np.zeros((n_layers, n_heads), np.int64)}
    for attn, contact, keys, resolved in proteins:
        n = attn.shape[-1]
        for name in keys:
            hits.setdefault(name, np.zeros((n_layers, n_heads), np.int64))
        for layer in range(n_layers):
            for head in range(n_heads):
                a = attn[layer, head]
                for i in range(n):
                    for j in range(n):
                        if a[i, j] >= theta:
                            total[layer, head] += 1
                            if contact[i, j] and abs(i - j) >= min_sep and resolved[i] and resolved[j]:
                                hits["contact"][layer, head] += 1
                            for name, k in keys.items():
                                if k[j]:
                                    hits[name][layer, head] += 1
    return total, hits


def vectorised(proteins, theta=0.3):
    n_layers, n_heads = proteins[0][0].shape[:2]
    c = HighConfidenceCounter(n_layers, n_heads, theta)
    for attn, contact, keys, resolved in proteins:
        c.add(attn, {"contact": contact}, keys, resolved)
    return c


def peak_streaming(rng, n_proteins, n, n_layers, n_heads):
    """Peak traced memory of streaming n_proteins through the counter, one at a time."""
    c = HighConfidenceCounter(n_layers, n_heads)
    tracemalloc.start()
    for _ in range(n_proteins):
        attn, contact, keys, resolved = protein(rng, n, n_layers, n_heads)
        c.add(attn, {"contact": contact}, keys, resolved)
        del attn
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--proteins", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    proteins = [protein(rng, args.length, args.layers, args.heads) for _ in range(args.proteins)]
    t0 = time.perf_counter()
    total, hits = naive(proteins)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    c = vectorised(proteins)
    t_vec = time.perf_counter() - t0
    assert np.array_equal(c.total, total), "totals differ"
    for name, h in hits.items():
        assert np.array_equal(c.hits[name], h), f"{name} differs"
    print(f"{args.proteins} proteins x {args.length} residues, {args.layers} layers x {args.heads} heads, "
          f"{len(hits)} properties; identical counts ({int(total.sum())} high-confidence weights)")
    print(f"per-pair loop  {t_naive:9.3f} s")
    print(f"vectorised     {t_vec:9.3f} s")
    print(f"speed-up       {t_naive / t_vec:9.0f}x")
    small = peak_streaming(np.random.default_rng(1), 4, args.length, args.layers, args.heads)
    large = peak_streaming(np.random.default_rng(1), 16, args.length, args.layers, args.heads)
    print(f"peak memory streaming 4 proteins {small / 2**20:.1f} MiB, 16 proteins {large / 2**20:.1f} MiB "
          f"(ratio {large / small:.2f})")


if __name__ == "__main__":
    main()
