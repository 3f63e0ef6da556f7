"""Rule diagnostic_probes: Vig et al.'s per-layer linear probes on embeddings and attention,
fitted on train-split proteins and scored on test-split proteins."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import optional_input, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.diagnostic_probes import run_diagnostic_probes

secondary = optional_input(sm.input, "secondary")  # absent in the demo

# the device only changes speed: read from config, not params, so changing it reruns nothing
run_diagnostic_probes(sm.params.encoder, sm.input.proteins, sm.input.splits, sm.input.contacts,
                      sm.input.annotations, sm.params.diagnostic, sm.params.types, sm.params.max_residues,
                      sm.params.max_length, sm.output.table, model=sm.wildcards.model, seed=sm.params.seed,
                      device=sm.config.get("device", "auto"), threads=sm.threads, secondary_path=secondary)
