"""Rule compare_variants: Jaccard of significant-head masks, fine-tuned vs controls, beside its
chance level (random masks of the same sizes) and a seeded permutation p-value; the fine-tuned
model's per-protein r against each control's, paired per protein."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.paired_r import run_paired_r  # noqa: E402
from seqxai.variant_comparison import run_compare_variants  # noqa: E402

run_compare_variants(sm.input.heads, sm.params.variants, sm.output.comparison,
                     n_permutations=sm.params.n_permutations, seed=sm.params.seed)
run_paired_r(sm.input.per_protein, sm.params.variants,
             sm.input.heads[list(sm.params.variants).index("finetuned")], sm.output.paired,
             alpha=sm.params.alpha)
