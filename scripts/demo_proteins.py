"""Rule demo_proteins: the synthetic protein families with planted features."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.synth_protein import write_demo_proteins  # noqa: E402

write_demo_proteins(sm.params.demo, sm.params.seed, sm.output.proteins, sm.output.annotations,
                    sm.output.contacts, sm.output.report, sm.output.ontology)
