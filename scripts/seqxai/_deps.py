"""Static import graph of the rule scripts and the seqxai library (standard library only).

Used twice: workflow/rules/common.smk makes every rule depend on the library modules its
script imports (Snakemake's `code` rerun trigger covers only the script file itself), and
tests/test_envs.py checks that each rule's conda env provides the third-party packages those
modules import. Both follow every import, also the lazy ones inside functions: a module is
a dependency as soon as any path through the script can import it.
"""
from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

LIBRARY = "seqxai"

# Import name -> distribution name where they differ (PyPI/conda spelling, lower case).
IMPORT_TO_PACKAGE = {
    "sklearn": "scikit-learn",
    "Bio": "biopython",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "dateutil": "python-dateutil",
    "google": "protobuf",
    "modiscolite": "modisco-lite",
}


def package_of(import_name: str) -> str:
    """Distribution name of a top-level import name (sklearn -> scikit-learn)."""
    return IMPORT_TO_PACKAGE.get(import_name, import_name).lower()


def _module_file(lib_parent: Path, module: str) -> Path | None:
    """The .py file of a library module (a package's __init__.py), or None if there is none."""
    base = lib_parent.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _parents(module: str) -> list[str]:
    """seqxai.sources.uniprot -> [seqxai, seqxai.sources, seqxai.sources.uniprot]."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _imports(path: Path, module: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(library modules, third-party top-level names) imported anywhere in one file.

    `module` is the file's dotted name inside the library (None for a rule script); it
    resolves relative imports. Standard-library names are dropped.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    lib_parent = path.parent
    if module is not None:
        lib_parent = path.parents[len(module.split(".")) - (0 if path.name == "__init__.py" else 1)]
    package = None
    if module is not None:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lib, third = set(), set()

    def add(name: str):
        top = name.split(".")[0]
        if top == LIBRARY:
            # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
            lib.update(m for m in _parents(name) if _module_file(lib_parent, m))
        elif top not in sys.stdlib_module_names and top != "__future__":
            third.add(top)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    raise ValueError(f"{path}: relative import outside the {LIBRARY} package")
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            add(target)
            if target.split(".")[0] == LIBRARY:
                # `from seqxai import plots` imports the submodule seqxai.plots.
                for alias in node.names:
                    if _module_file(lib_parent, f"{target}.{alias.name}"):
                        add(f"{target}.{alias.name}")
    return tuple(sorted(lib)), tuple(sorted(third))


def script_dependencies(script: str | Path, library_root: str | Path | None = None):
    """Library files and third-party import names a rule script can import, transitively.

    library_root is the folder that holds the `seqxai` package (default: the script's folder,
    as the rule scripts put it on sys.path). Returns (sorted list of library .py paths,
    sorted list of top-level third-party import names).
    """
    script = Path(script).resolve()
    lib_parent = Path(library_root).resolve() if library_root else script.parent
    lib, third = _imports(script, None)
    todo, seen, third_all = list(lib), set(), set(third)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        f = _module_file(lib_parent, mod)
        sub_lib, sub_third = _imports(f, mod)
        third_all.update(sub_third)
        todo.extend(m for m in sub_lib if m not in seen)
    files = sorted(str(_module_file(lib_parent, m)) for m in seen)
    return files, sorted(third_all)


def write_fingerprint(files, out_path: str | Path, root: str | Path | None = None) -> list[tuple[str, str, int]]:
    """Write a tab-separated table ``module, sha256, bytes`` of the given library files
    (paths relative to ``root`` when given) to ``out_path``, atomically; returns the rows.

    The workflow keeps one such file per rule script (rule library_fingerprint): the script's
    rules take it as their only library input, so a changed module reruns them through one
    file instead of one input per module and job, and the file records which library code
    produced a run's results."""
    import hashlib
    import os
    import tempfile

    rows = []
    for f in sorted(str(x) for x in files):
        data = Path(f).read_bytes()
        name = os.path.relpath(f, root) if root else f
        rows.append((name, hashlib.sha256(data).hexdigest(), len(data)))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("module\tsha256\tbytes\n")
            fh.writelines(f"{n}\t{h}\t{b}\n" for n, h, b in rows)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python _deps.py OUT LOG SCRIPT ROOT MODULE...``: the job of rule library_fingerprint
    (workflow/rules/code.smk). Standard library only and run by path, so that the job costs one
    bare interpreter start: a ``run:`` rule is re-spawned by Snakemake as a whole Snakemake
    process that parses the workflow again (~5 s of CPU and ~12 s of wall time per job, 26 jobs
    per run, measured on 2 cores)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 4:
        raise SystemExit("usage: _deps.py OUT LOG SCRIPT ROOT MODULE...")
    out, log, script, root, modules = args[0], args[1], args[2], args[3], args[4:]
    rows = write_fingerprint(modules, out, root=root)
    Path(log).write_text(f"{script}: {len(rows)} library modules, {sum(r[2] for r in rows)} bytes\n")


if __name__ == "__main__":
    main()
