"""Snakemake rule script `dna_modisco`: TF-MoDISco on the DNA attributions, Tomtom matches side
by side with the attention-derived motifs."""
import os
import sys
from pathlib import Path

# before numba is imported (seqxai.dna_modisco.find_patterns says why)
os.environ["NUMBA_NUM_THREADS"] = str(snakemake.threads)  # noqa: F821

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.dna_modisco import run_modisco  # noqa: E402

sm = snakemake  # noqa: F821
out = {k: getattr(sm.output, k) for k in ("patterns", "meme", "tomtom", "matches", "summary")}
run_modisco(sm.input.windows, sm.input.tf_motifs, sm.input.head_motifs, sm.input.attention_tomtom,
            sm.input.sigma70_reference, out,
            settings=dict(sm.params.modisco), alpha=float(sm.params.alpha))
