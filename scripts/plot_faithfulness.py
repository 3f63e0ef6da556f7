"""Rule plot_faithfulness: flipping area per method, agreement between methods, cost."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.faithfulness_plots import faithfulness_figure  # noqa: E402
from seqxai.io import read_table  # noqa: E402

faithfulness_figure(read_table(sm.input.methods), read_table(sm.input.pairs), sm.output.figure,
                    sm.wildcards.task)
