"""Rule plot_tracks: embedding-level relevance along a few proteins with their annotations."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402
from seqxai.io import read_table  # noqa: E402

plots.attribution_tracks(read_table(sm.input.embedding), read_table(sm.input.proteins),
                         read_table(sm.input.annotations), sm.params.types, sm.params.n_tracks,
                         sm.output.tracks, sm.wildcards.task)
