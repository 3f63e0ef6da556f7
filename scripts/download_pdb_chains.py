"""Rule download_pdb_chains: a pinned PISCES chain list -> proteins (the chains), contact maps."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.chain_list import run_chain_list  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_chain_list(
    sm.params.structures,
    sm.params.http,
    sm.params.cache_dir,
    sm.output.proteins,
    sm.output.annotations,
    sm.output.contacts,
    sm.output.quality,
    sm.output.report,
    seed=sm.params.seed,
    features=sm.params.features,
)
