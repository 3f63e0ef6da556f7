"""Snakemake rule script `dna_seed_robustness`: the DNA study's per-seed table and fractions."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.seed_robustness import run_seed_robustness  # noqa: E402

sm = snakemake  # noqa: F821
run_seed_robustness([dict(r) for r in sm.params.runs], sm.output.table, sm.output.fractions)
