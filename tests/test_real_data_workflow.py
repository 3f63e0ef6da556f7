"""The real-data download rules (workflow/rules/download.smk) on local copies of the real files.

Runs the main Snakefile on a config of local files, asking for the data-stage outputs plus the
protein split (the downstream stage here; tests/test_real_local_workflow.py runs the whole DAG).
Checks the science in the outputs, then that a rerun does nothing.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from seqxai.io import read_fasta, read_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (real data for the local-file config) is absent")
ECOLI = SHARED / "data" / "ecoli"

TARGETS = ["data/protein/splits.parquet", "data/protein/contact_maps.parquet", "data/dna/tss.parquet",
           "data/dna/tf_sites.parquet", "data/dna/tf_motifs.meme", "data/dna/genome.fasta"]


def _snakemake(workdir):
    """The main Snakefile, asked for the data-stage outputs and the split (one downstream rule)."""
    targets = [str(workdir / "results" / t) for t in TARGETS]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
           str(workdir / "config.yaml"), "--cores", "2", "--nolock", *targets]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_download_stage_on_local_files(tmp_path):
    structs = tmp_path / "structures"
    structs.mkdir()
    (structs / "AF-P05067-F1-model_v6.pdb").symlink_to(SHARED / "fixtures" / "alphafold" / "AF-P05067-F1-model_v6.pdb")
    (structs / "1aki.pdb").symlink_to(SHARED / "data" / "structures" / "1aki.pdb")
    config = {
        "outdir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / "cache"),
        "seed": 1,
        "split": {"method": "random", "fractions": {"train": 0.8, "valid": 0.1, "test": 0.1}},
        "data": {
            "source": "real",
            "uniprot": {
                "local": [str(SHARED / "data" / "protein" / "swissprot_entries.txt"),
                          str(SHARED / "fixtures" / "uniprot" / "rest_json" / "P05067.uniprotkb_entry.json")],
                "features": ["active_site", "binding_site", "motif", "transmembrane"],
            },
            "structures": {"source": "local", "local": str(structs), "min_plddt": 70,
                           "contact": {"atom": "CB", "glycine_atom": "CA", "cutoff": 8.0}},
            "go": {"local": str(REPO / "tests" / "data" / "go_membrane_excerpt.obo")},  # offline
            "genome": {"accession": "NC_000913.3", "expected_length": 4641652,
                       "local": str(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz")},
            "regulondb": {
                "release": "10.9",
                "evidence": "strong",  # the paper preset's filter: Confirmed + Strong
                "promoters": {"local": str(ECOLI / "PromoterSet_RegulonDB_10.9.txt")},
                "sites": {"local": str(ECOLI / "BindingSiteSet_RegulonDB_10.8.txt"), "release": "10.8"},
                "matrices": {"local": str(ECOLI / "regulonDB_2012-05_matrices.tf")},
            },
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    res = _snakemake(tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = tmp_path / "results" / "data"

    prot = read_table(out / "protein" / "proteins.parquet", table="proteins")
    # 28 flat-file entries + P05067, less P0CK95 (1520 aa > data.uniprot.max_length 1000)
    assert len(prot) == 28 and "P05067" in set(prot.accession) and "P0CK95" not in set(prot.accession)
    # GO terms propagated (rule propagate_go): plasma membrane implies membrane, and the raw
    # table still has proteins with plasma membrane but not membrane
    raw = read_table(out / "protein" / "proteins_unpropagated.parquet", table="proteins")
    assert any("GO:0005886" in g and "GO:0016020" not in g for g in raw.go_terms)
    assert all("GO:0016020" in g for g in prot.go_terms if "GO:0005886" in g)
    ann = read_table(out / "protein" / "residue_annotations.parquet", table="residue_annotations")
    assert set(ann.type) == {"active_site", "binding_site", "motif", "transmembrane"}
    cm = read_table(out / "protein" / "contact_maps.parquet", table="contact_maps").set_index("accession")
    assert list(cm.index) == ["P05067"] and cm.loc["P05067", "length"] == 770
    assert cm.loc["P05067", "source"] == "alphafold:AF-P05067-F1-v6" and len(cm.loc["P05067", "contact_i"]) == 1906
    report = read_table(out / "protein" / "data_report.parquet")
    r = report.set_index(["source", "item", "reason"])["count"]
    assert r[("uniprot", "entry", "unparseable flat-file record")] == 7
    assert r[("uniprot", "entry", "length outside range")] == 1
    assert r[("structures:local", "protein", "no structure")] == 27
    splits = read_table(out / "protein" / "splits.parquet", table="splits")
    assert sorted(splits.accession) == sorted(prot.accession)

    genome = read_fasta(out / "dna" / "genome.fasta")
    assert list(genome) == ["NC_000913.3"] and len(genome["NC_000913.3"]) == 4_641_652
    tss = read_table(out / "dna" / "tss.parquet", table="tss")
    sites = read_table(out / "dna" / "tf_sites.parquet", table="tf_sites")
    # 8,699 promoters with a TSS, of which 2,062 have only weak evidence; the binding sites get the
    # same filter (site_evidence: strong): 2,301 (site, TF) pairs of the 2,542 with coordinates
    assert len(tss) == 6637 and len(sites) == 2301 and set(tss.chrom) == set(sites.chrom) == {"NC_000913.3"}
    meme = (out / "dna" / "tf_motifs.meme").read_text()
    assert meme.count("\nMOTIF ") == 93 and "A 0.2" in meme  # genome background A ~ 0.246

    again = _snakemake(tmp_path)
    assert again.returncode == 0 and "Nothing to be done" in (again.stdout + again.stderr)
