"""Pinned chain lists (``data.structures.source: pdb_list``): a PISCES ``cullpdb`` file -> the
chains that are the proteins of a run, their contact maps and (through SIFTS) their UniProt
annotations.

A chain list is read in either of the two formats the PISCES server has written:
- current: header ``PDBchain len method resol rfac freerfac``, rows ``1ABCA 245 XRAY 1.80 0.19 0.23``;
- older (lists of ~2009-2020): header ``IDs length Exptl. resolution R-factor FreeRvalue``, the same
  six columns.
PDB id = the first 4 characters of the first field, chain id = the rest; ``NA`` for a missing
number. A ``.gz`` file is read as gzip. Accession of a chain = ``<PDB id>_<chain>`` (``1AKI_A``).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError
from . import DropReport
from . import validate as formats
from .http import Fetcher

log = logging.getLogger("seqxai")

CHAIN_LIST_HEADER = ["PDBchain", "len", "method", "resol", "rfac", "freerfac"]
CHAIN_LIST_HEADER_OLD = ["IDs", "length", "Exptl.", "resolution", "R-factor", "FreeRvalue"]
CHAIN_LIST_COLUMNS = ["accession", "pdb_id", "chain", "length", "method", "resolution", "r_factor",
                      "free_r_factor"]
_PDB_CHAIN = re.compile(r"^([0-9][A-Za-z0-9]{3})([A-Za-z0-9]{1,4})$")


def _list_number(value: str, path, line: int, field: str, kind=float):
    if value.upper() in ("NA", "N/A", "?", "."):
        return np.nan if kind is float else None
    try:
        return kind(value)
    except ValueError:
        raise DataError(f"{path}, line {line}: field '{field}' is '{value}', not a number") from None


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data.structures.chain_list: file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    return raw.decode("utf-8", errors="replace")


def read_chain_list(path: str | Path) -> pd.DataFrame:
    """A PISCES ``cullpdb`` chain list -> one row per chain (``CHAIN_LIST_COLUMNS``), file order.

    Either header (module docstring) is accepted; ``#`` lines and blank lines are skipped. A bad
    row raises DataError naming the file, the line and the field.
    """
    path = Path(path)
    text = _read_text(path)
    rows, seen, header = [], {}, None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if header is None:
            if fields[:6] not in (CHAIN_LIST_HEADER, CHAIN_LIST_HEADER_OLD):
                raise DataError(f"{path}, line {n}: expected the PISCES header "
                                f"'{' '.join(CHAIN_LIST_HEADER)}' (or the older "
                                f"'{' '.join(CHAIN_LIST_HEADER_OLD)}'), found '{line[:80]}'")
            header = CHAIN_LIST_HEADER  # field names in messages: the current ones
            continue
        if len(fields) != 6:
            raise DataError(f"{path}, line {n}: {len(fields)} fields, need 6 ({' '.join(CHAIN_LIST_HEADER)})")
        m = _PDB_CHAIN.match(fields[0])
        if not m:
            raise DataError(f"{path}, line {n}: field 'PDBchain' is '{fields[0]}', not a PDB id "
                            f"(4 characters) followed by a chain id")
        pdb_id, chain = m.group(1).upper(), m.group(2)
        acc = f"{pdb_id}_{chain}"
        if acc in seen:
            raise DataError(f"{path}, line {n}: chain {fields[0]} is listed twice (first on line {seen[acc]})")
        seen[acc] = n
        length = _list_number(fields[1], path, n, "len", int)
        if length is None or length <= 0:
            raise DataError(f"{path}, line {n}: field 'len' is '{fields[1]}', not a positive length")
        rows.append({"accession": acc, "pdb_id": pdb_id, "chain": chain, "length": length,
                     "method": fields[2],
                     "resolution": _list_number(fields[3], path, n, "resol"),
                     "r_factor": _list_number(fields[4], path, n, "rfac"),
                     "free_r_factor": _list_number(fields[5], path, n, "freerfac")})
    if header is None:
        raise DataError(f"{path}: empty chain list (no PISCES header line)")
    return pd.DataFrame(rows, columns=CHAIN_LIST_COLUMNS)


def select_chains(chains: pd.DataFrame, max_chains: int | None = None, max_resolution: float | None = None,
                  min_length: int | None = None, report: DropReport | None = None,
                  seed: int | None = None) -> pd.DataFrame:
    """Chains with resolution <= ``max_resolution`` (a chain without one, e.g. NMR, is dropped
    when a maximum is set) and length >= ``min_length``; of those, ``max_chains``: a seeded
    random sample (``seed``, kept in file order) or, without a seed, the first in file order."""
    keep = np.ones(len(chains), bool)
    if max_resolution is not None:
        bad = ~(chains["resolution"].to_numpy(float) <= max_resolution)
        for acc in chains["accession"][bad & keep]:
            if report is not None:
                report.drop("chain", f"resolution > {max_resolution} A or none", acc, warn=False)
        keep &= ~bad
    if min_length is not None:
        bad = chains["length"].to_numpy() < min_length
        for acc in chains["accession"][bad & keep]:
            if report is not None:
                report.drop("chain", f"shorter than {min_length}", acc, warn=False)
        keep &= ~bad
    out = chains[keep]
    if not max_chains or len(out) <= max_chains:
        return out
    if seed is None:
        idx = np.arange(max_chains)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(len(out), max_chains, replace=False))
    left = np.setdiff1d(np.arange(len(out)), idx)
    if report is not None and len(left):
        report.drop("chain", f"not among the {max_chains} selected (max_chains)",
                    out["accession"].iloc[left[0]], n=len(left), warn=False)
    return out.iloc[idx]


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def chain_list_file(spec: str, fetcher: Fetcher | None, cache_dir: str | Path | None,
                    sha256: str | None = None) -> Path:
    """The chain list: a local path, or a URL downloaded once into ``cache_dir/pisces``.

    With ``sha256`` the file's bytes must have that digest (the pin of a list given by URL);
    a mismatch stops the run with both digests named.
    """
    if str(spec).startswith(("http://", "https://")):
        if fetcher is None:
            raise DataError(f"data.structures.chain_list is a URL ({spec}) but no downloader is set up")
        path = fetcher.download(spec, Path(cache_dir) / "pisces" / str(spec).rstrip("/").rsplit("/", 1)[-1],
                                validate=formats.chain_list)
    else:
        path = Path(spec)
    if sha256:
        if not path.is_file():
            raise DataError(f"data.structures.chain_list: file not found: {path}")
        got = sha256_of(path)
        if got != str(sha256).lower():
            raise DataError(f"{path}: sha256 {got} is not the pinned data.structures.chain_list_sha256 "
                            f"{sha256} (from {spec}); the list changed or the download is not the pinned file")
    return path


def run_chain_list(cfg: dict, http_cfg: dict | None, cache_dir, out_proteins, out_annotations,
                   out_contacts, out_quality, out_report, seed: int | None = None,
                   features: list[str] | None = None) -> None:
    """Rule entry point for ``data.structures.source: pdb_list``: the chain list -> proteins (the
    chains), contact maps, quality, data report, and residue annotations: the UniProt features
    (``features``) of each chain's SIFTS-mapped UniProt residues (``data.structures.sifts``), or
    an empty table when the mapping is switched off."""
    from ..io import write_table
    from .http import local_hint, make_fetcher
    from .sifts import ANNOTATION_COLUMNS, annotate_chains
    from .structures import ContactDefinition, build_chain_tables

    cfg = dict(cfg or {})
    if not cfg.get("chain_list"):
        raise DataError("data.structures.source is 'pdb_list' but data.structures.chain_list is not set")
    report = DropReport("structures:pdb_list")
    fetcher = None if cfg.get("local") else make_fetcher(http_cfg, cache_dir)
    with local_hint("data.structures.local (with data.structures.source: pdb_list)",
                    "the mmCIF files of the listed entries (https://files.rcsb.org/download/<ID>.cif) "
                    "into one folder"):
        path = chain_list_file(cfg["chain_list"], fetcher or make_fetcher(http_cfg, cache_dir), cache_dir,
                               cfg.get("chain_list_sha256"))
        listed = read_chain_list(path)
        chains = select_chains(listed, cfg.get("max_chains"), cfg.get("max_resolution"), cfg.get("min_length"),
                               report, seed=seed if cfg.get("max_chains") else None)
        log.info("%s: %d chains listed, %d selected (max_resolution %s, min_length %s, max_chains %s, seed %s)",
                 path, len(listed), len(chains), cfg.get("max_resolution"), cfg.get("min_length"),
                 cfg.get("max_chains"), seed)
        proteins, cm, quality, rep = build_chain_tables(
            chains, fetcher, cache_dir, ContactDefinition.from_config(cfg.get("contact")),
            pdb_url=cfg.get("pdb_url", "https://files.rcsb.org/download/{id}.cif"), local=cfg.get("local"),
            report=report)
    if not len(proteins):
        raise DataError(f"{path}: none of the {len(chains)} selected chains gave a usable structure "
                        f"(see the log and {out_report})")
    sifts = dict(cfg.get("sifts") or {})
    if sifts.get("enabled", True):
        kept = chains[chains["accession"].isin(set(proteins["accession"]))]
        ann, sifts_rep = annotate_chains(kept, proteins, sifts, features, http_cfg, cache_dir)
        rep = pd.concat([rep, sifts_rep], ignore_index=True)
    else:
        log.info("data.structures.sifts.enabled is false: no UniProt annotations on the chains")
        ann = pd.DataFrame(columns=ANNOTATION_COLUMNS)
    write_table(out_proteins, proteins, table="proteins")
    write_table(out_annotations, ann, table="residue_annotations")
    write_table(out_contacts, cm, table="contact_maps")
    write_table(out_quality, quality)
    write_table(out_report, rep)
