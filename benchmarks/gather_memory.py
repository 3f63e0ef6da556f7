"""Peak memory of the attribution gather and the head statistics: streaming vs in memory.

Builds synthetic attribution shards in the layout of ``attribute_proteins``
(``shards/{k}-of-{n}/{embedding,heads}.parquet``; 30 layers x 16 heads = 480 head rows per
protein, as ProtBert-BFD) and runs, each in a fresh subprocess so that the peaks are
separate:
- gather, streaming: ``gather_attributions`` (head table appended shard by shard);
- gather, in memory: the former implementation (every shard's head table read, concatenated
  and sorted, then written);
- statistics, streaming: ``run_head_statistics`` (head table read in batches, one protein at a
  time);
- statistics, in memory: the whole head table read, then ``wenzel_statistics``.
It prints the peak resident memory (ru_maxrss) of each, the increase over the same process
after its imports, the wall time, and the ratios; it also checks that both statistics give
identical tables. Run: ``.venv/bin/python benchmarks/gather_memory.py [--shards 40 ...]``.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

TYPES = ["active_site", "binding_site", "motif", "transmembrane"]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from types import SimpleNamespace
sys.path.insert(0, {scripts!r})
import numpy as np, pandas as pd, pyarrow, scipy.stats, statsmodels.stats.multitest
from seqxai.attribution_tables import (concat_shards, convergence_summary, flag_convergence,
                                       gather_attributions, shard_tables)
from seqxai.head_statistics import run_head_statistics, wenzel_statistics
from seqxai.io import read_table, write_table
d = Path({root!r}); mode = {mode!r}
shards = sorted((d / "shards").iterdir(), key=lambda p: int(p.name.split("-of-")[0]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode.startswith("gather"):
    out = d / mode
    emb_paths, head_paths = shard_tables(shards, "embedding"), shard_tables(shards, "heads")
    if mode == "gather_streaming":
        gather_attributions(emb_paths, head_paths, out / "embedding.parquet", out / "heads.parquet",
                            out / "convergence.parquet", 0.05)
    else:  # the former gather: all head shards in memory, concatenated and sorted
        emb = flag_convergence(concat_shards([read_table(p) for p in emb_paths]), 0.05)
        write_table(out / "embedding.parquet", emb)
        write_table(out / "heads.parquet", concat_shards([read_table(p) for p in head_paths]))
        write_table(out / "convergence.parquet", convergence_summary(emb, 0.05))
else:
    out = d / mode
    names = dict(heads="heads", embedding="embedding", positive="positive_relevance",
                 per_protein="per_protein")
    output = SimpleNamespace(**{{k: out / f"{{v}}.parquet" for k, v in names.items()}})
    g = d / "gather_streaming"
    if mode == "stats_streaming":
        run_head_statistics(g / "embedding.parquet", g / "heads.parquet", d / "annotations.parquet",
                            {types!r}, 0.05, True, output)
    else:  # the former statistics: the whole head table in memory
        res = wenzel_statistics(read_table(g / "embedding.parquet"), read_table(g / "heads.parquet"),
                                read_table(d / "annotations.parquet", "residue_annotations"),
                                {types!r}, 0.05, True)
        for k, v in names.items():
            write_table(getattr(output, k), res[v])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_mib": peak / 1024, "increase_mib": (peak - base) / 1024, "wall_s": wall}}))
"""


def build_shards(root: Path, n_shards: int, per_shard: int, n_layers: int, n_heads: int,
                 length: tuple[int, int], seed: int = 0) -> dict:
    """Write synthetic shards (head rows per protein and target, then layer and head, as a
    shard job writes them; proteins dealt round-robin, so not in accession order) and a
    residue annotation table. Returns sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_rows = values = 0
    ann = []
    n_proteins = n_shards * per_shard
    for s in range(n_shards):
        folder = root / "shards" / f"{s + 1}-of-{n_shards}"
        folder.mkdir(parents=True)
        accs = [f"P{k:06d}" for k in range(s, n_proteins, n_shards)]
        lengths = rng.integers(length[0], length[1] + 1, size=len(accs))
        targets = [str(1 + k % 7) for k in range(len(accs))]
        # embedding table
        emb_rel = [rng.normal(size=L).astype(np.float32) for L in lengths]
        emb = pa.table({
            "accession": accs, "target": targets, "n_residues": lengths.astype(np.int64),
            "relevance": pa.array(emb_rel, type=pa.list_(pa.float32())),
            "relevance_start": np.zeros(len(accs)), "relevance_end": np.zeros(len(accs)),
            "f_input": rng.normal(size=len(accs)) + 2, "f_baseline": rng.normal(size=len(accs)),
            "delta": rng.normal(size=len(accs)) * 1e-3,
            "layer_delta": pa.array([[1e-3] * n_layers] * len(accs), type=pa.list_(pa.float64()))})
        pq.write_table(emb, folder / "embedding.parquet")
        # head table: 480 rows per protein
        n_h = n_layers * n_heads
        rows = n_h * len(accs)
        lens = np.repeat(lengths, n_h)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        rel = rng.standard_normal(offsets[-1], dtype=np.float32)
        heads = pa.table({
            "accession": np.repeat(accs, n_h), "target": np.repeat(targets, n_h),
            "layer": np.tile(np.repeat(np.arange(n_layers), n_heads), len(accs)),
            "head": np.tile(np.arange(n_heads), n_layers * len(accs)),
            "relevance": pa.ListArray.from_arrays(pa.array(offsets), pa.array(rel)),
            "relevance_start": rng.normal(size=rows), "relevance_end": rng.normal(size=rows)})
        pq.write_table(heads, folder / "heads.parquet")
        n_rows += rows
        values += int(offsets[-1])
        for acc, L in zip(accs, lengths):
            start = int(rng.integers(1, L - 10))
            ann.append((acc, "motif", start, start + 6, ""))
            ann.append((acc, "binding_site", int(rng.integers(1, L)), 0, ""))
            if rng.random() < 0.3:
                ann.append((acc, "active_site", int(rng.integers(1, L)), 0, ""))
    import pandas as pd

    from seqxai.io import write_table

    ann = pd.DataFrame(ann, columns=["accession", "type", "start", "end", "description"])
    ann["end"] = np.where(ann["end"] == 0, ann["start"], ann["end"])
    write_table(root / "annotations.parquet", ann.astype({"start": "int32", "end": "int32"}),
                "residue_annotations")
    size = sum(p.stat().st_size for p in (root / "shards").rglob("heads.parquet"))
    return {"proteins": n_proteins, "head_rows": n_rows, "values": values, "heads_bytes": size}


def measure(root: Path, mode: str) -> dict:
    code = CHILD.format(scripts=str(ROOT / "scripts"), root=str(root), mode=mode, types=TYPES)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{mode} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--per-shard", type=int, default=25, help="proteins per shard")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--length", type=int, nargs=2, default=[150, 350], help="residues, min max")
    args = ap.parse_args()
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="gather_memory.") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        size = build_shards(root, args.shards, args.per_shard, args.layers, args.heads,
                            tuple(args.length))
        print(f"{args.shards} shards x {args.per_shard} proteins x {args.layers * args.heads} heads, "
              f"{args.length[0]}-{args.length[1]} residues: {size['head_rows']:,} head rows, "
              f"{size['values'] * 4 / 2**20:.0f} MiB of float32 relevance, head shards "
              f"{size['heads_bytes'] / 2**20:.0f} MiB on disk (built in {time.perf_counter() - t0:.0f} s)")
        res = {m: measure(root, m) for m in ("gather_streaming", "gather_in_memory",
                                             "stats_streaming", "stats_in_memory")}
        for name in ("heads", "embedding", "positive_relevance", "per_protein"):
            pd.testing.assert_frame_equal(pd.read_parquet(root / "stats_streaming" / f"{name}.parquet"),
                                          pd.read_parquet(root / "stats_in_memory" / f"{name}.parquet"),
                                          check_exact=True)
        a = pd.read_parquet(root / "gather_streaming" / "heads.parquet", columns=["accession", "layer"])
        b = pd.read_parquet(root / "gather_in_memory" / "heads.parquet", columns=["accession", "layer"])
        assert len(a) == len(b) == size["head_rows"]
    print(f"{'':12s} {'peak RSS streaming':>19s} {'in memory':>10s} {'ratio':>6s}   "
          f"{'increase streaming':>19s} {'in memory':>10s} {'ratio':>6s}   {'wall s':>13s}")
    for what in ("gather", "stats"):
        s, m = res[f"{what}_streaming"], res[f"{what}_in_memory"]
        peak_ratio = m["peak_mib"] / s["peak_mib"]
        increase_ratio = m["increase_mib"] / max(s["increase_mib"], 1)
        print(f"{what:12s} {s['peak_mib']:15.0f} MiB {m['peak_mib']:6.0f} MiB {peak_ratio:5.1f}x"
              f"   {s['increase_mib']:15.0f} MiB {m['increase_mib']:6.0f} MiB {increase_ratio:5.1f}x"
              f"   {s['wall_s']:5.1f} vs {m['wall_s']:5.1f}")
    print("statistics tables identical (streaming vs in memory): yes")


if __name__ == "__main__":
    main()
