"""Rule head_statistics: Wenzel et al. per-head and embedding-level tests for one task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.head_statistics import run_head_statistics  # noqa: E402

run_head_statistics(sm.input.embedding, sm.input.heads, sm.input.annotations, sm.params.types,
                    sm.params.alpha, sm.params.per_target, sm.output,
                    keep_special_tokens=sm.params.keep_special_tokens, proteins_path=sm.input.proteins,
                    composition_null=dict(sm.params.composition_null), seed=int(sm.params.seed))
