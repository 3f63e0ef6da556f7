"""Rule faithfulness: residue flipping, agreement and cost of every attribution method on the
same proteins (docs/attribution_methods.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.faithfulness import run_faithfulness  # noqa: E402

methods = list(sm.params.methods)
# device and batch sizes set the speed only: read from the config, not tracked params
run_faithfulness(sm.input.model, sm.input.proteins, dict(zip(methods, sm.input.embedding)),
                 dict(zip(methods, sm.input.head_statistics)),
                 dict(zip(methods, sm.input.embedding_statistics)), sm.output,
                 dict(sm.params.flipping), dict(sm.params.faithfulness), dict(sm.params.ig),
                 sm.params.alpha, sm.params.n_permutations, sm.params.seed,
                 device=sm.config["device"],
                 batch_size=sm.config["analysis"]["residue_flipping"]["batch_size"],
                 ig_batch_size=sm.config["attribution"]["batch_size"], threads=sm.threads)
