"""Rule plot_residue_flipping: MoRF, LeRF and random curves, one column per model variant."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402
from seqxai.io import read_table  # noqa: E402

plots.residue_flipping({v: read_table(p) for v, p in zip(sm.params.variants, sm.input.tables)},
                       {v: read_table(p) for v, p in zip(sm.params.variants, sm.input.tests)},
                       sm.output.figure, sm.wildcards.task)
