"""Snakemake rule script `plot_dna_attribution`: mean IG profile around TSSs; TF-MoDISco logos
next to the attention-derived logos."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.dna_plots import plot_dna_attribution  # noqa: E402

sm = snakemake  # noqa: F821
plot_dna_attribution(sm.input.profile, sm.input.patterns, sm.input.matches, sm.input.head_motifs,
                     dict(sm.params.elements), sm.output.profile_png, sm.output.motifs_png,
                     n_motifs=int(sm.params.n_motifs))
