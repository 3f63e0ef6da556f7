"""The tables every stage exchanges: one schema per file, written once here.

Both the offline demo generator and the real download rules write exactly these
schemas, so everything downstream of the data stage runs unchanged on either.

Conventions (used throughout the package):
- Residue and genome positions in tables are **1-based and inclusive** (UniProt and
  RegulonDB convention). Arrays inside the library are 0-based; convert at the edge
  with ``start - 1`` / ``end``.
- Protein tables are keyed by ``accession``.
- The genome is a FASTA file; DNA tables refer to it by ``chrom`` (the record id).

Protein tables
--------------
proteins.parquet          one row per protein
    accession   string    UniProt accession (or demo id)
    sequence    string    upper-case one-letter amino acids
    length      int32     len(sequence)
    ec          string    EC numbers joined by ";" ("" when none)
    ec_class    string    EC level 1 ("1".."7") of the first EC number, "" when none
    go_terms    list<string>  GO ids ("GO:0016020"), all aspects
    organism_id int32     NCBI taxon id (0 when unknown)
    go_aspects  list<string>  optional: per term of go_terms (same order and length) its
                          GO aspect, "F" (molecular function), "P" (biological process),
                          "C" (cellular component), or "" when the input did not say
                          (a TSV "Gene Ontology IDs" column). Every source writes it; a
                          table without it still reads, only a GO task restricted to
                          one aspect needs it.
    family      string    optional: the protein's family ("family3"), written by the demo
                          generator; split.method "family" keeps each family in one split.

residue_annotations.parquet   one row per annotated segment
    accession   string
    type        string    active_site | binding_site | motif | transmembrane | ... (config)
    start       int32     1-based, inclusive
    end         int32     1-based, inclusive (end == start for single residues)
    description string

contact_maps.parquet      one row per protein with a structure
    accession   string
    length      int32     length of the UniProt sequence
    resolved    string    per residue "1" (resolved in the structure) or "0" (unresolved)
    contact_i   list<int32>  1-based residue index, contact_i < contact_j
    contact_j   list<int32>  1-based residue index
    definition  string    e.g. "CB<8.0A" (C-alpha for glycine) or "demo"
    source      string    "alphafold:AF-P05067-F1-v6", "pdb:1AKI:A", "demo", ...

splits.parquet            one row per protein
    accession   string
    split       string    train | valid | test
    cluster     string    cluster representative (homology split) or accession

DNA tables
----------
genome.fasta              the chromosome(s); record id = chrom
tss.parquet               one row per transcription start site
    tss_id      string
    chrom       string
    position    int64     1-based genome coordinate of the TSS (+1)
    strand      string    "+" or "-"
    sigma       string    sigma factor ("Sigma70", ...; "" when unknown)
tf_sites.parquet          one row per TF binding site
    site_id     string
    tf          string    TF name
    chrom       string
    start       int64     1-based, inclusive (always start <= end)
    end         int64     1-based, inclusive
    strand      string    "+", "-" or "."
tf_motifs.meme            TF position frequency matrices in MEME minimal format
"""
from __future__ import annotations

import pyarrow as pa

PROTEINS = pa.schema(
    [
        ("accession", pa.string()),
        ("sequence", pa.string()),
        ("length", pa.int32()),
        ("ec", pa.string()),
        ("ec_class", pa.string()),
        ("go_terms", pa.list_(pa.string())),
        ("organism_id", pa.int32()),
    ]
)

RESIDUE_ANNOTATIONS = pa.schema(
    [
        ("accession", pa.string()),
        ("type", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("description", pa.string()),
    ]
)

CONTACT_MAPS = pa.schema(
    [
        ("accession", pa.string()),
        ("length", pa.int32()),
        ("resolved", pa.string()),
        ("contact_i", pa.list_(pa.int32())),
        ("contact_j", pa.list_(pa.int32())),
        ("definition", pa.string()),
        ("source", pa.string()),
    ]
)

SPLITS = pa.schema(
    [
        ("accession", pa.string()),
        ("split", pa.string()),
        ("cluster", pa.string()),
    ]
)

TSS = pa.schema(
    [
        ("tss_id", pa.string()),
        ("chrom", pa.string()),
        ("position", pa.int64()),
        ("strand", pa.string()),
        ("sigma", pa.string()),
    ]
)

TF_SITES = pa.schema(
    [
        ("site_id", pa.string()),
        ("tf", pa.string()),
        ("chrom", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("strand", pa.string()),
    ]
)

# Columns a table may lack (older or hand-made tables); written with these types when present.
OPTIONAL_COLUMNS = {
    "proteins": pa.schema([("go_aspects", pa.list_(pa.string())), ("family", pa.string())]),
}

SCHEMAS = {
    "proteins": PROTEINS,
    "residue_annotations": RESIDUE_ANNOTATIONS,
    "contact_maps": CONTACT_MAPS,
    "splits": SPLITS,
    "tss": TSS,
    "tf_sites": TF_SITES,
}

STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
