"""Rule build_random_encoder: a random encoder of a published shape, for a scale rehearsal."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.model_shapes import write_random_encoder  # noqa: E402

write_random_encoder(sm.params.rehearsal, sm.output.encoder, seed=sm.params.seed)
