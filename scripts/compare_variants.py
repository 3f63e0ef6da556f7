"""Rule compare_variants: Jaccard of significant-head masks, fine-tuned vs controls, beside its
chance level (random masks of the same sizes) and a seeded permutation p-value."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.variant_comparison import run_compare_variants  # noqa: E402

run_compare_variants(sm.input.heads, sm.params.variants, sm.output.comparison,
                     n_permutations=sm.params.n_permutations, seed=sm.params.seed)
