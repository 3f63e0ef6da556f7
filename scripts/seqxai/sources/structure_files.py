"""Where a protein's structure file comes from: a local folder of PDB/mmCIF files, AlphaFold DB,
or RCSB PDB, downloads cached under ``cache_dir``.

AlphaFold's canonical model is chosen by ``entryId == AF-<acc>-F1`` / ``uniprotAccession == acc``,
never by list index. Local files are matched to accessions by a mapping table, by file name
``<acc>.*`` / ``AF-<acc>-F1-model_vN.*``, or by the file's UniProt reference (``DBREF`` lines /
``_struct_ref``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import DataError
from . import validate as formats
from .http import Fetcher
from .structure_chains import AF_NAME, StructureMismatch, uniprot_refs

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


def _structure_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.lower().removesuffix(".gz").endswith(STRUCTURE_SUFFIXES)
    )


def local_candidates(folder: str | Path, accessions: set[str], mapping: pd.DataFrame | None = None):
    """{accession: [(path, chain or None), ...]} for a local folder, best guess first:
    mapping table rows, then file names (``AF-<acc>-F1-model_vN.*``, ``<acc>.*``), then the
    files' own UniProt references (DBREF / _struct_ref). An accession with mapping rows gets
    those rows only: the mapping is an explicit choice, never silently replaced by a guess."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"structures: local folder not found: {folder}")
    out: dict[str, list] = {}
    mapped: set[str] = set(mapping["accession"]) if mapping is not None else set()
    if mapping is not None:
        where = mapping.attrs.get("path", "data.structures.mapping")
        for line, r in enumerate(mapping.itertuples(index=False), 2):
            p = Path(r.file) if Path(r.file).is_absolute() else folder / r.file
            if not p.is_file():  # an explicit choice: no silent fallback to another file
                raise DataError(f"{where}, line {line}: field 'file' is '{r.file}': not found in {folder}")
            chain = getattr(r, "chain", None) or None
            out.setdefault(r.accession, []).append((p, chain if isinstance(chain, str) else None))
    files = _structure_files(folder)
    for p in files:
        stem = p.name.split(".")[0]
        af = AF_NAME.search(p.name)
        acc = af.group(1) if af else stem.upper()
        if acc in accessions and acc not in mapped:
            out.setdefault(acc, []).append((p, None))
    for p in files:
        for acc, chains in uniprot_refs(p).items():
            if acc in accessions and acc not in mapped:
                out.setdefault(acc, []).append((p, chains[0] if chains else None))
    return out


def alphafold_entry(entries: list[dict], accession: str) -> dict | None:
    """The canonical AlphaFold DB entry for ``accession`` from a prediction API answer."""
    want = f"AF-{accession}-F1"
    for e in entries:
        if e.get("entryId") == want:
            return e
    for e in entries:
        if e.get("uniprotAccession") == accession and "-F1" in e.get("entryId", "-F1"):
            return e
    return None


def fetch_alphafold(
    fetcher: Fetcher,
    accession: str,
    cache_dir: str | Path,
    api_url: str = "https://alphafold.ebi.ac.uk/api/prediction/{accession}",
    file_format: str = "pdb",
    file_base: str | None = None,
) -> tuple[Path, dict]:
    """Download (or reuse from the cache) the canonical AlphaFold model of ``accession``.

    ``file_base`` (a mirror, e.g. a local copy of the files/ folder) replaces everything before
    the file name of the API's ``pdbUrl``/``cifUrl``.
    """
    cache_dir = Path(cache_dir) / "alphafold"
    api_file = fetcher.download(api_url.format(accession=accession), cache_dir / f"{accession}.api.json", validate=_json_list)
    import json

    entries = json.loads(api_file.read_text())
    entry = alphafold_entry(entries if isinstance(entries, list) else [entries], accession)
    if entry is None:
        raise StructureMismatch(
            f"{accession}: AlphaFold DB answer lists {[e.get('entryId') for e in entries]}, none is AF-{accession}-F1"
        )
    url = entry["cifUrl"] if file_format == "cif" else entry["pdbUrl"]
    if file_base:
        url = file_base.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
    name = url.rsplit("/", 1)[-1]
    path = fetcher.download(url, cache_dir / name, validate=formats.structure_for(name))
    return path, entry


def _json_list(path: Path) -> None:
    formats.json_body(path)


def fetch_pdb(fetcher: Fetcher, pdb_id: str, cache_dir: str | Path, url: str = "https://files.rcsb.org/download/{id}.cif") -> Path:
    pdb_id = pdb_id.upper()
    u = url.format(id=pdb_id)
    name = u.rsplit("/", 1)[-1]
    return fetcher.download(u, Path(cache_dir) / "pdb" / name, validate=formats.structure_for(name))


def find_structure(name: str, folders) -> Path | None:
    """The first ``folder/name`` (or a ``.gz`` of it) that exists, else None."""
    for folder in folders:
        if not folder:
            continue
        for cand in (Path(folder) / name, Path(folder) / (name + ".gz")):
            if cand.is_file():
                return cand
    return None
