"""Rule download_genome: NCBI efetch or a local FASTA -> genome.fasta (length checked)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.genome import run_genome  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_genome(sm.params.genome, sm.params.http, sm.params.cache_dir, sm.output.genome)
