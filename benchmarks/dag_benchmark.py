"""How long Snakemake takes to build the DAG of each paper preset at 10,000 attribution shards.

    .venv/bin/python benchmarks/dag_benchmark.py [--shards 10000] [--presets wenzel_ec ...]

Runs `snakemake -n` (a dry run: no job runs, nothing is downloaded) of every config/paper/*.yaml
with attribution.shards set, into a fresh output folder, and prints the wall and CPU time per
preset, the number of jobs in the DAG and the CPU time per 1,000 jobs. A second run at --base-shards (default
8) gives the ratio that shows how the time grows with the shard count. Goal: under 30 s each.
Wall time depends on the machine's load; the CPU time (user + system of the dry run) does not.
"""
import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def dry_run(preset: Path, shards: int) -> tuple[float, float, int]:
    """Wall and CPU seconds of `snakemake -n` and the number of jobs it lists. The CPU time
    does not depend on what else runs on the machine; the wall time does."""
    with tempfile.TemporaryDirectory(prefix="seqxai-dag-") as tmp:
        cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--quiet", "rules",
               "--configfile", str(preset),
               "--config", f"outdir={tmp}/results", f"cache_dir={tmp}/cache", "--set-scatter", f"attribution={shards}"]
        t0, c0 = time.perf_counter(), _children_cpu()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if res.returncode != 0:
        raise SystemExit(f"{preset.name}: dry run failed\n{res.stderr[-3000:]}")
    m = re.search(r"^total\s+(\d+)", res.stdout, re.M)
    return seconds, cpu, int(m.group(1)) if m else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=10_000)
    ap.add_argument("--base-shards", type=int, default=8)
    ap.add_argument("--presets", nargs="*", help="names under config/paper (default: all)")
    args = ap.parse_args()
    presets = sorted((ROOT / "config" / "paper").glob("*.yaml"))
    if args.presets:
        presets = [p for p in presets if p.stem in args.presets]
    print(f"{'preset':<20} {'shards':>7} {'jobs':>7} {'wall s':>8} {'CPU s':>7} {'CPU s/1000 jobs':>16} "
          f"{'CPU vs ' + str(args.base_shards) + ' shards':>17}")
    for preset in presets:
        _, base_cpu, _ = dry_run(preset, args.base_shards)
        wall, cpu, jobs = dry_run(preset, args.shards)
        print(f"{preset.stem:<20} {args.shards:>7} {jobs:>7} {wall:>8.1f} {cpu:>7.1f} "
              f"{1000 * cpu / max(jobs, 1):>16.2f} {cpu / base_cpu:>16.1f}x", flush=True)


if __name__ == "__main__":
    main()
