"""Snakemake rule script `tss_attention`: the Clauwaert attention probe of the TSS model."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.tss_probe import run_probe  # noqa: E402

sm = snakemake  # noqa: F821
# device and probe.batch_size are read from the config, not params: a speed setting must not
# rerun the results (docs/reruns.md)
out = {k: getattr(sm.output, k) for k in
       ("profiles", "head_motifs", "head_motifs_meme", "tf_enrichment", "tomtom", "summary",
        "sigma70_reference")}
run_probe(sm.input.model, sm.input.genome, sm.input.tss, sm.input.tf_sites, sm.input.tf_motifs, out,
          probe_cfg={**sm.params.probe, "batch_size": sm.config["dna"]["probe"]["batch_size"]}, elements=dict(sm.params.elements), seed=int(sm.params.seed),
          threads=sm.threads, device=sm.config.get("device", "auto"))
