"""How long Snakemake takes to build the DAG of each paper preset at 10,000 attribution shards.

    .venv/bin/python benchmarks/dag_benchmark.py [--shards 10000] [--presets wenzel_ec ...]

Runs `snakemake -n` (a dry run: no job runs, nothing is downloaded) of every config/paper/*.yaml
with attribution.shards set, into a fresh output folder, and prints the wall time per preset,
the number of jobs in the DAG and the time per 1,000 jobs. A second run at --base-shards (default
8) gives the ratio that shows how the time grows with the shard count. Goal: under 30 s each.
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(preset: Path, shards: int) -> tuple[float, int]:
    """Wall seconds of `snakemake -n` and the number of jobs it lists."""
    with tempfile.TemporaryDirectory(prefix="seqxai-dag-") as tmp:
        cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "rules",
               "--configfile", str(preset),
               "--config", f"outdir={tmp}/results", f"cache_dir={tmp}/cache", "--set-scatter", f"attribution={shards}"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{preset.name}: dry run failed\n{res.stderr[-3000:]}")
    m = re.search(r"^total\s+(\d+)", res.stdout, re.M)
    return seconds, int(m.group(1)) if m else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=10_000)
    ap.add_argument("--base-shards", type=int, default=8)
    ap.add_argument("--presets", nargs="*", help="names under config/paper (default: all)")
    args = ap.parse_args()
    presets = sorted((ROOT / "config" / "paper").glob("*.yaml"))
    if args.presets:
        presets = [p for p in presets if p.stem in args.presets]
    print(f"{'preset':<20} {'shards':>7} {'jobs':>7} {'dry-run s':>10} {'s/1000 jobs':>12} "
          f"{'vs ' + str(args.base_shards) + ' shards':>14}")
    for preset in presets:
        base_s, _ = dry_run(preset, args.base_shards)
        s, jobs = dry_run(preset, args.shards)
        print(f"{preset.stem:<20} {args.shards:>7} {jobs:>7} {s:>10.1f} {1000 * s / max(jobs, 1):>12.2f} "
              f"{s / base_s:>13.1f}x", flush=True)


if __name__ == "__main__":
    main()
