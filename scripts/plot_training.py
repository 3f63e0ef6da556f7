"""Rule plot_training: loss curves of the protein classifiers and of the DNA model."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402

plots.training_curves(dict(zip(sm.params.tasks, sm.input.protein)), sm.input.get("dna") or None,
                      sm.output.figure)
