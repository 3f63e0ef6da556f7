"""Rule download_structures: AlphaFold DB / RCSB PDB / local structures -> contact maps + data report."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.structures import run_structures  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_structures(
    sm.params.structures,
    sm.params.http,
    sm.params.cache_dir,
    sm.input.proteins,
    sm.input.xrefs,
    sm.output.contacts,
    sm.output.quality,
    sm.output.report,
    uniprot_report_path=sm.input.uniprot_report,
)
