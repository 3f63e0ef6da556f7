"""Compile the numba kernels of memelite (Tomtom) and modisco-lite (TF-MoDISco) once, into
their on-disk caches (``cache=True``: the packages' ``__pycache__``, or ``NUMBA_CACHE_DIR``).

`make venv` runs this after installing: a fresh environment otherwise compiles Tomtom's
kernels (~60 s of CPU) in the first process that calls it, and in every process that calls it
before the cache is written, e.g. the TSS-probe jobs of several workflows started at once by the
test suite. Inputs are tiny but of the dtypes and shapes the workflow passes, so the cached
signatures are the ones the rules use.
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seqxai import dna_modisco, motifs  # noqa: E402


def main() -> None:
    t0 = time.time()
    rng = np.random.default_rng(0)
    motif = "TTGACAATTAAT"
    n, length = 120, 40
    idx = rng.integers(0, 4, (n, length))
    hyp = rng.normal(0, 0.05, (n, length, 4))
    start = rng.integers(2, length - len(motif) - 2, n)
    for i in range(n):
        for j, c in enumerate(motif):
            idx[i, start[i] + j] = "ACGT".index(c)
            hyp[i, start[i] + j, "ACGT".index(c)] += 1.0
    hyp -= hyp.mean(-1, keepdims=True)
    onehot = np.eye(4, dtype=np.float32)[idx]
    dna_modisco.find_patterns(onehot, hyp.astype(np.float32),
                              {"sliding_window_size": 8, "flank_size": 4, "min_metacluster_size": 20,
                               "n_leiden_runs": 1, "final_min_cluster_size": 10})
    queries = {f"q{k}": rng.dirichlet(np.ones(4), size=13) * 10 for k in range(3)}
    targets = {f"t{k}": rng.dirichlet(np.ones(4), size=6 + k) * 10 for k in range(4)}
    motifs.tomtom(queries, targets)
    motifs.tomtom_with_decoys(queries, targets, n_decoys=2)
    print(f"numba caches warm ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
