"""Snakemake rule script `dna_method_motifs`: the TF-MoDISco motifs of every DNA attribution
method side by side (table, per-target table, summary, logos)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.dna_method_motifs import run_method_motifs  # noqa: E402

sm = snakemake  # noqa: F821
out = {k: getattr(sm.output, k) for k in ("table", "targets", "summary", "figure")}
run_method_motifs(list(sm.params.methods), list(sm.input.patterns), list(sm.input.tomtom),
                  list(sm.input.attribution), [sm.input.sigma70_reference, sm.input.tf_motifs], out,
                  alpha=float(sm.params.alpha))
