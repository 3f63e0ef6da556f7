"""Rule finetune_protein: train a pooled head for one task (EC or GO) and one variant
(finetuned, or the frozen / shuffled encoder controls), resuming from its checkpoint."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.protein_model import run_finetuning  # noqa: E402

run_finetuning(sm.input.proteins, sm.input.splits, sm.params.encoder, sm.params.task,
               sm.params.finetune, sm.output.model, sm.output.metrics, sm.output.training_log,
               max_length=sm.params.max_length, seed=sm.params.seed, variant=sm.params.variant,
               checkpoint_dir=sm.params.checkpoint_dir, device=sm.config["device"],
               threads=sm.threads,
               # speed only: read from the config, not params, so changing it reruns nothing
               max_memory_gb=sm.config["protein"]["finetune"].get("max_memory_gb"))
