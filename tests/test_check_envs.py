"""scripts/check_envs.py: one small env built for real and imported isolated, a defect found, and
the summary's package versions independent of the launcher's sys.path (Snakemake's fallback)."""
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_envs  # noqa: E402
from seqxai.summary import package_versions  # noqa: E402


def test_env_pins_use_pypi_spellings_and_skip_conda_only_entries():
    python, pins = check_envs.env_pins(ROOT / "envs" / "torch.yaml")
    assert python == "3.11"
    assert pins["torch"] == "2.13.0"  # +cu130 dropped: PyPI has no local labels
    assert pins["matplotlib"] == "3.11.2" and "matplotlib-base" not in pins
    assert not {"python", "pip", "mmseqs2"} & set(pins)
    assert not any(name.startswith("-") for name in pins)  # --extra-index-url dropped
    _, data = check_envs.env_pins(ROOT / "envs" / "data.yaml")
    assert "mmseqs2" not in data and data["memelite"] == "0.5.0"


def test_package_versions_ignore_a_package_only_on_the_appended_launcher_path(tmp_path, monkeypatch):
    """Snakemake's preamble appends the launcher's sys.path: a package found only there is not
    in the job's env and must be recorded as absent, not with the launcher's version."""
    fake = tmp_path / "launcher_site"
    meta = fake / "seqxai_fake_pkg-9.9.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: seqxai-fake-pkg\nVersion: 9.9\n")
    monkeypatch.syspath_prepend(str(fake))  # first on the path: importlib.metadata would find it
    from importlib.metadata import version
    assert version("seqxai-fake-pkg") == "9.9"
    got = package_versions(names=("seqxai-fake-pkg", "numpy"))
    assert got["seqxai-fake-pkg"] is None
    import numpy
    assert got["numpy"] == numpy.__version__


def test_package_versions_record_the_running_snakemake(monkeypatch):
    monkeypatch.setitem(sys.modules, "snakemake", types.SimpleNamespace(__version__="0.0.test"))
    assert package_versions()["snakemake"] == "0.0.test"
    assert package_versions(names=("numpy",)).keys() == {"python", "numpy"}


@pytest.fixture(scope="module")
def demo_rules():
    """The demo config's script rules (every plots.yaml rule is among them)."""
    return check_envs.workflow_rules(("config/demo.yaml",))


def _check(env_file, rules, cache):
    try:
        return check_envs.check_env(env_file, rules, cache)
    except check_envs.EnvBuildError as e:
        if e.unreachable:
            pytest.skip(f"no package registry reachable to build {env_file.name}: {str(e)[-300:]}")
        raise


def test_plots_env_built_from_its_pins_imports_every_rule(demo_rules):
    r = _check(ROOT / "envs" / "plots.yaml", demo_rules, check_envs.DEFAULT_CACHE)
    assert {"summary_page", "plot_training", "plot_dna"} <= set(r["rules"])
    assert r["problems"] == [], r["problems"]
    assert {rule: bad for rule, bad in r["rules"].items() if bad} == {}
    # isolated: the venv has no snakemake and none of .venv's packages leak in
    out = check_envs.probe(Path(r["venv"]), ["snakemake", "torch", "seqxai.plots"], ["agg_png"])
    assert out["modules"]["snakemake"].startswith("ModuleNotFoundError")
    assert out["modules"]["torch"].startswith("ModuleNotFoundError")
    assert out["modules"]["seqxai.plots"] is None and out["runtime"]["agg_png"][0]
    assert check_envs.foreign_paths(out) == []


def test_provenance_in_an_env_run_the_way_snakemake_runs_a_script(demo_rules):
    """As Snakemake's preamble does: the launcher's sys.path appended, snakemake imported from
    it. The plots env has no torch: the launcher's torch must not be recorded as the job's."""
    import snakemake

    r = _check(ROOT / "envs" / "plots.yaml", demo_rules, check_envs.DEFAULT_CACHE)
    code = (f"import sys, json; sys.path.extend({sys.path!r}); import snakemake; "
            f"sys.path.insert(0, {str(ROOT / 'scripts')!r}); "
            "from seqxai.summary import package_versions; print(json.dumps(package_versions()))")
    res = subprocess.run([str(Path(r["venv"]) / "bin" / "python"), "-I", "-c", code],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.splitlines()[-1])
    _, pins = check_envs.env_pins(ROOT / "envs" / "plots.yaml")
    assert got["torch"] is None and got["transformers"] is None  # .venv has both
    assert got["numpy"] == pins["numpy"] and got["pandas"] == pins["pandas"]
    assert got["snakemake"] == snakemake.__version__


def test_a_package_missing_from_an_env_fails_naming_the_rule_and_module(demo_rules, tmp_path, capsys,
                                                                         monkeypatch):
    spec = yaml.safe_load((ROOT / "envs" / "plots.yaml").read_text())
    spec["dependencies"] = [d for d in spec["dependencies"] if d != "pyarrow=26.0.1"]
    assert "pyarrow=26.0.1" in yaml.safe_load((ROOT / "envs" / "plots.yaml").read_text())["dependencies"]
    broken = tmp_path / "envs" / "plots.yaml"
    broken.parent.mkdir()
    broken.write_text(yaml.safe_dump(spec))
    r = _check(broken, demo_rules, tmp_path / "cache")
    assert r["rules"] and all(r["rules"].values()), "every plots rule reads Parquet via seqxai.io"
    bad = r["rules"]["plot_training"]
    assert any(b.startswith("import pyarrow: ModuleNotFoundError") for b in bad), bad
    assert any(b.startswith("parquet: ") for b in bad), bad
    # the command line (the venv just built, reused) names the rule and the module, exits 1
    monkeypatch.setattr(check_envs, "workflow_rules", lambda configs: demo_rules)
    rc = check_envs.main(["--envs-dir", str(broken.parent), "--cache", str(tmp_path / "cache")])
    assert rc == 1
    printed = capsys.readouterr().out
    assert re.search(r"FAIL plot_training\n(       .*\n)*       import pyarrow: ModuleNotFoundError",
                     printed), printed
