"""Snakemake rule script `plot_dna`: TSS attention profiles and head logos."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.dna_plots import plot_dna  # noqa: E402

sm = snakemake  # noqa: F821
plot_dna(sm.input.profiles, sm.input.head_motifs, sm.input.summary, dict(sm.params.elements),
         sm.output.profiles_png, sm.output.logos_png,
         n_heads=int(dict(sm.params.elements).get("n_logo_heads", 6)))
