# Stage 2, fine-tuning: protein encoder (optional MLM), EC/GO classifiers, the DNA TSS model.
# GPU rules declare gpu=1; the slurm profile maps it to a GPU request.
# Fine-tuning saves its full state after every epoch under {outdir}/checkpoints/protein/
# {task}/{variant}/, MLM pretraining every steps/10 steps under checkpoints/protein/pretrained/
# (not rule outputs, so Snakemake keeps them when a job fails); a rerun with the same inputs
# and settings resumes there, other settings start afresh. Delete the folder to retrain.


rule pretrain_protein_encoder:
    input:
        init=encoder_files(),
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
    output:
        encoder=directory(out("models/protein/pretrained")),
        training_log=out("models/protein/pretrained_training_log.tsv"),
    log:
        out("logs/pretrain_protein_encoder.log"),
    benchmark:
        out("benchmarks/pretrain_protein_encoder.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        init=ENCODER["pretrained"],
        demo_config=ENCODER["demo_config"],
        mlm=tracked(MLM),  # max_memory_gb and device (speed only): read from the config
        checkpoint_dir=out("checkpoints/protein/pretrained"),
        max_length=config["protein"]["max_length"],
        seed=SEED,
    script:
        "../../scripts/pretrain_protein_encoder.py"


# A scale rehearsal only (protein.encoder.rehearsal): a randomly initialised encoder of a
# published model's exact shape, written with save_pretrained (nothing downloaded); fine-tuning
# starts from it without MLM. Its results mean nothing; its costs are the paper's.
rule build_random_encoder:
    output:
        encoder=directory(out("models/protein/rehearsal_encoder")),
    log:
        out("logs/build_random_encoder.log"),
    benchmark:
        out("benchmarks/build_random_encoder.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        rehearsal=REHEARSAL,
        seed=SEED,
    script:
        "../../scripts/build_random_encoder.py"


rule finetune_protein:
    input:
        pretrained_input,
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
        label_counts=out("data/protein/label_counts/{task}.parquet"),
    output:
        model=directory(out("models/protein/{task}/{variant}/model")),
        metrics=out("models/protein/{task}/{variant}/metrics.json"),
        training_log=out("models/protein/{task}/{variant}/training_log.tsv"),
    log:
        out("logs/finetune_protein_{task}_{variant}.log"),
    benchmark:
        out("benchmarks/finetune_protein_{task}_{variant}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=finetune_mem_mb,
        gpu=1,
    params:
        encoder=pretrained_encoder(),
        task=lambda wc: {"name": wc.task, **config["protein"]["tasks"][wc.task]},
        variant=lambda wc: wc.variant,
        checkpoint_dir=lambda wc: out(f"checkpoints/protein/{wc.task}/{wc.variant}"),
        finetune=tracked(config["protein"]["finetune"]),  # max_memory_gb, device: config
        max_length=config["protein"]["max_length"],
        seed=SEED,
    script:
        "../../scripts/finetune_protein.py"


rule train_dna:
    input:
        genome=out("data/dna/genome.fasta"),
        tss=out("data/dna/tss.parquet"),
    output:
        model=out("models/dna/model.pt"),
        metrics=out("models/dna/metrics.json"),
        training_log=out("models/dna/training_log.tsv"),
    log:
        out("logs/train_dna.log"),
    benchmark:
        out("benchmarks/train_dna.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        model=tracked(config["dna"]["model"], ["attn_chunk"]),  # attn_chunk: config
        train=config["dna"]["train"],
        split=config["dna"]["split"],
        seed=SEED,
    script:
        "../../scripts/train_dna.py"


# The same TSS model from another training seed (dna.seed_robustness.seeds), for the table of
# rule dna_seed_robustness; the run's own model stays models/dna/model.pt.
rule train_dna_seed:
    input:
        genome=out("data/dna/genome.fasta"),
        tss=out("data/dna/tss.parquet"),
    output:
        model=out("models/dna/seeds/seed{seed}/model.pt"),
        metrics=out("models/dna/seeds/seed{seed}/metrics.json"),
        training_log=out("models/dna/seeds/seed{seed}/training_log.tsv"),
    log:
        out("logs/train_dna_seed{seed}.log"),
    benchmark:
        out("benchmarks/train_dna_seed{seed}.tsv")
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        model=tracked(config["dna"]["model"], ["attn_chunk"]),  # attn_chunk: config
        train=config["dna"]["train"],
        split=config["dna"]["split"],
        seed=lambda wc: int(wc.seed),
    script:
        "../../scripts/train_dna.py"
