"""Rule plot_head_significance: layers x heads heatmaps and the embedding-level bar plot."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402
from seqxai.io import read_table  # noqa: E402

plots.head_significance(read_table(sm.input.heads), sm.output.heads, sm.wildcards.task)
plots.embedding_significance(read_table(sm.input.embedding), sm.output.embedding,
                             sm.wildcards.task, sm.params.alpha)
