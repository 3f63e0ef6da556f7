# Stage 3, attribution: integrated gradients at the embedding and for every layer and head,
# in one pass along the IG path per protein; one job per task and shard ({scatteritem} =
# "k-of-n"), gathered per model variant with scattergather. Proteins are dealt to shards by
# estimated cost (tokens x n_steps, longest first; seqxai.attribution_shards.shard_targets), and a
# shard writes all of its tables or none.
# A shard job attributes its proteins under every model variant of the task (the fine-tuned
# model and the controls of common.smk VARIANTS), one after the other: a 10,000-shard run with
# two controls is 10,000 jobs, not 30,000, and Snakemake builds its DAG in about a third of the
# time (benchmarks/dag_benchmark.py). The price: retraining one variant reruns the shards, and
# so the gathers, of all variants of that task.
# Only what defines the result is in params (tracked by Snakemake); speed-only settings
# (attribution.batch_size, attribution.max_memory_gb, device) are read from the config inside the
# script, so changing them does not rerun the attributions.


rule attribute_proteins:
    input:
        models=expand(out("models/protein/{{task}}/{variant}/model"), variant=VARIANTS),
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
    output:
        # one folder per shard (<variant>/embedding.parquet + heads.parquet), written atomically
        shard=temp(directory(out("attribution/{task}/shards/{scatteritem}"))),
    log:
        out("logs/attribute_{task}_{scatteritem}.log"),
    benchmark:
        out("benchmarks/attribute_{task}_{scatteritem}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        # host memory: weights, and the path batches when they run on the CPU (common.smk)
        mem_mb=attribution_mem_mb,
        gpu=1,
    params:
        variants=VARIANTS,
        attribution={
            k: config["attribution"][k]
            for k in ("n_steps", "conductance", "split", "max_proteins", "layers")
        },
        shard=lambda wc: shard_index(wc.scatteritem),
    script:
        "../../scripts/attribute_proteins.py"


rule gather_attributions:
    input:
        shards=gather.attribution(out("attribution/{{task}}/shards/{scatteritem}")),
    output:
        embedding=out("attribution/{task}/{variant}/embedding.parquet"),
        heads=out("attribution/{task}/{variant}/heads.parquet"),
        convergence=out("attribution/{task}/{variant}/convergence.parquet"),
    log:
        out("logs/gather_attributions_{task}_{variant}.log"),
    benchmark:
        out("benchmarks/gather_attributions_{task}_{variant}.tsv")
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        delta_tolerance=config["attribution"]["delta_tolerance"],
    script:
        "../../scripts/gather_attributions.py"


# The other attribution methods of attribution.methods (attnlrp, grad_x_input,
# attention_rollout; docs/attribution_methods.md): the same shard and gathered tables, by the
# same script, under attribution/{task}/{method}/ (integrated gradients keeps the paths above,
# which the head statistics, figures and summary read). One forward and one backward pass
# per protein, so n_steps and conductance are not in their params: changing the IG settings
# reruns no other method (shards are dealt by tokens alone; n_steps only scales the cost).
use rule attribute_proteins as attribute_proteins_method with:
    output:
        shard=temp(directory(out("attribution/{task}/{method}/shards/{scatteritem}"))),
    log:
        out("logs/attribute_{task}_{method}_{scatteritem}.log"),
    benchmark:
        out("benchmarks/attribute_{task}_{method}_{scatteritem}.tsv")
    params:
        variants=VARIANTS,
        attribution=lambda wc: {
            "method": wc.method,
            "n_steps": 1,
            **{
                k: config["attribution"][k]
                for k in ("split", "max_proteins", "layers")
            },
        },
        shard=lambda wc: shard_index(wc.scatteritem),


use rule gather_attributions as gather_attributions_method with:
    input:
        shards=gather.attribution(
            out("attribution/{{task}}/{{method}}/shards/{scatteritem}")
        ),
    output:
        embedding=out("attribution/{task}/{method}/{variant}/embedding.parquet"),
        heads=out("attribution/{task}/{method}/{variant}/heads.parquet"),
        convergence=out("attribution/{task}/{method}/{variant}/convergence.parquet"),
    log:
        out("logs/gather_attributions_{task}_{method}_{variant}.log"),
    benchmark:
        out("benchmarks/gather_attributions_{task}_{method}_{variant}.tsv")


# Integrated gradients of the DNA TSS model (seqxai.dna_attribution): the logit at each TSS's
# predicting position w.r.t. the one-hot input, per offset around the TSS, with the
# hypothetical contributions TF-MoDISco takes. dna.attribution.batch_size and device are
# speed only and read inside the script.
rule attribute_dna:
    input:
        model=out("models/dna/model.pt"),
        genome=out("data/dna/genome.fasta"),
        tss=out("data/dna/tss.parquet"),
    output:
        windows=out("attribution/dna/tss_attributions.parquet"),
        heads=out("attribution/dna/tss_head_conductance.parquet"),
        profile=out("attribution/dna/tss_ig_profile.parquet"),
        summary=out("attribution/dna/attribution_summary.json"),
    log:
        out("logs/attribute_dna.log"),
    benchmark:
        out("benchmarks/attribute_dna.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        # methods: the other methods' rules below; a listed method reruns no IG job
        attribution={
            k: v
            for k, v in config["dna"]["attribution"].items()
            if k not in ("batch_size", "methods")
        },
        seed=SEED,
    script:
        "../../scripts/attribute_dna.py"


# The other DNA attribution methods of dna.attribution.methods (attnlrp, grad_x_input;
# seqxai.dna_attribution_methods): the same tables by the same script under
# attribution/dna/{dna_method}/. One forward and one backward pass per window, so the IG
# path settings (n_steps, max_steps, delta_tolerance) are not in their params.
use rule attribute_dna as attribute_dna_method with:
    output:
        windows=out("attribution/dna/{dna_method}/tss_attributions.parquet"),
        heads=out("attribution/dna/{dna_method}/tss_head_relevance.parquet"),
        profile=out("attribution/dna/{dna_method}/tss_profile.parquet"),
        summary=out("attribution/dna/{dna_method}/attribution_summary.json"),
    log:
        out("logs/attribute_dna_{dna_method}.log"),
    benchmark:
        out("benchmarks/attribute_dna_{dna_method}.tsv")
    params:
        attribution={
            k: v
            for k, v in config["dna"]["attribution"].items()
            if k
            not in (
                "batch_size",
                "methods",
                "n_steps",
                "max_steps",
                "delta_tolerance",
            )
        },
        seed=SEED,
        method=lambda wc: wc.dna_method,
