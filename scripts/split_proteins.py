"""Rule split_proteins: proteins.parquet -> splits.parquet (homology-aware via MMseqs2, or random)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.splits import run_splits  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_splits(sm.input.proteins, sm.params.split, sm.params.seed, sm.output.splits, threads=sm.threads)
