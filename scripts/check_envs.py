"""Check the per-rule conda envs for real: build each env's packages in a virtual environment
and import there, isolated, every module that each rule of the env can import.

tests/test_envs.py checks statically that each env lists the packages its rules import. This
checks that those pins install together and import: for each env file, a virtual environment
from the same pins (their PyPI spellings; conda-only entries such as python and mmseqs2 are
skipped, a local label such as torch's +cu130 is dropped), cached outside the repository under
``<cache>/<env>-<sha256 of the env file and Python version>``; then one process
``<venv>/bin/python -I`` (no PYTHONPATH, no user site, no current folder) whose ``sys.path`` holds
the venv, its standard library and ``scripts/`` (the seqxai library) and nothing else imports every
seqxai module and third-party package that the env's rule scripts can import (seqxai._deps, lazy
imports included), and exercises runtime-only needs: pandas' Parquet engine, matplotlib's Agg
backend writing a PNG, and for the summary the package versions its provenance records.

Snakemake's script preamble appends the launching process's ``sys.path`` (as a fallback, to
unpickle its `snakemake` object), so a rule run with --use-conda from `.venv` would find a package
its env lacks in `.venv`; this check inherits nothing from the process that runs it.

Builds use uv when it is found (``.venv/bin/uv``, pinned in requirements-dev.txt; pip's
configuration, which uv does not read, is passed on explicitly), else ``python -m venv`` + pip.

    python scripts/check_envs.py                 # every env; exit 1 if an import fails
    python scripts/check_envs.py --env plots.yaml --cache ~/.cache/seqxai/envs
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))
from seqxai._deps import script_dependencies  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("SEQXAI_ENV_CACHE", Path.home() / ".cache" / "seqxai" / "envs"))
# Conda package name -> its PyPI name.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "pytorch": "torch"}
# Env entries that are no Python package on PyPI.
NOT_ON_PYPI = {"python", "pip", "mmseqs2"}
# The configs whose rules together are every rule (tests/test_envs.py: all_rules).
RULE_CONFIGS = ("config/demo.yaml", "config/config.yaml", "config/paper/vig_esm2.yaml")
# Messages of an installer that could not reach a registry (a skip in the tests, not a defect).
UNREACHABLE = re.compile(r"Failed to fetch|error sending request|dns error|Could not connect|"
                         r"NewConnectionError|Network is unreachable|Temporary failure in name "
                         r"resolution|Failed to establish a new connection", re.I)


class EnvBuildError(RuntimeError):
    """The env's pins did not install; ``unreachable`` when no registry could be reached."""

    def __init__(self, env: str, log: str):
        self.unreachable = bool(UNREACHABLE.search(log))
        super().__init__(f"envs/{env}: the build failed:\n{log[-3000:]}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_pins(env_file: Path) -> tuple[str, dict]:
    """(python version, {PyPI name: version}) of one env file; pip options are dropped."""
    spec = yaml.safe_load(Path(env_file).read_text())
    python, pins = None, {}
    for dep in spec.get("dependencies") or []:
        if isinstance(dep, dict):
            entries = [(d, "==") for d in dep.get("pip", []) if not d.startswith("-")]
        else:
            entries = [(dep, "=")]
        for entry, sep in entries:
            name, found, version = entry.partition(sep)
            if not found or not version:
                raise ValueError(f"{env_file}: dependency '{entry}' is not pinned (name{sep}version)")
            if name == "python":
                python = version
            if name in NOT_ON_PYPI:
                continue
            pins[_norm(CONDA_TO_PYPI.get(name, name))] = version.split("+")[0]
    if python is None:
        raise ValueError(f"{env_file}: no python=X.Y entry")
    return python, pins


def _pip_settings() -> dict:
    """pip's configuration ({key: value}, environment variables last), for uv which ignores it."""
    out = {}
    try:
        res = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60)
        for line in res.stdout.splitlines():
            m = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line)
            if m:
                out[m.group(1)] = m.group(2)
    except (OSError, subprocess.SubprocessError):
        pass
    for key in ("index-url", "extra-index-url", "find-links", "constraint", "cert"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            out[key] = env
    return out


def find_uv() -> str | None:
    here = Path(sys.executable).parent / "uv"
    return str(here) if here.is_file() else shutil.which("uv")


def _installer(venv: Path, python: str, req: Path, uv: str | None) -> list[list[str]]:
    """The commands that build `venv` from the requirements file `req`."""
    if not uv:
        return [[python, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(req)]]
    pip = _pip_settings()
    opts = ["--index-strategy", "unsafe-best-match"]  # pip's choice among several indexes
    if "index-url" in pip:
        opts += ["--default-index", pip["index-url"]]
    for key, flag in (("extra-index-url", "--index"), ("find-links", "--find-links"),
                      ("constraint", "--constraint")):
        for value in pip.get(key, "").split():
            opts += [flag, value]
    return [[uv, "venv", "--quiet", "--relocatable", "--python", python, str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *opts,
             "-r", str(req)]]


def build_env(env_file: Path, cache: Path = DEFAULT_CACHE, rebuild: bool = False,
              uv: str | None = "auto") -> tuple[Path, float, bool]:
    """The venv of one env file, built or reused: (folder, seconds, reused).

    Keyed by the sha256 of the env file and the Python version; a folder without its
    `.complete` stamp is an unfinished build and is built again. The build happens in a
    temporary folder renamed into place, so two checks at once never see half a venv."""
    env_file = Path(env_file)
    python_version, pins = env_pins(env_file)
    python = f"python{python_version}"
    if not shutil.which(python):
        raise EnvBuildError(env_file.name, f"{python} (the env's python={python_version}) is not on PATH")
    key = hashlib.sha256(env_file.read_bytes() + python_version.encode()).hexdigest()[:16]
    venv = Path(cache).expanduser() / f"{env_file.stem}-{key}"
    if (venv / ".complete").is_file() and not rebuild:
        return venv, 0.0, True
    uv = find_uv() if uv == "auto" else uv
    venv.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=venv.parent, prefix=f".{venv.name}.", suffix=".tmp"))
    try:
        req = tmp / "requirements.txt"
        req.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        target = tmp / "venv"
        env = dict(os.environ)
        cert = _pip_settings().get("cert")
        if uv and cert:
            env.setdefault("SSL_CERT_FILE", cert)
        for cmd in _installer(target, python, req, uv):
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode:
                raise EnvBuildError(env_file.name, " ".join(cmd) + "\n" + res.stdout + res.stderr)
        shutil.copy(req, target / "seqxai-requirements.txt")
        (target / ".complete").write_text(f"{env_file.name}\n")
        if venv.exists():
            shutil.rmtree(venv, ignore_errors=True)
        try:
            os.replace(target, venv)
        except OSError:
            if not (venv / ".complete").is_file():  # else a check running at once built it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return venv, time.monotonic() - t0, False


_DUMP_RULES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
rules = {}
for cfg in sys.argv[1:]:
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                          config_settings=ConfigSettings(configfiles=[Path(cfg)]),
                          snakefile=Path("Snakefile"), workdir=Path("."))
        for r in wf._workflow.rules:
            base = Path(r.basedir) if r.basedir else Path(".")
            if isinstance(r.conda_env, str) and r.script:
                rules[r.name] = {"env": (base / r.conda_env).resolve().name,
                                 "script": str((base / r.script).resolve())}
print("RULES-JSON" + json.dumps(rules))
"""


def workflow_rules(configs=RULE_CONFIGS) -> dict:
    """{rule: {env: file name in envs/, script: path}} of the script rules, as Snakemake parses
    them for the given configs (run in a subprocess of this interpreter, which has Snakemake)."""
    res = subprocess.run([sys.executable, "-c", _DUMP_RULES, *configs], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if res.returncode:
        raise RuntimeError("loading the workflow's rules failed:\n" + res.stderr[-3000:])
    line = next(x for x in res.stdout.splitlines() if x.startswith("RULES-JSON"))
    return json.loads(line[len("RULES-JSON"):])


def rule_modules(script: str | Path) -> list[str]:
    """Every module a rule script can import: its seqxai modules (dotted) and third-party
    top-level packages."""
    files, third = script_dependencies(script)
    lib = []
    for f in files:
        rel = Path(f).relative_to(SCRIPTS).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        lib.append(".".join(parts))
    return sorted(lib) + sorted(third)


# Runs in the env's venv as `python -I -c _PROBE '<json>'`: imports each module, then the
# runtime needs; prints one JSON line {sys_path, modules: {name: error|None}, runtime: {...}}.
_PROBE = r"""
import importlib, io, json, sys
args = json.loads(sys.argv[1])
sys.path.insert(0, args["library"])
out = {"sys_path": list(sys.path), "prefix": sys.prefix, "base": sys.base_prefix,
       "modules": {}, "runtime": {}}
for m in args["modules"]:
    try:
        importlib.import_module(m)
        out["modules"][m] = None
    except BaseException as e:
        out["modules"][m] = f"{type(e).__name__}: {e}"

def parquet():
    import pandas as pd
    buf = io.BytesIO()
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(buf)
    buf.seek(0)
    assert pd.read_parquet(buf)["a"].tolist() == [1, 2]

def agg_png():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG")

def provenance():
    from seqxai.summary import package_versions
    return package_versions()

for name in args["runtime"]:
    try:
        out["runtime"][name] = [True, globals()[name]()]
    except BaseException as e:
        out["runtime"][name] = [False, f"{type(e).__name__}: {e}"]
print("PROBE-JSON" + json.dumps(out))
"""


def runtime_needs(modules: list[str]) -> list[str]:
    """Checks beyond imports that a rule needs: pandas -> a Parquet engine, matplotlib -> the
    Agg backend, the summary -> its provenance's package versions."""
    needs = []
    if "pandas" in modules:
        needs.append("parquet")
    if "matplotlib" in modules:
        needs.append("agg_png")
    if "seqxai.summary" in modules:
        needs.append("provenance")
    return needs


def probe(venv: Path, modules: list[str], runtime: list[str]) -> dict:
    """Import `modules` and run the `runtime` checks in the venv, isolated."""
    args = json.dumps({"library": str(SCRIPTS), "modules": modules, "runtime": runtime})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as cwd:  # -I also keeps the current folder off sys.path
        res = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", _PROBE, args], cwd=cwd,
                             capture_output=True, text=True, env=env, timeout=900)
    line = next((x for x in res.stdout.splitlines() if x.startswith("PROBE-JSON")), None)
    if line is None:
        raise RuntimeError(f"{venv}: the import check crashed:\n{res.stderr[-3000:]}")
    return json.loads(line[len("PROBE-JSON"):])


def foreign_paths(result: dict) -> list[str]:
    """Entries of the probe's sys.path outside the venv, its base Python and the library."""
    def under(p, a):
        return p == a or p.startswith(a.rstrip("/") + "/")

    return [p for p in result["sys_path"]
            if p and not (under(p, result["prefix"]) or p == str(SCRIPTS)
                          or (under(p, result["base"]) and not p.endswith(("site-packages", "dist-packages"))))]


def check_env(env_file: Path, rules: dict, cache: Path = DEFAULT_CACHE, rebuild: bool = False) -> dict:
    """Build (or reuse) one env and check every rule of it. Returns
    {env, venv, build_s, reused, rules: {rule: [problems]}, problems: [env-wide problems]}."""
    env_file = Path(env_file)
    venv, seconds, reused = build_env(env_file, cache, rebuild)
    mine = {name: r for name, r in rules.items() if r["env"] == env_file.name}
    needed = {name: rule_modules(r["script"]) for name, r in mine.items()}
    modules = sorted({m for ms in needed.values() for m in ms})
    runtime = runtime_needs(modules)
    t0 = time.monotonic()
    result = probe(venv, modules, runtime)
    problems = [f"sys.path holds {p}, outside the venv" for p in foreign_paths(result)]
    _, pins = env_pins(env_file)
    per_rule = {}
    for name, ms in sorted(needed.items()):
        bad = [f"import {m}: {result['modules'][m]}" for m in ms if result["modules"][m]]
        for need in runtime_needs(ms):
            ok, value = result["runtime"][need]
            if not ok:
                bad.append(f"{need}: {value}")
            elif need == "provenance":
                # every version the summary records must be the env's own pin (snakemake, not
                # in the env, is the version of the Snakemake running the job: None here)
                for pkg, version in value.items():
                    want = pins.get(_norm(pkg))
                    got = version.split("+")[0] if version else version  # 2.13.0+cpu: 2.13.0
                    if pkg != "python" and got != want and not (pkg == "snakemake" and got is None):
                        bad.append(f"provenance: {pkg} recorded as {version}, envs/{env_file.name} pins {want}")
        per_rule[name] = bad
    return {"env": env_file.name, "venv": str(venv), "build_s": round(seconds, 1), "reused": reused,
            "check_s": round(time.monotonic() - t0, 1), "modules": len(modules),
            "rules": per_rule, "problems": problems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", action="append", help="env file name in envs/ (default: all)")
    ap.add_argument("--envs-dir", default=str(ROOT / "envs"))
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the built venvs")
    ap.add_argument("--rebuild", action="store_true", help="build even where a cached venv exists")
    ap.add_argument("--config", action="append", help="config files whose rules are checked "
                    f"(default: {', '.join(RULE_CONFIGS)}: together every rule)")
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args(argv)
    envs_dir = Path(a.envs_dir)
    files = [envs_dir / e for e in a.env] if a.env else sorted(envs_dir.glob("*.yaml"))
    rules = workflow_rules(a.config or RULE_CONFIGS)
    results, failed = [], False
    for f in files:
        try:
            r = check_env(f, rules, Path(a.cache), a.rebuild)
        except EnvBuildError as e:
            print(f"FAIL {e}", flush=True)
            failed = True
            continue
        results.append(r)
        how = "cached" if r["reused"] else f"built in {r['build_s']} s"
        print(f"{r['env']}: venv {how}; {len(r['rules'])} rules, {r['modules']} modules checked "
              f"in {r['check_s']} s", flush=True)
        for p in r["problems"]:
            print(f"  FAIL {r['env']}: {p}")
            failed = True
        for rule, bad in r["rules"].items():
            print(f"  {'ok  ' if not bad else 'FAIL'} {rule}" + "".join(f"\n       {b}" for b in bad))
            failed |= bool(bad)
    if not any(r["rules"] for r in results) and results:
        print("no rule uses the checked envs")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
