"""Rule residue_flipping: flip the most, the least relevant and random residues to alanine."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.residue_flipping import run_residue_flipping  # noqa: E402

# device and batch size set the speed only: read from the config, not tracked params
run_residue_flipping(sm.input.model, sm.input.proteins, sm.input.splits, sm.input.embedding,
                     sm.output.table, sm.output.per_protein, sm.output.tests, sm.params.flipping,
                     sm.params.seed,
                     device=sm.config["device"],
                     batch_size=sm.config["analysis"]["residue_flipping"]["batch_size"],
                     threads=sm.threads)
