"""Config validation, environment pins and the workflow's static checks."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _dry_run(*extra, configfile="config/demo.yaml", cores=1):
    """A dry run into a fresh output folder, so earlier results do not hide jobs."""
    import tempfile

    outdir = tempfile.mkdtemp(prefix="seqxai-dry-")
    return subprocess.run(SNAKEMAKE + ["-n", "--cores", str(cores), "--configfile", configfile, *extra,
                                       "--config", f"outdir={outdir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_demo_and_study_configs_validate_and_build_a_dag():
    """Both build the whole DAG; on 2 cores a job asks for 2 threads only where it uses them:
    MMseqs2 in split_proteins (split.method homology), not the demo's family split."""
    for cfg, multi in (("config/demo.yaml", set()), ("config/config.yaml", {"split_proteins"})):
        res = _dry_run(configfile=cfg, cores=2)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "finetune_protein" in res.stdout and "attribute_proteins" in res.stdout
        threads = {m.group(1): int(m.group(2)) for m in re.finditer(
            r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    threads: (\d+)$", res.stdout, flags=re.M)}
        assert {r for r, n in threads.items() if n > 1} == multi, threads


def _problem_lines(res):
    """The lines of the config error (seqxai.config_check.format_problems), and all lines."""
    lines = (res.stdout + res.stderr).splitlines()
    return [x.strip() for x in lines if x.startswith("  ") and not x.strip().startswith("File ")], lines


def test_wrong_keys_fail_before_any_job_in_one_screen_naming_file_and_spelling(tmp_path):
    """A misspelled top-level key printed the whole schema and config (4,314 lines), a nested
    one 93 lines; now one line each."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("atribution:\n  shards: 3\nsplit:\n  metod: random\n")
    res = _dry_run("--configfile", str(bad))
    problems, lines = _problem_lines(res)
    assert res.returncode != 0 and len(lines) < 10, lines
    assert problems == [f"atribution: unknown key ({bad}); did you mean 'attribution'?",
                        f"split.metod: unknown key ({bad}); did you mean 'method'?"]


def test_wrong_type_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attribution:\n  n_steps: many\n")
    res = _dry_run("--configfile", str(bad))
    problems, _ = _problem_lines(res)
    assert res.returncode != 0
    assert problems == [f"attribution.n_steps: 'many' is not of type integer ({bad})"]


def test_inconsistent_config_is_explained(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("split:\n  fractions: {train: 0.9, valid: 0.1, test: 0.1}\n")
    res = _dry_run("--configfile", str(bad))
    assert res.returncode != 0 and "split.fractions must sum to 1" in res.stdout + res.stderr


def test_cross_key_mistakes_stop_at_parse_time_naming_keys_and_files(tmp_path):
    """Issue 19.4: values valid alone that failed late (an IndexError in torch.embedding, an
    argmax of an empty window after training) stop the parse, one line each."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "protein": {"encoder": {"demo_config": {"position_embedding_type": "absolute",
                                                "max_position_embeddings": 200}}},
        "dna": {"probe": {"offset_min": 50}}}))
    res = _dry_run("--configfile", "config/demo.yaml", str(bad))
    problems, _ = _problem_lines(res)
    assert res.returncode != 0 and len(problems) == 2, problems
    mpe, offs = problems
    assert mpe.startswith(f"protein.encoder.demo_config.max_position_embeddings = 200 ({bad}) < "
                          "protein.max_length = 256 (config/demo.yaml) + 2")
    assert offs.startswith(f"dna.probe.offset_min = 50 ({bad}) > dna.probe.offset_max = 20 "
                           "(config/demo.yaml)")


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
        # a run: block executes in the Snakemake process, where no conda env applies
        keys = ("log:", "threads:") + (() if "\n    run:" in body else ("conda:",))
        for key in keys:
            assert key in body, f"rule {name} lacks {key}"


# ------------------------------------------------ library code and local files as inputs
def _copy_workflow(dst: Path) -> Path:
    import shutil

    for name in ("Snakefile", "workflow", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    return dst


def _dry_jobs(cwd: Path, *extra):
    """{rule: [reason lines]} of a dry run in cwd."""
    res = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", *extra], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs, rule = {}, None
    for line in res.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            jobs.setdefault(rule, [])
        elif rule and line.strip().startswith("reason:"):
            jobs[rule].append(line.strip())
    return jobs, res.stdout


def test_touching_a_library_module_reruns_exactly_the_rules_that_import_it(tmp_path):
    """A demo run's outputs faked at one mtime; a newer library module must rerun the rules
    whose scripts import it (hand-listed from the scripts' imports) and nothing else."""
    import os

    wf = _copy_workflow(tmp_path)
    cfg = ["--configfile", "config/demo.yaml", "--config", "outdir=out"]
    jobs, out = _dry_jobs(wf, *cfg)
    outputs = set()
    for reasons in jobs.values():
        for r in reasons:
            m = re.search(r"Missing output files: ([^;]+)", r)
            outputs.update(m.group(1).split(", ") if m else [])
    assert len(outputs) > 30
    t0 = 1_700_000_000
    for f in (wf / "scripts").rglob("*"):
        os.utime(f, (t0 - 100, t0 - 100))
    for o in outputs:
        p = wf / o
        p.parent.mkdir(parents=True, exist_ok=True)
        # directory() outputs have no suffix (models/protein/pretrained, .../model)
        p.mkdir() if "." not in p.name else p.touch()
        os.utime(p, (t0, t0))
    assert _dry_jobs(wf, *cfg)[0] == {}, "faked outputs are not up to date"

    def fingerprints(stdout):
        """Scripts whose library fingerprint (code/<script>.tsv) the dry run rebuilds."""
        return set(re.findall(r"^\s*output: \S*/code/(\w+)\.tsv$", stdout, flags=re.M))

    lib = wf / "scripts" / "seqxai"
    os.utime(lib / "plots.py", (t0 + 100, t0 + 100))
    jobs, stdout = _dry_jobs(wf, *cfg)
    plots = {"plot_attention_probe", "plot_head_significance", "plot_tracks", "plot_training",
             "plot_residue_flipping", "plot_diagnostic_probes"}
    assert fingerprints(stdout) == plots     # the scripts are named after their rules
    assert set(jobs) == plots | {"library_fingerprint", "all"}
    os.utime(lib / "plots.py", (t0 - 100, t0 - 100))

    # annotation_scores.py: imported by the head_statistics script (via head_statistics.py) and,
    # via attention_probes.py, by the attention_probe script (and diagnostic_probes.py); their
    # plots and the summary follow.
    os.utime(lib / "annotation_scores.py", (t0 + 100, t0 + 100))
    jobs, stdout = _dry_jobs(wf, *cfg)
    assert fingerprints(stdout) == {"head_statistics", "attention_probe", "diagnostic_probes"}
    assert set(jobs) == {"library_fingerprint", "head_statistics", "attention_probe", "plot_head_significance",
                         "plot_attention_probe", "diagnostic_probes", "plot_diagnostic_probes", "summarize",
                         "summary_page", "all"}


def test_local_encoder_and_structure_files_are_inputs(tmp_path):
    """Every file of a local encoder folder and of data.structures.local, and the mapping TSV,
    is an input of the rules that read them (a changed file reruns them)."""
    enc = tmp_path / "enc"
    enc.mkdir()
    for f in ("config.json", "model.safetensors", "vocab.txt"):
        (enc / f).write_text("{}")
    st = tmp_path / "pdb"
    (st / "sub").mkdir(parents=True)
    (st / "P12345.pdb").write_text("")
    (st / "sub" / "Q9.cif").write_text("")
    (st / ".hidden").write_text("")
    mapping = tmp_path / "map.tsv"
    mapping.write_text("accession\tfile\nP12345\tP12345.pdb\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({
        "protein": {"encoder": {"pretrained": str(enc)}},
        "data": {"structures": {"source": "local", "local": str(st), "mapping": str(mapping)}}}))
    res = _dry_run("--configfile", "config/config.yaml", str(extra), configfile="config/config.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    blocks = {}
    for block in re.split(r"\n(?=(?:local)?rule )", res.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            inp = re.search(r"input: (.*)", block)
            blocks.setdefault(m.group(1), set()).update(inp.group(1).split(", ") if inp else [])
    for f in ("config.json", "model.safetensors", "vocab.txt"):
        assert str(enc / f) in blocks["finetune_protein"], f
        assert str(enc / f) in blocks["attention_probe"], f
    assert {str(st / "P12345.pdb"), str(st / "sub" / "Q9.cif"), str(mapping)} <= blocks["download_structures"]
    assert str(st / ".hidden") not in blocks["download_structures"]
