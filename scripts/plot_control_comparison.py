"""Rule plot_control_comparison: the fine-tuned model's r against each control's, paired per
protein, as layers x heads heatmaps of the median difference (seqxai.paired_r)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai import plots  # noqa: E402
from seqxai.io import read_table  # noqa: E402

plots.control_comparison(read_table(sm.input.paired), sm.output.figure, sm.wildcards.task)
