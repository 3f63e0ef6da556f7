"""Rule download_regulondb: RegulonDB promoters, TF sites, TF matrices -> tss, tf_sites, MEME motifs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.regulondb import run_regulondb  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_regulondb(
    sm.params.regulondb,
    sm.params.http,
    sm.params.cache_dir,
    sm.input.genome,
    sm.output.tss,
    sm.output.tf_sites,
    sm.output.motifs,
    sm.output.report,
)
