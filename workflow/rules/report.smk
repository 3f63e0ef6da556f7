# Stage 5, figures and report: every figure is wrapped in report() with a caption, so
# `snakemake --report report.html` builds the study report; summary.json holds the numbers and
# summary.html (category "Abstract", listed first) shows the controls, metrics and provenance.


rule plot_head_significance:
    input:
        heads=out("analysis/protein/{task}/finetuned/head_statistics.parquet"),
        embedding=out("analysis/protein/{task}/finetuned/embedding_statistics.parquet"),
    output:
        heads=report(
            out("figures/{task}_head_significance.png"),
            caption="../report/head_significance.rst",
            category="Attribution",
            subcategory="{task}",
        ),
        embedding=report(
            out("figures/{task}_embedding_significance.png"),
            caption="../report/embedding_significance.rst",
            category="Attribution",
            subcategory="{task}",
        ),
    log:
        out("logs/plot_head_significance_{task}.log"),
    benchmark:
        out("benchmarks/plot_head_significance_{task}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        alpha=config["analysis"]["alpha"],
    script:
        "../../scripts/plot_head_significance.py"


rule plot_control_comparison:
    input:
        paired=out("analysis/protein/{task}/paired_r.parquet"),
    output:
        figure=report(
            out("figures/{task}_control_comparison.png"),
            caption="../report/control_comparison.rst",
            category="Attribution",
            subcategory="{task}",
        ),
    log:
        out("logs/plot_control_comparison_{task}.log"),
    benchmark:
        out("benchmarks/plot_control_comparison_{task}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    script:
        "../../scripts/plot_control_comparison.py"


rule plot_tracks:
    input:
        embedding=out("attribution/{task}/finetuned/embedding.parquet"),
        proteins=out("data/protein/proteins.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
    output:
        tracks=report(
            out("figures/{task}_tracks.png"),
            caption="../report/tracks.rst",
            category="Attribution",
            subcategory="{task}",
        ),
    log:
        out("logs/plot_tracks_{task}.log"),
    benchmark:
        out("benchmarks/plot_tracks_{task}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        types=config["analysis"]["annotation_types"],
        n_tracks=config["analysis"]["n_tracks"],
    script:
        "../../scripts/plot_tracks.py"


rule plot_residue_flipping:
    input:
        tables=expand(
            out("analysis/protein/{{task}}/{variant}/residue_flipping.parquet"),
            variant=VARIANTS,
        ),
        tests=expand(
            out("analysis/protein/{{task}}/{variant}/residue_flipping_tests.parquet"),
            variant=VARIANTS,
        ),
    output:
        figure=report(
            out("figures/{task}_residue_flipping.png"),
            caption="../report/residue_flipping.rst",
            category="Attribution",
            subcategory="{task}",
        ),
    log:
        out("logs/plot_residue_flipping_{task}.log"),
    benchmark:
        out("benchmarks/plot_residue_flipping_{task}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        variants=VARIANTS,
    script:
        "../../scripts/plot_residue_flipping.py"


rule plot_faithfulness:
    input:
        methods=out("analysis/protein/{task}/faithfulness/methods.parquet"),
        pairs=out("analysis/protein/{task}/faithfulness/pairs.parquet"),
    output:
        figure=report(
            out("figures/{task}_faithfulness.png"),
            caption="../report/faithfulness.rst",
            category="Attribution",
            subcategory="{task}",
        ),
    log:
        out("logs/plot_faithfulness_{task}.log"),
    benchmark:
        out("benchmarks/plot_faithfulness_{task}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    script:
        "../../scripts/plot_faithfulness.py"


rule plot_attention_probe:
    input:
        probe=out("analysis/protein/attention/{model}/vig_probe.parquet"),
        trend=out("analysis/protein/attention/{model}/layer_trend.parquet"),
        blosum=out("analysis/protein/attention/{model}/blosum.parquet"),
        contacts=out("analysis/protein/attention/{model}/contact_precision.parquet"),
        summary=out("analysis/protein/attention/{model}/attention_summary.json"),
    output:
        figure=report(
            out("figures/attention_{model}.png"),
            caption="../report/attention.rst",
            category="Attention",
            subcategory="{model}",
        ),
        top_heads=report(
            out("figures/attention_{model}_top_heads.png"),
            caption="../report/attention_top_heads.rst",
            category="Attention",
            subcategory="{model}",
        ),
        layer_trend=report(
            out("figures/attention_{model}_layer_trend.png"),
            caption="../report/attention_layer_trend.rst",
            category="Attention",
            subcategory="{model}",
        ),
        blosum=report(
            out("figures/attention_{model}_blosum.png"),
            caption="../report/attention_blosum.rst",
            category="Attention",
            subcategory="{model}",
        ),
        contacts=report(
            out("figures/attention_{model}_contacts.png"),
            caption="../report/attention_contacts.rst",
            category="Attention",
            subcategory="{model}",
        ),
    log:
        out("logs/plot_attention_probe_{model}.log"),
    benchmark:
        out("benchmarks/plot_attention_probe_{model}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        share_denominator=config["analysis"]["vig"]["share_denominator"],
    script:
        "../../scripts/plot_attention_probe.py"


rule plot_diagnostic_probes:
    input:
        table=out("analysis/protein/attention/{model}/diagnostic_probes.parquet"),
    output:
        figure=report(
            out("figures/attention_{model}_diagnostic_probes.png"),
            caption="../report/attention_diagnostic_probes.rst",
            category="Attention",
            subcategory="{model}",
        ),
    log:
        out("logs/plot_diagnostic_probes_{model}.log"),
    benchmark:
        out("benchmarks/plot_diagnostic_probes_{model}.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    script:
        "../../scripts/plot_diagnostic_probes.py"


rule plot_training:
    input:
        protein=expand(
            out("models/protein/{task}/finetuned/training_log.tsv"), task=TASKS
        ),
        dna=out("models/dna/training_log.tsv") if CLAUWAERT else [],
    output:
        figure=report(
            out("figures/training_curves.png"),
            caption="../report/training.rst",
            category="Training",
        ),
    log:
        out("logs/plot_training.log"),
    benchmark:
        out("benchmarks/plot_training.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        tasks=TASKS,
    script:
        "../../scripts/plot_training.py"


rule plot_dna:
    input:
        profiles=out("analysis/dna/tss_profiles.parquet"),
        head_motifs=out("analysis/dna/head_motifs.parquet"),
        summary=out("analysis/dna/dna_summary.json"),
    output:
        profiles_png=report(
            out("figures/dna_tss_profiles.png"),
            caption="../report/dna_profiles.rst",
            category="DNA",
        ),
        logos_png=report(
            out("figures/dna_logos.png"),
            caption="../report/dna_logos.rst",
            category="DNA",
        ),
    log:
        out("logs/plot_dna.log"),
    benchmark:
        out("benchmarks/plot_dna.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        elements=config["dna"]["elements"],
    script:
        "../../scripts/plot_dna.py"


rule plot_dna_attribution:
    input:
        profile=out("attribution/dna/tss_ig_profile.parquet"),
        patterns=out("analysis/dna/modisco_patterns.parquet"),
        matches=out("analysis/dna/motif_matches.parquet"),
        head_motifs=out("analysis/dna/head_motifs.parquet"),
    output:
        profile_png=report(
            out("figures/dna_ig_profile.png"),
            caption="../report/dna_ig_profile.rst",
            category="DNA",
        ),
        motifs_png=report(
            out("figures/dna_motif_sources.png"),
            caption="../report/dna_motif_sources.rst",
            category="DNA",
        ),
    log:
        out("logs/plot_dna_attribution.log"),
    benchmark:
        out("benchmarks/plot_dna_attribution.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    params:
        elements=config["dna"]["elements"],
        n_motifs=6,
    script:
        "../../scripts/plot_dna_attribution.py"


rule summarize:
    input:
        embedding=expand(
            out("analysis/protein/{task}/finetuned/embedding_statistics.parquet"),
            task=TASKS,
        ),
        heads=expand(
            out("analysis/protein/{task}/finetuned/head_statistics.parquet"),
            task=TASKS,
        ),
        metrics=expand(out("models/protein/{task}/finetuned/metrics.json"), task=TASKS),
        variant_metrics=(
            expand(
                out("models/protein/{task}/{variant}/metrics.json"),
                task=TASKS,
                variant=VARIANTS,
            )
            if len(VARIANTS) > 1
            else []
        ),
        comparison=(
            expand(
                out("analysis/protein/{task}/variant_comparison.parquet"), task=TASKS
            )
            if len(VARIANTS) > 1
            else []
        ),
        paired=(
            expand(out("analysis/protein/{task}/paired_r.parquet"), task=TASKS)
            if len(VARIANTS) > 1
            else []
        ),
        flipping=expand(
            out("analysis/protein/{task}/{variant}/residue_flipping_tests.parquet"),
            task=TASKS,
            variant=VARIANTS,
        ),
        faithfulness=(
            expand(
                out("analysis/protein/{task}/faithfulness/{table}.parquet"),
                task=TASKS,
                table=["methods", "pairs", "enrichment"],
            )
            if FAITHFULNESS_METHODS
            else []
        ),
        probes=expand(
            out("analysis/protein/attention/{model}/vig_probe.parquet"),
            model=PROBE_MODELS,
        ),
        attention_summary=(
            out("analysis/protein/attention/pretrained/attention_summary.json")
            if VIG
            else []
        ),
        dna_metrics=out("models/dna/metrics.json") if CLAUWAERT else [],
        dna_summary=out("analysis/dna/dna_summary.json") if CLAUWAERT else [],
        seed_robustness=(
            out("analysis/dna/seed_robustness.json") if CLAUWAERT and DNA_SEEDS else []
        ),
        dna_methods=(
            out("analysis/dna/method_motifs.json")
            if CLAUWAERT and DNA_OTHER_METHODS
            else []
        ),
        encoder=pretrained_input() if PROTEIN else [],
    output:
        # "Abstract": the report lists categories alphabetically; this one comes first
        summary=report(
            out("summary.json"), caption="../report/summary.rst", category="Abstract"
        ),
    log:
        out("logs/summarize.log"),
    benchmark:
        out("benchmarks/summarize.tsv")
    conda:
        # the models' env: summary.json's provenance records its torch/transformers versions
        "../../envs/torch.yaml"
    threads: 1
    params:
        studies=sorted(STUDIES),
        tasks=TASKS,
        variants=VARIANTS,
        models=PROBE_MODELS,
        check=config["analysis"]["positive_controls"],
        expect=config["analysis"]["expect_embedding_enrichment"],
        contact_share=config["analysis"]["expect_contact_share"],
        contact_enrichment=config["analysis"]["expect_contact_enrichment"],
        expect_max_p=config["analysis"]["expect_max_p"],
        composition_max_p=(
            config["analysis"]["composition_null"]["max_p"]
            if config["analysis"]["composition_null"]["permutations"]
            else None
        ),
        controls_max_p=config["analysis"]["variant_comparison"]["max_p"],
        controls_min_difference=config["analysis"]["variant_comparison"][
            "min_difference"
        ],
        min_high_confidence=config["analysis"]["vig"]["min_high_confidence"],
        encoder=pretrained_encoder,
    script:
        "../../scripts/summarize.py"


rule summary_page:
    input:
        summary=out("summary.json"),
    output:
        html=report(
            out("summary.html"),
            caption="../report/summary_page.rst",
            category="Abstract",
        ),
    log:
        out("logs/summary_page.log"),
    benchmark:
        out("benchmarks/summary_page.tsv")
    conda:
        "../../envs/plots.yaml"
    threads: 1
    script:
        "../../scripts/summary_page.py"


if (
    config["data"]["source"] != "demo"
):  # the demo's synthetic proteins have no structure file

    rule attention_3d_view:
        input:
            summary=out("analysis/protein/attention/{model}/attention_summary.json"),
            quality=out("data/protein/structure_quality.parquet"),
            viewer_js=local_inputs(viewer_js_file()),
        output:
            html=report(
                out("figures/attention_{model}_3d.html"),
                caption="../report/attention_3d.rst",
                category="Attention",
                subcategory="{model}",
            ),
        log:
            out("logs/attention_3d_view_{model}.log"),
        conda:
            "../../envs/structure_view.yaml"
        threads: 1
        params:
            folders=STRUCTURE_FOLDERS,
            top=20,
            viewer_js=config["analysis"]["vig"]["viewer_js"],
        script:
            "../../scripts/attention_3d_view.py"
