"""Rule secondary_structure: DSSP classes (pydssp) of every protein with a structure file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.secondary_structure import run_secondary_structure  # noqa: E402

run_secondary_structure(sm.input.proteins, sm.input.quality, sm.params.folders, sm.output.secondary)
