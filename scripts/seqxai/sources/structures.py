"""Protein structures -> the ``contact_maps`` table, aligned to UniProt sequence positions.

Structures come from AlphaFold DB (by accession), from RCSB PDB entries cross-referenced by
UniProt, or from a local folder of PDB/mmCIF files (where each is found and downloaded:
:mod:`.structure_files`; how their chains are read and aligned: :mod:`.structure_chains`).

For one protein (UniProt sequence ``seq``, length L) and one chain:
1. the chain's observed residues (first model, first altloc) are read with gemmi;
2. they are aligned to ``seq`` (Bio.Align, BLOSUM62, gap -10/-0.5, free end gaps);
   identity = identical pairs / aligned pairs; below ``min_identity`` the structure is skipped
   (or an error is raised) with accession, file and identity named;
3. each aligned residue contributes its C-beta (C-alpha for glycine) - the contact atom;
   ``resolved[i]`` = "1" when UniProt residue i+1 has a contact atom (and pLDDT >=
   ``min_plddt`` for predicted models), "0" otherwise: unresolved residues are marked, not dropped;
4. contacts are resolved pairs with distance < ``cutoff`` and j - i >= ``min_separation``,
   stored as 1-based UniProt positions i < j.
pLDDT (B-factor column of AlphaFold files) is kept per residue in the quality table.

A pinned chain list (``source: pdb_list``, a PISCES ``cullpdb`` file read by ``chain_list``) makes
the chains themselves the proteins: accession ``<PDB id>_<chain>`` (e.g. ``1AKI_A``), sequence = the
chain's entity (SEQRES / ``_entity_poly_seq``) sequence, residue k of the entity = position
k + 1; residues without coordinates stay in the sequence and are marked "0" in ``resolved``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError
from . import DropReport
from .http import DownloadError, Fetcher
from .structure_chains import (
    AF_NAME,
    MissingChain,
    StructureMismatch,
    align_to_uniprot,
    entity_sequence,
    is_alphafold,
    protein_chains,
    read_structure,
)
from .structure_files import fetch_alphafold, fetch_pdb, local_candidates

log = logging.getLogger("seqxai")

CONTACT_COLUMNS = ["accession", "length", "resolved", "contact_i", "contact_j", "definition", "source"]
QUALITY_COLUMNS = [
    "accession", "source", "file", "chain", "identity", "coverage", "n_resolved", "mean_plddt", "plddt",
]


#: drop reasons of a protein whose candidate files were all unusable (data.structures.max_unusable_share)
UNUSABLE_REASONS = ("unusable structure", "no contact atoms")


@dataclass
class ContactDefinition:
    atom: str = "CB"
    glycine_atom: str = "CA"
    cutoff: float = 8.0
    min_separation: int = 1
    fallback_to_ca: bool = True  # a non-Gly residue without CB uses CA instead of being unresolved

    @property
    def label(self) -> str:
        # "CB<8.0A" means C-beta with C-alpha for glycine (the tables' convention)
        label = f"{self.atom}<{self.cutoff:.1f}A"
        if self.glycine_atom != "CA" and self.atom != self.glycine_atom:
            label += f",GLY:{self.glycine_atom}"
        return label

    @classmethod
    def from_config(cls, cfg: dict | None) -> ContactDefinition:
        cfg = dict(cfg or {})
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg and cfg[k] is not None})


@dataclass
class StructureRules:
    min_identity: float = 0.9
    min_aligned: int = 10
    min_plddt: float | None = 70.0  # residue filter for predicted models; None keeps all
    min_mean_plddt: float | None = None  # model filter; None keeps all
    on_mismatch: str = "skip"  # or "error"

    @classmethod
    def from_config(cls, cfg: dict | None) -> StructureRules:
        cfg = dict(cfg or {})
        r = cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})
        if r.on_mismatch not in ("skip", "error"):
            raise DataError(f"structures.on_mismatch must be skip or error, not '{r.on_mismatch}'")
        return r


# ---------------------------------------------------------------- contacts
def contact_atoms(residues, definition: ContactDefinition):
    """Coordinates (n, 3) of each residue's contact atom (NaN when absent) and its B-factor."""
    xyz = np.full((len(residues), 3), np.nan)
    bfac = np.full(len(residues), np.nan)
    for k, r in enumerate(residues):
        name = definition.glycine_atom if r.name == "GLY" else definition.atom
        atom = r.find_atom(name, "*")
        if atom is None and definition.fallback_to_ca:
            atom = r.find_atom("CA", "*")
        if atom is not None:
            xyz[k] = atom.pos.x, atom.pos.y, atom.pos.z
        ca = r.find_atom("CA", "*")
        if ca is not None:
            bfac[k] = ca.b_iso
    return xyz, bfac


def contacts_from_coords(xyz: np.ndarray, cutoff: float, min_separation: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """0-based pairs (i < j) with ||x_i - x_j|| < cutoff and j - i >= min_separation; NaN rows skipped."""
    from scipy.spatial import cKDTree

    ok = np.flatnonzero(~np.isnan(xyz).any(axis=1))
    if len(ok) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = cKDTree(xyz[ok]).query_pairs(r=cutoff, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = ok[pairs[:, 0]], ok[pairs[:, 1]]
    i, j = np.minimum(i, j), np.maximum(i, j)
    d = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    keep = (d < cutoff) & (j - i >= min_separation)
    i, j = i[keep], j[keep]
    order = np.lexsort((j, i))
    return i[order], j[order]


def contact_map(
    uniprot_seq: str,
    path: str | Path,
    accession: str,
    chain: str | None = None,
    definition: ContactDefinition | None = None,
    rules: StructureRules | None = None,
    predicted: bool | None = None,
    source: str | None = None,
) -> tuple[dict, dict]:
    """One contact_maps row and one quality row for ``accession`` from the structure at ``path``.

    Without ``chain`` the protein chain aligning best to the UniProt sequence is used.
    Raises StructureMismatch when no chain reaches ``min_identity``.
    """
    definition = definition or ContactDefinition()
    rules = rules or StructureRules()
    path = Path(path)
    st = read_structure(path)
    chains = protein_chains(st)
    if not chains:
        raise StructureMismatch(f"{accession}: {path.name} has no protein chain")
    if chain is not None:
        if chain not in chains:
            raise MissingChain(f"{accession}: {path.name} has no protein chain '{chain}' (has {sorted(chains)})",
                               sorted(chains))
        candidates = [chain]
    else:
        candidates = list(chains)
    best = None
    for c in candidates:
        mapping, ident, n = align_to_uniprot(uniprot_seq, chains[c][0])
        if best is None or (ident * n, n) > (best[2] * best[3], best[3]):
            best = (c, mapping, ident, n)
    c, mapping, ident, n = best
    if ident < rules.min_identity or n < rules.min_aligned:
        raise StructureMismatch(
            f"{accession}: {path.name} chain {c} does not match the UniProt sequence "
            f"(identity {ident:.2f} over {n} aligned residues; need >= {rules.min_identity:.2f} over >= {rules.min_aligned})"
        )
    seq, residues = chains[c]
    predicted = is_alphafold(st, path) if predicted is None else predicted
    xyz_chain, b_chain = contact_atoms(residues, definition)
    if not np.isfinite(xyz_chain[mapping >= 0]).all(axis=1).any():
        raise DataError(f"{accession}: {path.name} chain {c} has no contact atoms "
                        f"({definition.atom}/{definition.glycine_atom}) on its {n} aligned residues")
    L = len(uniprot_seq)
    xyz = np.full((L, 3), np.nan)
    plddt = np.full(L, np.nan)
    m = mapping >= 0
    xyz[mapping[m]] = xyz_chain[m]
    if predicted:
        plddt[mapping[m]] = b_chain[m]
        mean_plddt = float(np.nanmean(b_chain)) if np.isfinite(b_chain).any() else float("nan")
        if rules.min_mean_plddt is not None and mean_plddt < rules.min_mean_plddt:
            raise StructureMismatch(
                f"{accession}: {path.name} mean pLDDT {mean_plddt:.1f} < {rules.min_mean_plddt} (low-confidence model)"
            )
        if rules.min_plddt is not None:
            xyz[~(plddt >= rules.min_plddt)] = np.nan
    else:
        mean_plddt = float("nan")
    resolved = ~np.isnan(xyz).any(axis=1)
    ci, cj = contacts_from_coords(xyz, definition.cutoff, definition.min_separation)
    if source is None:
        af = AF_NAME.search(path.name)
        if predicted and af:
            source = f"alphafold:AF-{af.group(1)}-F{af.group(2)}-v{af.group(3)}"
        else:
            source = f"file:{path.name}:{c}"
    row = {
        "accession": accession,
        "length": L,
        "resolved": "".join("1" if x else "0" for x in resolved),
        "contact_i": (ci + 1).astype(np.int32).tolist(),
        "contact_j": (cj + 1).astype(np.int32).tolist(),
        "definition": definition.label,
        "source": source,
    }
    quality = {
        "accession": accession,
        "source": source,
        "file": path.name,
        "chain": c,
        "identity": float(ident),
        "coverage": float(n / L),
        "n_resolved": int(resolved.sum()),
        "mean_plddt": mean_plddt,
        "plddt": [None if np.isnan(x) else float(x) for x in plddt] if predicted else [],
    }
    return row, quality


def _pdb_chain(chains: str) -> str | None:
    """First chain of a UniProt PDB cross-reference 'A/B=1-281, C=5-90'."""
    m = re.match(r"\s*([A-Za-z0-9]+)", chains or "")
    return m.group(1) if m else None


def build_contact_maps(
    proteins: pd.DataFrame,
    source: str = "local",
    local: str | Path | None = None,
    mapping: pd.DataFrame | None = None,
    xrefs: pd.DataFrame | None = None,
    fetcher: Fetcher | None = None,
    cache_dir: str | Path | None = None,
    definition: ContactDefinition | None = None,
    rules: StructureRules | None = None,
    max_proteins: int | None = None,
    alphafold_api: str = "https://alphafold.ebi.ac.uk/api/prediction/{accession}",
    alphafold_format: str = "pdb",
    alphafold_file_base: str | None = None,
    pdb_url: str = "https://files.rcsb.org/download/{id}.cif",
    pdb_per_protein: int = 3,
    max_unusable_share: float | None = 0.2,
):
    """contact_maps, quality and data-report frames for ``proteins`` (accession, sequence).

    ``source``: "alphafold" (download by accession), "pdb" (RCSB entries from ``xrefs``, rows
    database == "PDB") or "local" (folder ``local``). Proteins without a usable structure are
    counted in the report, not silently dropped. A mapping row is an explicit choice: a file or
    chain it names that does not exist is a DataError naming the row, never a fallback. More than
    ``max_unusable_share`` of the proteins with a candidate having only unusable files (unreadable,
    cut short, no protein chain, no contact atoms) is a DataError.
    """
    definition = definition or ContactDefinition()
    rules = rules or StructureRules()
    report = DropReport(f"structures:{source}")
    rows, qual = [], []
    explicit: dict[tuple, int] = {}  # (accession, file, chain) of a mapping row -> its line
    seqs = dict(zip(proteins["accession"], proteins["sequence"]))
    accs = list(seqs)[: max_proteins] if max_proteins else list(seqs)
    cands: dict[str, list] = {}
    if source == "local":
        if not local:
            raise DataError("structures.source is 'local' but structures.local (a folder) is not set")
        cands = local_candidates(local, set(accs), mapping)
        if mapping is not None:
            folder = Path(local)
            for line, r in enumerate(mapping.itertuples(index=False), 2):
                chain = getattr(r, "chain", None)
                if isinstance(chain, str) and chain:
                    p = Path(r.file) if Path(r.file).is_absolute() else folder / r.file
                    explicit[(r.accession, str(p), chain)] = line
    elif source == "pdb":
        if xrefs is None:
            raise DataError("structures.source 'pdb' needs the UniProt PDB cross-references")
        pdb = xrefs[xrefs["database"] == "PDB"]
        for acc, grp in pdb.groupby("accession", sort=False):
            cands[acc] = [("pdb", (r.id, _pdb_chain(r.chains))) for r in grp.head(pdb_per_protein).itertuples()]
    elif source != "alphafold":
        raise DataError(f"structures.source must be alphafold, pdb, local or pdb_list, not '{source}'"
                        + (" (pdb_list builds its proteins from the chain list: build_chain_tables)"
                           if source == "pdb_list" else ""))

    for acc in accs:
        tries = [("alphafold", None)] if source == "alphafold" else cands.get(acc, [])
        if not tries:
            report.drop("protein", "no structure", acc, warn=False)
            continue
        done, last = False, ""
        for kind, what in tries:
            try:
                if kind == "alphafold":
                    path, entry = fetch_alphafold(
                        fetcher, acc, cache_dir, alphafold_api, alphafold_format, alphafold_file_base
                    )
                    src = f"alphafold:{entry['entryId']}-v{entry.get('latestVersion', '')}"
                    row, q = contact_map(seqs[acc], path, acc, "A", definition, rules, predicted=True, source=src)
                elif kind == "pdb":
                    pdb_id, chain = what
                    path = fetch_pdb(fetcher, pdb_id, cache_dir, pdb_url)
                    row, q = contact_map(seqs[acc], path, acc, chain, definition, rules, source=f"pdb:{pdb_id}:{chain}")
                else:
                    row, q = contact_map(seqs[acc], kind, acc, what, definition, rules)
            except MissingChain as exc:
                line = explicit.get((acc, str(kind), what))
                if line is not None:
                    raise DataError(f"{mapping.attrs.get('path', 'data.structures.mapping')}, line {line}: field "
                                    f"'chain' is '{what}', but {Path(kind).name} has no protein chain '{what}' "
                                    f"(has {exc.has})") from exc
                last = str(exc)
                continue
            except StructureMismatch as exc:
                last = str(exc)
                continue
            except DownloadError as exc:
                if exc.status == 404:
                    last = f"{acc}: not found ({exc})"
                    continue
                raise
            except DataError as exc:
                last = str(exc)
                continue
            rows.append(row)
            qual.append(q)
            report.keep("protein")
            done = True
            break
        if not done:
            if rules.on_mismatch == "error" and "does not match" in last:
                raise StructureMismatch(last)
            reason = "sequence mismatch" if "does not match" in last else (
                "low pLDDT" if "pLDDT" in last else ("not found" if "not found" in last else (
                    "no contact atoms" if "no contact atoms" in last else "unusable structure"))
            )
            report.drop("protein", reason, last)
    report.log_summary()
    tried = sum(n for (item, reason), n in report.counts.items() if item == "protein" and reason != "no structure")
    unusable = sum(report.n("protein", r) for r in UNUSABLE_REASONS)
    if unusable and max_unusable_share is not None and unusable / max(tried, 1) > max_unusable_share:
        first = next(report.examples[("protein", r)] for r in UNUSABLE_REASONS if ("protein", r) in report.examples)
        raise DataError(
            f"structures: {unusable} of {tried} proteins ({unusable / tried:.0%}) had only unusable structure "
            f"files (unreadable, cut short, no protein chain or no contact atoms), more than "
            f"data.structures.max_unusable_share {max_unusable_share}; first: {first}")
    cm = pd.DataFrame(rows, columns=CONTACT_COLUMNS)
    qf = pd.DataFrame(qual, columns=QUALITY_COLUMNS)
    return cm, qf, report.to_frame()


def run_structures(cfg: dict, http_cfg: dict | None, cache_dir, proteins_path, xrefs_path,
                   out_contacts, out_quality, out_report, uniprot_report_path=None) -> None:
    """Rule entry point: the ``data.structures`` config section -> contact maps, quality table,
    and the protein data report (the UniProt report, when given, followed by the structures')."""
    from ..io import read_table, write_table
    from .http import local_hint, make_fetcher

    cfg = dict(cfg or {})
    proteins = read_table(proteins_path, table="proteins")
    xrefs = read_table(xrefs_path) if xrefs_path else None
    mapping = None
    if cfg.get("mapping"):
        try:
            mapping = pd.read_csv(cfg["mapping"], sep="\t", dtype=str).fillna("")
        except FileNotFoundError as exc:
            raise DataError(f"data.structures.mapping: file not found: {cfg['mapping']}") from exc
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{cfg['mapping']}: the structure mapping (data.structures.mapping) is empty; "
                            f"it needs a header line: accession, file[, chain]") from exc
        if not {"accession", "file"} <= set(mapping.columns):
            raise DataError(f"{cfg['mapping']}: structure mapping needs columns accession, file[, chain]")
        mapping.attrs["path"] = str(cfg["mapping"])
    source = cfg.get("source", "alphafold")
    fetcher = None if source == "local" else make_fetcher(http_cfg, cache_dir)
    with local_hint("data.structures.local (with data.structures.source: local)",
                    "the PDB/mmCIF files (AlphaFold DB or RCSB) into one folder"):
        cm, quality, report = build_contact_maps(
            proteins,
            source=source,
            local=cfg.get("local"),
            mapping=mapping,
            xrefs=xrefs,
            fetcher=fetcher,
            cache_dir=cache_dir,
            definition=ContactDefinition.from_config(cfg.get("contact")),
            rules=StructureRules.from_config(
                {k: cfg[k] for k in StructureRules.__dataclass_fields__ if k in cfg}),
            max_proteins=cfg.get("max_proteins"),
            alphafold_api=cfg.get("alphafold_api", "https://alphafold.ebi.ac.uk/api/prediction/{accession}"),
            alphafold_format=cfg.get("alphafold_format", "pdb"),
            alphafold_file_base=cfg.get("alphafold_file_base"),
            pdb_url=cfg.get("pdb_url", "https://files.rcsb.org/download/{id}.cif"),
            pdb_per_protein=int(cfg.get("pdb_per_protein", 3)),
            max_unusable_share=cfg.get("max_unusable_share", 0.2),
        )
    write_table(out_contacts, cm, table="contact_maps")
    write_table(out_quality, quality)
    if uniprot_report_path:
        report = pd.concat([read_table(uniprot_report_path), report], ignore_index=True)
    write_table(out_report, report)


def chain_contact_map(path: str | Path, chain: str, accession: str,
                      definition: ContactDefinition | None = None,
                      source: str | None = None) -> tuple[dict, dict, dict]:
    """(proteins row, contact_maps row, quality row) of one experimental chain: the entity
    sequence with unobserved residues (or residues without a contact atom) unresolved."""
    definition = definition or ContactDefinition()
    path = Path(path)
    st = read_structure(path)
    seq, residues, index = entity_sequence(st, chain, f"{accession}: {path.name}")
    xyz = np.full((len(seq), 3), np.nan)
    xyz[np.asarray(index, np.int64)] = contact_atoms(residues, definition)[0]
    resolved = ~np.isnan(xyz).any(axis=1)
    ci, cj = contacts_from_coords(xyz, definition.cutoff, definition.min_separation)
    source = source or f"file:{path.name}:{chain}"
    protein = {"accession": accession, "sequence": seq, "length": len(seq), "ec": "", "ec_class": "",
               "go_terms": [], "organism_id": 0, "go_aspects": []}
    row = {"accession": accession, "length": len(seq), "resolved": "".join("1" if x else "0" for x in resolved),
           "contact_i": (ci + 1).astype(np.int32).tolist(), "contact_j": (cj + 1).astype(np.int32).tolist(),
           "definition": definition.label, "source": source}
    quality = {"accession": accession, "source": source, "file": path.name, "chain": chain, "identity": 1.0,
               "coverage": float(resolved.mean()) if len(seq) else 0.0, "n_resolved": int(resolved.sum()),
               "mean_plddt": float("nan"), "plddt": []}
    return protein, row, quality


def build_chain_tables(chains: pd.DataFrame, fetcher: Fetcher | None, cache_dir: str | Path | None,
                       definition: ContactDefinition | None = None,
                       pdb_url: str = "https://files.rcsb.org/download/{id}.cif",
                       local: str | Path | None = None, nonstandard: str = "drop",
                       report: DropReport | None = None):
    """proteins, contact_maps, quality and data-report frames for the chains of a chain list.

    Each entry is fetched once as mmCIF from RCSB (cached under ``cache_dir/pdb``), or read from
    the folder ``local`` (``<id>.cif``/``.pdb``, any case, optionally ``.gz``) when given.
    A chain with a residue that is no amino acid (``X``) is dropped when ``nonstandard`` is
    "drop" (the encoders' vocabularies differ on X); a chain that is not in its entry, or not
    a protein, is counted in the report.
    """
    definition = definition or ContactDefinition()
    report = report or DropReport("structures:pdb_list")
    proteins, rows, qual = [], [], []
    for c in chains.itertuples(index=False):
        try:
            if local:
                names = [f"{c.pdb_id}{s}" for s in (".cif", ".pdb", ".mmcif")]
                names += [n.lower() for n in names]
                path = next((p for n in names for p in (Path(local) / n, Path(local) / (n + ".gz"))
                             if p.is_file()), None)
                if path is None:
                    raise DownloadError(f"{c.accession}: no {c.pdb_id}.cif/.pdb in {local}", status=404)
            else:
                path = fetch_pdb(fetcher, c.pdb_id, cache_dir, pdb_url)
            protein, row, q = chain_contact_map(path, c.chain, c.accession, definition,
                                                source=f"pdb:{c.pdb_id}:{c.chain}")
        except DownloadError as exc:
            if exc.status != 404:
                raise
            report.drop("chain", "not found", f"{c.accession}: {exc}")
            continue
        except DataError as exc:  # StructureMismatch included: unreadable file, no such chain
            report.drop("chain", "unusable structure", str(exc))
            continue
        if "X" in protein["sequence"] and nonstandard == "drop":
            report.drop("chain", "non-amino-acid residue (X) in the sequence", c.accession)
            continue
        if protein["length"] != c.length:
            log.info("%s: entity sequence has %d residues, the chain list says %d", c.accession,
                     protein["length"], c.length)
        proteins.append(protein)
        rows.append(row)
        qual.append(q)
        report.keep("chain")
    report.log_summary()
    return (pd.DataFrame(proteins, columns=["accession", "sequence", "length", "ec", "ec_class", "go_terms",
                                            "organism_id", "go_aspects"]),
            pd.DataFrame(rows, columns=CONTACT_COLUMNS), pd.DataFrame(qual, columns=QUALITY_COLUMNS),
            report.to_frame())
