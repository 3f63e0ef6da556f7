"""Rule download_go: go-basic.obo of the pinned release (GO release archive, cached) or a local file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.io import setup_logging  # noqa: E402
from seqxai.sources.gene_ontology import run_go  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_go(sm.params.go, sm.params.http, sm.params.cache_dir, sm.output.ontology)
