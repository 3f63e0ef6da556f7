# Config validation, wildcard constraints and input functions. No rules here.
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

OUT = config["outdir"].rstrip("/")
SEED = config["seed"]
TASKS = sorted(config["protein"]["tasks"])
ENCODER = config["protein"]["encoder"]
MLM = config["protein"]["mlm"]
# Model variants per task (METHODS.md section 1): the fine-tuned model and the controls
# (frozen pretrained encoder, shuffled encoder), each with a trained head. Every variant
# flows through attribution and head statistics under {variant} in the paths.
VARIANTS = ["finetuned"] + list(config["protein"]["controls"])
# Attention probes run on the pretrained encoder and on every fine-tuned model.
PROBE_MODELS = ["pretrained"] + TASKS


def _check_config():
    problems = []
    if ENCODER["pretrained"] is None and not MLM["enabled"]:
        problems.append(
            "protein.encoder.pretrained is null (build the demo encoder) but protein.mlm.enabled "
            "is false: a randomly initialised encoder must be pretrained; set protein.mlm.enabled: true"
        )
    for name, task in config["protein"]["tasks"].items():
        if task["type"] == "multi_label" and not task.get("terms"):
            problems.append(f"protein.tasks.{name}: a multi_label task needs 'terms'")
        bad = set(task.get("attribute_terms", [])) - set(task.get("terms", []))
        if bad:
            problems.append(f"protein.tasks.{name}.attribute_terms: {sorted(bad)} not in 'terms'")
    fr = config["split"]["fractions"]
    if abs(sum(fr.values()) - 1) > 1e-6:
        problems.append(f"split.fractions must sum to 1, got {fr}")
    for e in config["analysis"]["expect_embedding_enrichment"]:
        if e["task"] not in TASKS:
            problems.append(f"analysis.expect_embedding_enrichment: unknown task '{e['task']}'")
    if problems:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(problems))


_check_config()


wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(PROBE_MODELS),
    variant="|".join(VARIANTS),
    scatteritem=r"\d+-of-\d+",


scattergather:
    attribution=config["attribution"]["shards"],


def shard_index(scatteritem):
    """(k, n) of a scattergather item "k-of-n", k 1-based."""
    k, n = scatteritem.split("-of-")
    return int(k), int(n)


def out(path):
    """A path under the run's output folder."""
    return f"{OUT}/{path}"


def pretrained_encoder(wildcards=None):
    """The encoder fine-tuning starts from: MLM output, or the configured hub id / folder."""
    if MLM["enabled"]:
        return out("models/protein/pretrained")
    return ENCODER["pretrained"]


def pretrained_input(wildcards=None):
    """As a rule input only when the workflow builds it (a hub id is no file)."""
    return [out("models/protein/pretrained")] if MLM["enabled"] else []


def probe_model_input(wildcards):
    if wildcards.model == "pretrained":
        return pretrained_input()
    return [out(f"models/protein/{wildcards.model}/finetuned/model")]


def probe_model_path(wildcards):
    if wildcards.model == "pretrained":
        return pretrained_encoder()
    return out(f"models/protein/{wildcards.model}/finetuned/model/encoder")


def local_inputs(*paths):
    """Local source files as inputs, so that a changed local file reruns its rule."""
    out = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            out.extend(str(x) for x in p if x)
        elif p:
            out.append(str(p))
    return out


def final_targets():
    targets = [out("summary.json")]
    targets += expand(out("figures/{task}_{fig}.png"), task=TASKS,
                      fig=["head_significance", "embedding_significance", "tracks"])
    targets += expand(out("figures/attention_{model}.png"), model=PROBE_MODELS)
    if len(VARIANTS) > 1:
        targets += expand(out("analysis/protein/{task}/variant_comparison.parquet"), task=TASKS)
    targets += [out("figures/training_curves.png"), out("figures/dna_tss_profiles.png"),
                out("figures/dna_logos.png")]
    return targets
