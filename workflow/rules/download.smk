# Real-data download stage (included when config["data"]["source"] == "real").
#
# Writes the same tables as the demo generator under {outdir}/data/. Raw downloads go to
# config["cache_dir"]; a cached file is complete by construction (written to a temporary name,
# verified, renamed), so reruns never fetch it again. Each source reads either a URL/query or a
# local file named in config["data"][<source>]["local"]. Paths come from out() and
# local_inputs() in common.smk, like every other stage.

_CACHE = config["cache_dir"]  # schema default: resources/cache
_DATA = config["data"]
_HTTP = _DATA.get("http", {})


rule download_uniprot:
    input:
        local=local_inputs(_DATA["uniprot"].get("local")),
    output:
        proteins=out("data/protein/proteins_unpropagated.parquet"),
        annotations=out("data/protein/residue_annotations.parquet"),
        xrefs=out("data/protein/uniprot_xrefs.parquet"),
        # not temp(): download_structures reads it, and a rerun of download_structures (a
        # changed structure file) must not need download_uniprot and all after it again
        report=out("data/protein/uniprot_report.parquet"),
    log:
        out("logs/download_uniprot.log"),
    benchmark:
        out("benchmarks/download_uniprot.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        downloads=1,
    params:
        uniprot=_DATA["uniprot"],
        http=_HTTP,
        cache_dir=_CACHE,
        seed=config["seed"],
    script:
        "../../scripts/download_uniprot.py"


# go-basic.obo of the pinned release (data.go.release), for rule propagate_go (data.smk).
rule download_go:
    input:
        local=local_inputs(_DATA["go"].get("local")),
    output:
        ontology=out("data/go/go.obo"),
    log:
        out("logs/download_go.log"),
    benchmark:
        out("benchmarks/download_go.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        downloads=1,
    params:
        go=_DATA["go"],
        http=_HTTP,
        cache_dir=_CACHE,
    script:
        "../../scripts/download_go.py"


rule download_structures:
    input:
        proteins=rules.download_uniprot.output.proteins,
        xrefs=rules.download_uniprot.output.xrefs,
        uniprot_report=rules.download_uniprot.output.report,
        local=structure_inputs(),
    output:
        contacts=out("data/protein/contact_maps.parquet"),
        quality=out("data/protein/structure_quality.parquet"),
        report=out("data/protein/data_report.parquet"),
    log:
        out("logs/download_structures.log"),
    benchmark:
        out("benchmarks/download_structures.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        downloads=1,
    params:
        structures=_DATA["structures"],
        http=_HTTP,
        cache_dir=_CACHE,
    script:
        "../../scripts/download_structures.py"


# The local genome by content, not by time stamp: ancient() makes its mtime irrelevant and the
# param local_sha256 (of the decompressed text) reruns the job when the sequence changes. A
# copy without its time stamp or the same FASTA gzipped again retrains nothing (docs/reruns.md).
rule download_genome:
    input:
        local=ancient(local_inputs(_DATA["genome"].get("local"))),
    output:
        genome=out("data/dna/genome.fasta"),
    log:
        out("logs/download_genome.log"),
    benchmark:
        out("benchmarks/download_genome.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        downloads=1,
    params:
        genome=_DATA["genome"],
        local_sha256=content_digest(_DATA["genome"].get("local")),
        http=_HTTP,
        cache_dir=_CACHE,
    script:
        "../../scripts/download_genome.py"


rule download_regulondb:
    input:
        genome=rules.download_genome.output.genome,
        local=local_inputs(
            *[
                (_DATA["regulondb"].get(k) or {}).get("local")
                for k in ("promoters", "sites", "matrices")
            ]
        ),
    output:
        tss=out("data/dna/tss.parquet"),
        tf_sites=out("data/dna/tf_sites.parquet"),
        motifs=out("data/dna/tf_motifs.meme"),
        report=out("data/dna/data_report.parquet"),
    log:
        out("logs/download_regulondb.log"),
    benchmark:
        out("benchmarks/download_regulondb.tsv")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        downloads=1,
    params:
        regulondb=_DATA["regulondb"],
        http=_HTTP,
        cache_dir=_CACHE,
    script:
        "../../scripts/download_regulondb.py"


# data.structures.source: pdb_list. The chains of a pinned chain list (PISCES cullpdb) are the
# proteins: one job fetches their mmCIF files from RCSB (cached) and writes the protein table
# from the chains' entity sequences, the contact maps, and the annotation table (the UniProt
# features of each chain's SIFTS-mapped residues; data.structures.sifts). The ruleorder makes it
# the producer of the tables download_uniprot/download_structures write otherwise.
if _DATA["structures"].get("source") == "pdb_list":
    _PDB_CHAIN_LIST = _DATA["structures"].get("chain_list")
    if _PDB_CHAIN_LIST and str(_PDB_CHAIN_LIST).startswith(("http://", "https://")):
        _PDB_CHAIN_LIST = (
            None  # a URL is no input file; it is downloaded into the cache
        )

    ruleorder: download_pdb_chains > download_uniprot
    ruleorder: download_pdb_chains > download_structures
    # PDB chains carry no GO terms: the chain table is the protein table, nothing to propagate
    ruleorder: download_pdb_chains > propagate_go

    rule download_pdb_chains:
        input:
            local=local_inputs(
                _PDB_CHAIN_LIST,
                _DATA["structures"].get("sifts", {}).get("local"),
                _DATA["structures"].get("sifts", {}).get("uniprot_local"),
            ),
        output:
            proteins=out("data/protein/proteins.parquet"),
            annotations=out("data/protein/residue_annotations.parquet"),
            contacts=out("data/protein/contact_maps.parquet"),
            quality=out("data/protein/structure_quality.parquet"),
            report=out("data/protein/data_report.parquet"),
        log:
            out("logs/download_pdb_chains.log"),
        benchmark:
            out("benchmarks/download_pdb_chains.tsv")
        conda:
            "../../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=8000,
            downloads=1,
        params:
            structures=_DATA["structures"],
            features=_DATA["uniprot"].get("features"),
            seed=config["seed"],
            http=_HTTP,
            cache_dir=_CACHE,
        script:
            "../../scripts/download_pdb_chains.py"
