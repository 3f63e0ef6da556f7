"""Rule download_uniprot: UniProtKB (REST search or local files) -> proteins + residue annotations."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.uniprot import run_uniprot  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_uniprot(
    sm.params.uniprot,
    sm.params.http,
    sm.params.cache_dir,
    sm.output.proteins,
    sm.output.annotations,
    sm.output.xrefs,
    sm.output.report,
    seed=sm.params.seed,
)
