"""Rule summarize: the study's numbers and the positive-control verdicts in summary.json."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821  (seqxai without installing)
from seqxai.io import setup_logging  # noqa: E402

setup_logging(snakemake.log[0])  # noqa: F821
sm = snakemake  # noqa: F821

from seqxai.io import read_json, write_json  # noqa: E402
from seqxai.paper_numbers import paper_numbers  # noqa: E402
from seqxai.summary import build_provenance, build_summary  # noqa: E402

summary = build_summary(
    tasks=sm.params.tasks, models=sm.params.models, embedding=sm.input.embedding,
    heads=sm.input.heads, metrics=sm.input.metrics, probes=sm.input.probes,
    dna_metrics=sm.input.get("dna_metrics") or None, dna_summary=sm.input.get("dna_summary") or None,
    studies=sm.params.studies,
    check=sm.params.check, expect=sm.params.expect, expect_max_p=sm.params.expect_max_p,
    composition_max_p=sm.params.composition_max_p,
    contact_share=sm.params.contact_share, contact_enrichment=sm.params.contact_enrichment,
    min_high_confidence=sm.params.min_high_confidence, variants=sm.params.variants,
    variant_metrics=sm.input.variant_metrics, comparison=sm.input.comparison,
    flipping=sm.input.flipping, paired=sm.input.paired, controls_max_p=sm.params.controls_max_p,
    controls_min_difference=sm.params.controls_min_difference,
    faithfulness=sm.input.get("faithfulness") or ())
# Provenance from the resolved config (not params: a changed setting does not rerun this rule
# by itself; the record is of the run that wrote summary.json).
summary["provenance"] = build_provenance(sm.config, sm.params.encoder)
# the papers' published numbers beside the pretrained encoder's (docs/differences.md); the
# probe of the pretrained encoder runs in the Vig study only (config `studies`)
if "vig" in sm.params.studies:
    summary["paper_numbers"] = paper_numbers(summary["attention"].get("pretrained"),
                                             read_json(sm.input.attention_summary), sm.params.encoder)
# the DNA study over training seeds (dna.seed_robustness): the fractions of seeds
if getattr(sm.input, "seed_robustness", None):
    summary["dna_seed_robustness"] = read_json(sm.input.seed_robustness)
# the motifs TF-MoDISco finds per DNA attribution method (dna.attribution.methods)
if getattr(sm.input, "dna_methods", None):
    summary["dna_attribution_methods"] = read_json(sm.input.dna_methods)
write_json(sm.output.summary, summary)
