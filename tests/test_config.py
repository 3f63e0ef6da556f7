"""Config validation, environment pins and the workflow's static checks."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _dry_run(*extra, configfile="config/demo.yaml"):
    """A dry run into a fresh output folder, so earlier results do not hide jobs."""
    import tempfile

    outdir = tempfile.mkdtemp(prefix="seqxai-dry-")
    return subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--configfile", configfile, *extra,
                                       "--config", f"outdir={outdir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_demo_and_study_configs_validate_and_build_a_dag():
    for cfg in ("config/demo.yaml", "config/config.yaml"):
        res = _dry_run(configfile=cfg)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "finetune_protein" in res.stdout and "attribute_proteins" in res.stdout


def test_wrong_key_fails_before_any_job_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attribution:\n  shardz: 3\n")
    res = _dry_run("--configfile", str(bad))
    msg = res.stdout + res.stderr
    assert res.returncode != 0
    assert "'shardz' was unexpected" in msg and "['attribution']" in msg


def test_wrong_type_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attribution:\n  n_steps: many\n")
    res = _dry_run("--configfile", str(bad))
    msg = res.stdout + res.stderr
    assert res.returncode != 0
    assert "'many' is not of type 'integer'" in msg and "['n_steps']" in msg


def test_inconsistent_config_is_explained(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("split:\n  fractions: {train: 0.9, valid: 0.1, test: 0.1}\n")
    res = _dry_run("--configfile", str(bad))
    assert res.returncode != 0 and "split.fractions must sum to 1" in res.stdout + res.stderr


@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/config.yaml"])
def test_lint_is_clean(configfile):
    """Both the demo rules and the download rules (included for real data) lint clean."""
    res = subprocess.run(SNAKEMAKE + ["--lint", "--configfile", configfile], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


# Env pins, channels and completeness: tests/test_envs.py.


def test_every_rule_has_log_conda_and_named_io():
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = re.split(r"\n\s*rule ", text)[1:]
    assert len(rules) >= 15
    for body in rules:
        name = body.split(":")[0]
        for key in ("log:", "conda:", "threads:"):
            assert key in body, f"rule {name} lacks {key}"
