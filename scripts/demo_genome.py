"""Snakemake rule script `demo_genome`: synthetic chromosome with sigma-70 promoters and TF sites."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.synth_dna import write_demo_genome  # noqa: E402

out = snakemake.output  # noqa: F821
info = write_demo_genome(dict(snakemake.params.demo), int(snakemake.params.seed),  # noqa: F821
                         out.genome, out.tss, out.tf_sites, out.tf_motifs)
log.info("demo genome written: %s", info)
