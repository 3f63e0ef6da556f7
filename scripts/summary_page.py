"""Rule summary_page: summary.json rendered as the report's first page (summary.html)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.summary_page import write_summary_page  # noqa: E402

write_summary_page(sm.input.summary, sm.output.html)
