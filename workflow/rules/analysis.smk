# Stage 4, analysis: Wenzel head statistics on the attributions, Vig attention probes on
# contacts and residue annotations, the Clauwaert TSS-attention probe of the DNA model.


rule head_statistics:
    input:
        embedding=out("attribution/{task}/{variant}/embedding.parquet"),
        heads=out("attribution/{task}/{variant}/heads.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
        proteins=out("data/protein/proteins.parquet"),
    output:
        heads=out("analysis/protein/{task}/{variant}/head_statistics.parquet"),
        embedding=out("analysis/protein/{task}/{variant}/embedding_statistics.parquet"),
        positive=out("analysis/protein/{task}/{variant}/positive_relevance.parquet"),
        per_protein=out("analysis/protein/{task}/{variant}/per_protein.parquet"),
    log:
        out("logs/head_statistics_{task}_{variant}.log"),
    benchmark:
        out("benchmarks/head_statistics_{task}_{variant}.tsv")
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        types=config["analysis"]["annotation_types"],
        alpha=config["analysis"]["alpha"],
        keep_special_tokens=config["analysis"]["keep_special_tokens"],
        composition_null=config["analysis"]["composition_null"],
        seed=SEED,
        per_target=lambda wc: config["protein"]["tasks"][wc.task]["type"]
        == "single_label"
        or len(config["protein"]["tasks"][wc.task].get("attribute_terms", [])) > 1,
    script:
        "../../scripts/head_statistics.py"


# The Wenzel statistics of the other attribution methods (attribution.methods), on their
# tables under attribution/{task}/{method}/: the same script and settings as for integrated
# gradients. The faithfulness benchmark reads their significant heads and embedding-level
# enrichment of the planted annotations.
use rule head_statistics as head_statistics_method with:
    input:
        embedding=out("attribution/{task}/{method}/{variant}/embedding.parquet"),
        heads=out("attribution/{task}/{method}/{variant}/heads.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
        proteins=out("data/protein/proteins.parquet"),
    output:
        heads=out("analysis/protein/{task}/{method}/{variant}/head_statistics.parquet"),
        embedding=out(
            "analysis/protein/{task}/{method}/{variant}/embedding_statistics.parquet"
        ),
        positive=out(
            "analysis/protein/{task}/{method}/{variant}/positive_relevance.parquet"
        ),
        per_protein=out(
            "analysis/protein/{task}/{method}/{variant}/per_protein.parquet"
        ),
    log:
        out("logs/head_statistics_{task}_{method}_{variant}.log"),
    benchmark:
        out("benchmarks/head_statistics_{task}_{method}_{variant}.tsv")


# The faithfulness benchmark of the attribution methods (docs/attribution_methods.md), when
# attribution.methods lists two or more: residue flipping of every method on the same
# proteins and seeds (seqxai.residue_flipping), paired Wilcoxon tests between methods, the
# Spearman agreement of residue relevance and the overlap of significant heads
# (seqxai.variant_comparison), and each method's cost over one plain forward+backward pass,
# measured side by side in this job. Fine-tuned model only. Device and batch sizes are speed
# only (config, not params).
rule faithfulness:
    input:
        model=out("models/protein/{task}/finetuned/model"),
        proteins=out("data/protein/proteins.parquet"),
        embedding=faithfulness_inputs("embedding", attribution=True),
        head_statistics=faithfulness_inputs("head_statistics"),
        embedding_statistics=faithfulness_inputs("embedding_statistics"),
    output:
        methods=out("analysis/protein/{task}/faithfulness/methods.parquet"),
        pairs=out("analysis/protein/{task}/faithfulness/pairs.parquet"),
        per_protein=out("analysis/protein/{task}/faithfulness/per_protein.parquet"),
        agreement=out("analysis/protein/{task}/faithfulness/agreement.parquet"),
        head_overlap=out("analysis/protein/{task}/faithfulness/head_overlap.parquet"),
        cost=out("analysis/protein/{task}/faithfulness/cost.parquet"),
        enrichment=out("analysis/protein/{task}/faithfulness/enrichment.parquet"),
    log:
        out("logs/faithfulness_{task}.log"),
    benchmark:
        out("benchmarks/faithfulness_{task}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        methods=FAITHFULNESS_METHODS,
        flipping={
            k: config["analysis"]["residue_flipping"][k]
            for k in ("n_max", "n_random", "replacement")
        },
        faithfulness=config["analysis"]["faithfulness"],
        ig={k: config["attribution"][k] for k in ("n_steps", "conductance", "layers")},
        alpha=config["analysis"]["alpha"],
        n_permutations=config["analysis"]["variant_comparison"]["n_permutations"],
        seed=SEED,
    script:
        "../../scripts/faithfulness.py"


rule residue_flipping:
    input:
        model=out("models/protein/{task}/{variant}/model"),
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
        embedding=out("attribution/{task}/{variant}/embedding.parquet"),
    output:
        table=out("analysis/protein/{task}/{variant}/residue_flipping.parquet"),
        per_protein=out(
            "analysis/protein/{task}/{variant}/residue_flipping_per_protein.parquet"
        ),
        tests=out("analysis/protein/{task}/{variant}/residue_flipping_tests.parquet"),
    log:
        out("logs/residue_flipping_{task}_{variant}.log"),
    benchmark:
        out("benchmarks/residue_flipping_{task}_{variant}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        flipping={
            k: config["analysis"]["residue_flipping"][k]
            for k in ("n_max", "n_random", "replacement", "orders")
        },
        seed=SEED,
    script:
        "../../scripts/residue_flipping.py"


rule compare_variants:
    input:
        heads=expand(
            out("analysis/protein/{{task}}/{variant}/head_statistics.parquet"),
            variant=VARIANTS,
        ),
        per_protein=expand(
            out("analysis/protein/{{task}}/{variant}/per_protein.parquet"),
            variant=VARIANTS,
        ),
    output:
        comparison=out("analysis/protein/{task}/variant_comparison.parquet"),
        # the fine-tuned model's r against each control's on the same proteins (seqxai.paired_r)
        paired=out("analysis/protein/{task}/paired_r.parquet"),
    log:
        out("logs/compare_variants_{task}.log"),
    benchmark:
        out("benchmarks/compare_variants_{task}.tsv")
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        variants=VARIANTS,
        n_permutations=config["analysis"]["variant_comparison"]["n_permutations"],
        alpha=config["analysis"]["alpha"],
        seed=SEED,
    script:
        "../../scripts/compare_variants.py"


rule attention_probe:
    input:
        probe_model_input,
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
        contacts=out("data/protein/contact_maps.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
        # DSSP classes where the contact maps come from structure files (not in the demo)
        secondary=secondary_structure_input,
    output:
        probe=out("analysis/protein/attention/{model}/vig_probe.parquet"),
        trend=out("analysis/protein/attention/{model}/layer_trend.parquet"),
        aa=out("analysis/protein/attention/{model}/aa_attention.parquet"),
        blosum=out("analysis/protein/attention/{model}/blosum.parquet"),
        contacts=out("analysis/protein/attention/{model}/contact_precision.parquet"),
        summary=out("analysis/protein/attention/{model}/attention_summary.json"),
    log:
        out("logs/attention_probe_{model}.log"),
    benchmark:
        out("benchmarks/attention_probe_{model}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        encoder=probe_model_path,
        vig=config["analysis"]["vig"],
        types=config["analysis"]["annotation_types"],
        max_length=config["protein"]["max_length"],
        seed=SEED,
    script:
        "../../scripts/attention_probe.py"


rule diagnostic_probes:
    input:
        probe_model_input,
        proteins=out("data/protein/proteins.parquet"),
        splits=out("data/protein/splits.parquet"),
        contacts=out("data/protein/contact_maps.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
        secondary=secondary_structure_input,
    output:
        table=out("analysis/protein/attention/{model}/diagnostic_probes.parquet"),
    log:
        out("logs/diagnostic_probes_{model}.log"),
    benchmark:
        out("benchmarks/diagnostic_probes_{model}.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=12000,
        gpu=1,
    params:
        encoder=probe_model_path,
        diagnostic=config["analysis"]["vig"]["diagnostic"],
        types=config["analysis"]["annotation_types"],
        max_residues=config["analysis"]["vig"]["max_residues"],
        max_length=config["protein"]["max_length"],
        seed=SEED,
    script:
        "../../scripts/diagnostic_probes.py"


rule tss_attention:
    input:
        model=out("models/dna/model.pt"),
        genome=out("data/dna/genome.fasta"),
        tss=out("data/dna/tss.parquet"),
        tf_sites=out("data/dna/tf_sites.parquet"),
        tf_motifs=out("data/dna/tf_motifs.meme"),
    output:
        profiles=out("analysis/dna/tss_profiles.parquet"),
        head_motifs=out("analysis/dna/head_motifs.parquet"),
        head_motifs_meme=out("analysis/dna/head_motifs.meme"),
        tf_enrichment=out("analysis/dna/tf_enrichment.parquet"),
        tomtom=out("analysis/dna/tomtom.parquet"),
        summary=out("analysis/dna/dna_summary.json"),
        sigma70_reference=out("analysis/dna/sigma70_reference.meme"),
    log:
        out("logs/tss_attention.log"),
    benchmark:
        out("benchmarks/tss_attention.tsv")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        probe=tracked(config["dna"]["probe"], ["batch_size"]),  # batch_size: config
        elements=config["dna"]["elements"],
        seed=SEED,
    script:
        "../../scripts/tss_attention.py"


# The probe of each extra training seed's model (dna.seed_robustness), same settings.
rule tss_attention_seed:
    input:
        model=out("models/dna/seeds/seed{seed}/model.pt"),
        genome=out("data/dna/genome.fasta"),
        tss=out("data/dna/tss.parquet"),
        tf_sites=out("data/dna/tf_sites.parquet"),
        tf_motifs=out("data/dna/tf_motifs.meme"),
    output:
        profiles=out("analysis/dna/seeds/seed{seed}/tss_profiles.parquet"),
        head_motifs=out("analysis/dna/seeds/seed{seed}/head_motifs.parquet"),
        head_motifs_meme=out("analysis/dna/seeds/seed{seed}/head_motifs.meme"),
        tf_enrichment=out("analysis/dna/seeds/seed{seed}/tf_enrichment.parquet"),
        tomtom=out("analysis/dna/seeds/seed{seed}/tomtom.parquet"),
        summary=out("analysis/dna/seeds/seed{seed}/dna_summary.json"),
        sigma70_reference=out("analysis/dna/seeds/seed{seed}/sigma70_reference.meme"),
    log:
        out("logs/tss_attention_seed{seed}.log"),
    benchmark:
        out("benchmarks/tss_attention_seed{seed}.tsv")
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        probe=tracked(config["dna"]["probe"], ["batch_size"]),  # batch_size: config
        elements=config["dna"]["elements"],
        seed=lambda wc: int(wc.seed),
    script:
        "../../scripts/tss_attention.py"


# One row per training seed and the fraction of seeds that find a -10 / -35 head (issue: seed
# robustness as an output, not one seed's anecdote).
rule dna_seed_robustness:
    input:
        unpack(
            lambda wc: {
                f"{k}_{r['seed']}": r[k]
                for r in seed_robustness_runs()
                for k in ("metrics", "summary", "head_motifs", "tomtom")
            }
        ),
    output:
        table=out("analysis/dna/seed_robustness.parquet"),
        fractions=out("analysis/dna/seed_robustness.json"),
    log:
        out("logs/dna_seed_robustness.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        runs=seed_robustness_runs(),
    script:
        "../../scripts/dna_seed_robustness.py"


rule dna_modisco:
    input:
        windows=out("attribution/dna/tss_attributions.parquet"),
        tf_motifs=out("data/dna/tf_motifs.meme"),
        head_motifs=out("analysis/dna/head_motifs.parquet"),
        attention_tomtom=out("analysis/dna/tomtom.parquet"),
        sigma70_reference=out("analysis/dna/sigma70_reference.meme"),
    output:
        patterns=out("analysis/dna/modisco_patterns.parquet"),
        meme=out("analysis/dna/modisco_patterns.meme"),
        tomtom=out("analysis/dna/modisco_tomtom.parquet"),
        matches=out("analysis/dna/motif_matches.parquet"),
        summary=out("analysis/dna/modisco_summary.json"),
    log:
        out("logs/dna_modisco.log"),
    benchmark:
        out("benchmarks/dna_modisco.tsv")
    conda:
        "../../envs/modisco.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        modisco=config["dna"]["modisco"],
        alpha=config["dna"]["probe"]["alpha"],
    script:
        "../../scripts/dna_modisco.py"


# TF-MoDISco on each other DNA attribution method's hypothetical contributions (the
# (modified) gradient at the one-hot input, mean-centred over the bases as IG's), same
# settings, under analysis/dna/{dna_method}/.
use rule dna_modisco as dna_modisco_method with:
    input:
        windows=out("attribution/dna/{dna_method}/tss_attributions.parquet"),
        tf_motifs=out("data/dna/tf_motifs.meme"),
        head_motifs=out("analysis/dna/head_motifs.parquet"),
        attention_tomtom=out("analysis/dna/tomtom.parquet"),
        sigma70_reference=out("analysis/dna/sigma70_reference.meme"),
    output:
        patterns=out("analysis/dna/{dna_method}/modisco_patterns.parquet"),
        meme=out("analysis/dna/{dna_method}/modisco_patterns.meme"),
        tomtom=out("analysis/dna/{dna_method}/modisco_tomtom.parquet"),
        matches=out("analysis/dna/{dna_method}/motif_matches.parquet"),
        summary=out("analysis/dna/{dna_method}/modisco_summary.json"),
    log:
        out("logs/dna_modisco_{dna_method}.log"),
    benchmark:
        out("benchmarks/dna_modisco_{dna_method}.tsv")


# The motifs each DNA attribution method's TF-MoDISco finds, side by side: per method and
# pattern the seqlets and the best Tomtom target; per method and target (the sigma-70 -10 and
# -35 references, the planted/known TF matrices) the best pattern; the cost per window.
rule dna_method_motifs:
    input:
        patterns=dna_method_inputs("analysis/dna/{}modisco_patterns.parquet"),
        tomtom=dna_method_inputs("analysis/dna/{}modisco_tomtom.parquet"),
        attribution=dna_method_inputs("attribution/dna/{}attribution_summary.json"),
        tf_motifs=out("data/dna/tf_motifs.meme"),
        sigma70_reference=out("analysis/dna/sigma70_reference.meme"),
    output:
        table=out("analysis/dna/method_motifs.parquet"),
        targets=out("analysis/dna/method_motif_targets.parquet"),
        summary=out("analysis/dna/method_motifs.json"),
        figure=report(
            out("figures/dna_method_motifs.png"),
            caption="../report/dna_method_motifs.rst",
            category="DNA",
        ),
    log:
        out("logs/dna_method_motifs.log"),
    benchmark:
        out("benchmarks/dna_method_motifs.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        methods=["ig"] + DNA_OTHER_METHODS,
        alpha=config["dna"]["probe"]["alpha"],
    script:
        "../../scripts/dna_method_motifs.py"


if (
    config["data"]["source"] != "demo"
):  # the demo's synthetic proteins have no structure file

    rule secondary_structure:
        input:
            proteins=out("data/protein/proteins.parquet"),
            quality=out("data/protein/structure_quality.parquet"),
        output:
            secondary=out("data/protein/secondary_structure.parquet"),
        log:
            out("logs/secondary_structure.log"),
        benchmark:
            out("benchmarks/secondary_structure.tsv")
        conda:
            "../../envs/torch.yaml"
        threads: 1
        params:
            folders=STRUCTURE_FOLDERS,
        script:
            "../../scripts/secondary_structure.py"
