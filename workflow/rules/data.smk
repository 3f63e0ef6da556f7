# Stage 1, data: the demo generators or the real sources (download.smk), then GO propagation
# and the splits. Both write the same tables (schemas in scripts/seqxai/tables.py).

if config["data"]["source"] == "demo":

    rule demo_proteins:
        output:
            proteins=out("data/protein/proteins_unpropagated.parquet"),
            annotations=out("data/protein/residue_annotations.parquet"),
            contacts=out("data/protein/contact_maps.parquet"),
            report=out("data/protein/data_report.parquet"),
            ontology=out("data/go/go.obo"),
        log:
            out("logs/demo_proteins.log"),
        benchmark:
            out("benchmarks/demo_proteins.tsv")
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
        params:
            demo=config["data"]["demo"]["protein"],
            seed=SEED,
        script:
            "../../scripts/demo_proteins.py"

    rule demo_genome:
        output:
            genome=out("data/dna/genome.fasta"),
            tss=out("data/dna/tss.parquet"),
            tf_sites=out("data/dna/tf_sites.parquet"),
            tf_motifs=out("data/dna/tf_motifs.meme"),
        log:
            out("logs/demo_genome.log"),
        benchmark:
            out("benchmarks/demo_genome.tsv")
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
        params:
            demo=config["data"]["demo"]["dna"],
            seed=SEED,
        script:
            "../../scripts/demo_genome.py"

else:

    include: "download.smk"


# GO labels follow the ontology (docs/methods.md section 1): a protein is positive for a term when it
# carries the term or a descendant over is_a and part_of. Every reader of proteins.parquet
# (label checks, fine-tuning, attribution targets, statistics) sees the propagated terms.
rule propagate_go:
    input:
        proteins=out("data/protein/proteins_unpropagated.parquet"),
        ontology=out("data/go/go.obo"),
    output:
        proteins=out("data/protein/proteins.parquet"),
    log:
        out("logs/propagate_go.log"),
    benchmark:
        out("benchmarks/propagate_go.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        go_aspects=(
            config["data"]["uniprot"]["go_aspects"]
            if config["data"]["source"] == "real"
            else ["F", "P", "C"]
        ),
    script:
        "../../scripts/propagate_go.py"


rule split_proteins:
    input:
        proteins=out("data/protein/proteins.parquet"),
    output:
        splits=out("data/protein/splits.parquet"),
    log:
        out("logs/split_proteins.log"),
    benchmark:
        out("benchmarks/split_proteins.tsv")
    conda:
        "../../envs/data.yaml"
    # MMseqs2 (split.method: homology) is the only multi-threaded step; random and family
    # splits run in one thread and leave the other cores to the jobs beside them
    threads: 2 if config["split"]["method"] == "homology" else 1
    resources:
        mem_mb=2000,
    params:
        split=config["split"],
        seed=SEED,
    script:
        "../../scripts/split_proteins.py"


# One job per task: an edited task reruns its own check and, through this plain input (no
# ancient()), its own fine-tuning and nothing of the other tasks. (An ancient() edge from a job
# that reruns makes Snakemake skip the downstream job's params check altogether.)
rule check_protein_tasks:
    """Fail early, naming task, column, label and split, when a configured task has no data."""
    input:
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
    output:
        label_counts=out("data/protein/label_counts/{task}.parquet"),
    log:
        out("logs/check_protein_tasks_{task}.log"),
    benchmark:
        out("benchmarks/check_protein_tasks_{task}.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        tasks=lambda wc: {wc.task: config["protein"]["tasks"][wc.task]},
    script:
        "../../scripts/check_protein_tasks.py"
