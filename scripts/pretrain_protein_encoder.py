"""Rule pretrain_protein_encoder: masked-language-model training on the study's sequences."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.mlm_pretraining import run_pretraining  # noqa: E402
from seqxai.protein_tasks import check_tasks  # noqa: E402

# The configured tasks must be trainable before hours of pretraining go into them. A check
# only: the tasks are not params (an edited task reruns its check and fine-tuning, not this).
check_tasks(sm.input.proteins, sm.input.splits, sm.config["protein"]["tasks"])
run_pretraining(sm.input.proteins, sm.input.splits, sm.output.encoder, sm.output.training_log,
                init=sm.params.init, demo_config=sm.params.demo_config, mlm=sm.params.mlm,
                max_length=sm.params.max_length, seed=sm.params.seed, device=sm.config["device"],
                threads=sm.threads, checkpoint_dir=sm.params.checkpoint_dir,
                # speed only: read from the config, not params, so changing it reruns nothing
                max_memory_gb=sm.config["protein"]["mlm"].get("max_memory_gb"))
