"""Rule attention_probe: Vig et al. high-confidence attention on contacts, annotations and
amino acids, the BLOSUM62 comparison, and the Rao et al. contact regression."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import optional_input, setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.attention_probes import run_attention_probe  # noqa: E402

secondary = optional_input(sm.input, "secondary")  # absent in the demo

# the device only changes speed: read from config, not params, so changing it reruns nothing
run_attention_probe(sm.params.encoder, sm.input.proteins, sm.input.splits, sm.input.contacts,
                    sm.input.annotations, sm.params.vig, sm.params.types, sm.params.max_length,
                    dict(sm.output.items()), seed=sm.params.seed,
                    device=sm.config.get("device", "auto"), threads=sm.threads,
                    secondary_path=secondary)
