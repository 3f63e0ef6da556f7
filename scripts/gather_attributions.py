"""Rule gather_attributions: concatenate one model variant's tables from the attribution shards
of one task, flag proteins whose convergence delta exceeds attribution.delta_tolerance
(analysis env: no torch)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.attribution_tables import gather_attributions, shard_tables  # noqa: E402

variant = sm.wildcards.variant
gather_attributions(shard_tables(sm.input.shards, "embedding", variant),
                    shard_tables(sm.input.shards, "heads", variant),
                    sm.output.embedding, sm.output.heads, sm.output.convergence, sm.params.delta_tolerance,
                    sm.wildcards.get("method", "ig"))  # the IG rule has no method wildcard
