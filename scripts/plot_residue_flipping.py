"""Rule plot_residue_flipping: accuracy against flipped residues, relevance order vs random."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402
from seqxai.io import read_table  # noqa: E402

plots.residue_flipping(read_table(sm.input.table), sm.output.figure, sm.wildcards.task)
