"""Rule check_protein_tasks: every configured task has labelled proteins in every split."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.protein_tasks import run_label_check  # noqa: E402

run_label_check(sm.input.proteins, sm.input.splits, sm.params.tasks, sm.output.label_counts)
