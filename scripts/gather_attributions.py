"""Rule gather_attributions: concatenate the attribution shards of one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.attribution import gather_shards  # noqa: E402

gather_shards(sm.input.embedding, sm.output.embedding)
gather_shards(sm.input.heads, sm.output.heads)
