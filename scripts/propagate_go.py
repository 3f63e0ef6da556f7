"""Rule propagate_go: proteins with their annotated GO terms -> proteins with the terms propagated
over is_a and part_of of the ontology (go-basic.obo), aspects from its namespaces."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821
from seqxai.go_ontology import run_propagate_go  # noqa: E402
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821
run_propagate_go(sm.input.proteins, sm.input.ontology, sm.output.proteins, sm.params.go_aspects)
