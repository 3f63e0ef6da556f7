"""Rule plot_diagnostic_probes: Vig et al.'s per-layer diagnostic probes, beside the layer trend."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots
from seqxai.io import read_table

plots.diagnostic_probes(read_table(sm.input.table), sm.output.figure, sm.wildcards.model)
