"""Rule attribute_proteins: integrated gradients for one shard of the proteins, under every
model variant of the task."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.allocator import keep_freed_memory  # noqa: E402

keep_freed_memory()  # before torch is imported (seqxai.allocator)
sm = snakemake  # noqa: F821

from seqxai.attribution_shards import run_attribution_shard  # noqa: E402

# Speed-only settings come from the config, not from params, so that changing them does
# not rerun the attributions (Snakemake tracks params).
shard, n_shards = sm.params.shard
models = dict(zip(sm.params.variants, sm.input.models))  # variant -> model folder
run_attribution_shard(models, sm.input.proteins, sm.input.splits, sm.params.attribution,
                      shard - 1, n_shards, sm.output.shard,
                      device=sm.config["device"], threads=sm.threads,
                      batch_size=sm.config["attribution"]["batch_size"],
                      max_memory_gb=sm.config["attribution"].get("max_memory_gb"))
