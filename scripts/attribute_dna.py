"""Snakemake rule scripts `attribute_dna` and `attribute_dna_method`: integrated gradients (or
the method of params.method: attnlrp, grad_x_input) of the TSS model around TSSs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (makes `seqxai` importable)
from seqxai.io import setup_logging  # noqa: E402

log = setup_logging(snakemake.log[0])  # noqa: F821
from seqxai.dna_attribution import run_attribution  # noqa: E402

sm = snakemake  # noqa: F821
# device and batch_size are read from the config, not params: speed settings must not rerun results
out = {k: getattr(sm.output, k) for k in ("windows", "heads", "profile", "summary")}
run_attribution(sm.input.model, sm.input.genome, sm.input.tss, out, cfg=dict(sm.params.attribution),
                seed=int(sm.params.seed), threads=sm.threads, device=sm.config.get("device", "auto"),
                batch_size=int(sm.config["dna"]["attribution"].get("batch_size", 64)),
                method=getattr(sm.params, "method", "ig"))
