"""Snakemake rule script `train_dna`: train the TSS transformer on config.device (auto / cpu / cuda)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.tss_training import run_training  # noqa: E402

sm = snakemake  # noqa: F821
# device and model.attn_chunk (attention rows per pass) are read from the config, not params: a
# speed setting must not rerun the results (docs/reruns.md)
run_training(sm.input.genome, sm.input.tss, sm.output.model, sm.output.metrics, sm.output.training_log,
             model_cfg={**sm.params.model, "attn_chunk": sm.config["dna"]["model"]["attn_chunk"]}, train_cfg=dict(sm.params.train), split_cfg=dict(sm.params.split),
             seed=int(sm.params.seed), threads=sm.threads, device=sm.config.get("device", "auto"))
