"""Per-rule conda envs: pinned, on the house channels, and complete for what each rule imports.

The import check is static (seqxai._deps: ast over the rule script and every seqxai module it
can reach, lazy imports inside functions included), so it needs neither conda nor the envs.
"""
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from check_envs import CONDA_TO_PYPI, NOT_ON_PYPI  # scripts/check_envs.py: one spelling map
from seqxai._deps import package_of, script_dependencies

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_env(path: Path) -> dict:
    """{package (PyPI spelling): version} of one env file; pip options are skipped."""
    spec = yaml.safe_load(path.read_text())
    pins = {}
    for dep in spec["dependencies"]:
        entries = []
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{path.name}: unexpected entry {dep}"
            entries = [(d, "==") for d in dep["pip"] if not d.startswith("-")]
        else:
            entries = [(dep, "=")]
        for entry, sep in entries:
            name, found, version = entry.partition(sep)
            assert found and version and not version.startswith("="), \
                f"{path.name}: '{entry}' is not pinned (write name{sep}version)"
            assert re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not re.search(r"[*<>,|!~]", version), \
                f"{path.name}: '{entry}' is a range, not a pin"
            pins[_norm(CONDA_TO_PYPI.get(name, name))] = version
    return pins


def _requirements() -> dict:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


_DUMP_RULES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, OutputSettings, ResourceSettings,
                                      StorageSettings)
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    rules = {}
    _files = lambda x: [x] if isinstance(x, str) else x  # noqa: E731  (one named input or a list)
    for r in wf._workflow.rules:
        base = Path(r.basedir) if r.basedir else Path(".")
        rules[r.name] = {
            "conda": str((base / r.conda_env).resolve()) if isinstance(r.conda_env, str) else None,
            "script": str((base / r.script).resolve()) if r.script else None,
            "action": bool(r.script or r.shellcmd or r.run_func_src or r.is_run),
            "shell": r.shellcmd, "is_run": bool(r.is_run),
            "library": sorted(str(Path(f).resolve()) for f in _files(getattr(r.input, "library", []))),
            "fingerprint_modules": sorted(str(Path(f).resolve()) for f in
                                          wf._workflow.globals["LIBRARY_BY_SCRIPT"].get(Path(r.script).stem, []))
                                   if r.script else [],
        }
print("RULES-JSON" + json.dumps(rules))
"""


@cache
def loaded_rules(configfile: str) -> dict:
    """Rules as Snakemake parses them for one config: {name: {conda, script, action}}."""
    res = subprocess.run([sys.executable, "-c", _DUMP_RULES, configfile], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RULES-JSON"))
    return json.loads(line[len("RULES-JSON"):])


def all_rules() -> dict:
    """The demo config includes the demo generators, the study config the download rules, a Vig
    preset the PDB-chain download (data.structures.source: pdb_list)."""
    rules = {}
    for cfg in ("config/demo.yaml", "config/config.yaml", "config/paper/vig_esm2.yaml"):
        rules.update(loaded_rules(cfg))
    return rules


def rule_names_in_smk() -> list:
    names = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        # `rule name:` and `use rule other as name with:` (a rule inherited from another)
        names += [a or b for a, b in re.findall(r"^\s*(?:rule\s+(\w+)\s*:|use\s+rule\s+\w+\s+as\s+(\w+)\s+with\s*:)",
                                                smk.read_text(), flags=re.M)]
    return names


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_channels_and_every_dependency_pinned(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "bioconda", "nodefaults"], env.name
    assert "python" in parse_env(env)


def test_pin_parser_rejects_unpinned_and_ranges(tmp_path):
    for dep in ("numpy", "numpy>=2", "numpy=2.*"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"channels: [conda-forge, bioconda, nodefaults]\ndependencies:\n  - {dep}\n")
        with pytest.raises(AssertionError):
            parse_env(bad)


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_versions_agree_with_requirements(env):
    req = _requirements()
    assert req["torch"] == "2.13.0"
    for name, version in parse_env(env).items():
        if name in NOT_ON_PYPI:
            continue
        assert name in req, f"{env.name}: {name} is not pinned in requirements.txt"
        # A local label (+cu130) selects a build of the same release.
        assert version.split("+")[0] == req[name], \
            f"{env.name}: {name}={version}, requirements.txt {req[name]}"


def test_torch_env_pins_the_cuda_build_and_its_index():
    spec = yaml.safe_load((ROOT / "envs" / "torch.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0+cu130" in pip
    assert "--extra-index-url https://download.pytorch.org/whl/cu130" in pip


# Shell rules on a standard-library program (`python3 -S`; a `run:` block would cost a whole
# Snakemake process per job: Snakemake re-spawns run: jobs); their env only has to hold python.
NO_ENV = {"library_fingerprint"}


def test_every_rule_is_parsed_and_has_an_existing_env():
    rules = all_rules()
    names = rule_names_in_smk()
    assert len(names) == len(set(names)), "a rule name is defined twice"
    assert set(names) == set(rules) - {"all"}, "rules the three configs do not reach"
    for name in names:
        r = rules[name]
        assert r["action"], f"rule {name} does nothing"
        if name in NO_ENV:
            assert not r["script"] and not r["is_run"], f"rule {name}: expected a shell rule"
            assert r["conda"] and "python" in parse_env(Path(r["conda"])), f"rule {name}: env {r['conda']}"
            assert r["shell"].startswith("python3 -S "), f"rule {name}: {r['shell']}"
            continue
        assert r["conda"] and Path(r["conda"]).is_file(), f"rule {name}: conda env {r['conda']}"
        assert Path(r["conda"]).parent == ROOT / "envs", f"rule {name}: env outside envs/"
        assert r["script"] and Path(r["script"]).is_file(), f"rule {name}: script {r['script']}"


def test_every_script_rule_depends_on_the_library_modules_it_imports():
    """track_library_code() (common.smk) ran after every include: each script rule's input
    `library` is the fingerprint file of its script, whose inputs (library_fingerprint) are
    exactly the import closure of the script."""
    for name, r in all_rules().items():
        if r["script"]:
            files, _ = script_dependencies(r["script"])
            assert str(ROOT / "scripts" / "seqxai" / "io.py") in files
            stem = Path(r["script"]).stem
            assert len(r["library"]) == 1 and r["library"][0].endswith(f"/code/{stem}.tsv"), \
                f"rule {name}: library input {r['library']}"
            assert r["fingerprint_modules"] == sorted(files), f"rule {name}: {r['fingerprint_modules']}"


def _env_gap(name: str) -> list:
    r = all_rules()[name]
    _, imports = script_dependencies(r["script"])
    provided = set(parse_env(Path(r["conda"])))
    return sorted({package_of(i) for i in imports} - provided)


@pytest.mark.parametrize("rule", [r for r in rule_names_in_smk() if r not in NO_ENV])
def test_rule_env_provides_every_third_party_import(rule):
    missing = _env_gap(rule)
    env = Path(all_rules()[rule]["conda"]).name
    assert not missing, f"rule {rule}: envs/{env} lacks {missing} (imported by its script or library)"


def test_import_graph_follows_lazy_relative_and_submodule_imports(tmp_path):
    """A hand-made package: each kind of import reaches exactly the modules listed."""
    lib = tmp_path / "seqxai"
    (lib / "sub").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "sub" / "__init__.py").write_text("import yaml\n")
    (lib / "a.py").write_text("import os\nimport numpy as np\nfrom .sub import b\n"
                              "def f():\n    from sklearn.metrics import roc_auc_score\n")
    (lib / "sub" / "b.py").write_text("from ..c import thing\nfrom . import helper\n")
    (lib / "sub" / "helper.py").write_text("import Bio.SeqIO\n")
    (lib / "c.py").write_text("def g():\n    import torch.nn\n    import seqxai.d\n")
    (lib / "d.py").write_text("import json\n")
    (lib / "unused.py").write_text("import pandas\n")
    script = tmp_path / "rule.py"
    script.write_text("import sys\nfrom seqxai import a\n")
    files, imports = script_dependencies(script)
    assert [Path(f).relative_to(lib).as_posix() for f in files] == [
        "__init__.py", "a.py", "c.py", "d.py", "sub/__init__.py", "sub/b.py", "sub/helper.py"]
    assert imports == ["Bio", "numpy", "sklearn", "torch", "yaml"]
    assert [package_of(i) for i in imports] == ["biopython", "numpy", "scikit-learn", "torch", "pyyaml"]


def test_fingerprint_program_runs_on_a_bare_interpreter(tmp_path):
    """rule library_fingerprint's program under `python3 -S` (no site-packages): the table of
    module, SHA-256 and bytes relative to the root, and its log line."""
    import hashlib
    import shutil

    python3 = shutil.which("python3")
    if python3 is None:
        pytest.skip("no python3 on PATH (the rule's command needs one)")
    mods = [ROOT / "scripts" / "seqxai" / "io.py", ROOT / "scripts" / "seqxai" / "__init__.py"]
    out, log = tmp_path / "code" / "x.tsv", tmp_path / "x.log"
    res = subprocess.run([python3, "-S", str(ROOT / "scripts" / "seqxai" / "_deps.py"), str(out), str(log), "x",
                          str(ROOT / "scripts"), *map(str, mods)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["module", "sha256", "bytes"]
    assert rows[1:] == [[f"seqxai/{m.name}", hashlib.sha256(m.read_bytes()).hexdigest(), str(m.stat().st_size)]
                        for m in sorted(mods)]
    assert log.read_text().startswith("x: 2 library modules")
