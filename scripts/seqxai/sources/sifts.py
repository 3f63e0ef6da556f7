"""SIFTS: residue-level mapping of PDB chains to UniProt, and UniProt features carried onto chains.

Positions. A chain's sequence is its entity (SEQRES / ``_entity_poly_seq``) sequence; position k
(1-based) is the residue with mmCIF ``label_seq_id`` k (``seqxai.sources.structure_chains``). Both SIFTS
sources count in that numbering, not in the author numbering:
- the PDBe API (``https://www.ebi.ac.uk/pdbe/api/mappings/uniprot/{pdb_id}``) returns
  ``{pdb_id: {"UniProt": {ACC: {"identifier", "name", "mappings": [{"entity_id", "chain_id",
  "struct_asym_id", "start": {"residue_number", "author_residue_number", "author_insertion_code"},
  "end": {...}, "unp_start", "unp_end"}, ...]}}}}``; ``residue_number`` is the SEQRES index
  (``author_residue_number`` is the author's, null for unobserved residues, and is not used);
  ``chain_id`` is the author chain id that PISCES lists use;
- the SIFTS file ``pdb_chain_uniprot.tsv(.gz)`` (a ``#`` line, then the header ``PDB CHAIN
  SP_PRIMARY RES_BEG RES_END PDB_BEG PDB_END SP_BEG SP_END``): ``RES_BEG..RES_END`` are SEQRES
  indices, ``PDB_BEG..PDB_END`` author numbers (not used), ``SP_BEG..SP_END`` UniProt positions.
Each segment maps residue ``seq_start + d`` to UniProt ``unp_start + d``; a segment whose two
ranges differ in length is no residue-level mapping and is skipped (counted). Residues without
coordinates keep their mapping (an annotation is a property of the sequence; the contact maps mark
them unresolved). A chain whose mapped residues agree with the UniProt sequence at fewer than
``min_identity`` of the positions (a numbering error) gets no annotations (counted).
"""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError
from . import DropReport
from .http import DownloadError, Fetcher

log = logging.getLogger("seqxai")

SIFTS_API = "https://www.ebi.ac.uk/pdbe/api/mappings/uniprot/{pdb_id}"
SEGMENT_COLUMNS = ["pdb_id", "chain", "uniprot", "seq_start", "seq_end", "unp_start", "unp_end"]
ANNOTATION_COLUMNS = ["accession", "type", "start", "end", "description"]
TSV_COLUMNS = ["PDB", "CHAIN", "SP_PRIMARY", "RES_BEG", "RES_END", "PDB_BEG", "PDB_END", "SP_BEG", "SP_END"]


def _int(value, where: str, field: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: field '{field}' is {value!r}, not a residue number") from None
    if out < 1:
        raise DataError(f"{where}: field '{field}' is {out}, not a 1-based residue number")
    return out


def segments_from_api(obj, pdb_id: str, where: str = "") -> pd.DataFrame:
    """The PDBe API answer for one entry -> one row per mapped segment (``SEGMENT_COLUMNS``)."""
    where = where or f"SIFTS {pdb_id}"
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object keyed by the PDB id")
    entry = obj.get(pdb_id.lower(), obj.get(pdb_id.upper()))
    if entry is None:
        if not obj:
            return pd.DataFrame(columns=SEGMENT_COLUMNS)
        raise DataError(f"{where}: no record for '{pdb_id.lower()}' (keys {sorted(obj)[:5]})")
    rows = []
    for acc, rec in ((entry or {}).get("UniProt") or {}).items():
        for n, m in enumerate((rec or {}).get("mappings") or []):
            w = f"{where}, UniProt {acc}, mapping {n}"
            if "chain_id" not in m:
                raise DataError(f"{w}: field 'chain_id' is missing")
            start, end = m.get("start") or {}, m.get("end") or {}
            rows.append({"pdb_id": pdb_id.upper(), "chain": str(m["chain_id"]), "uniprot": acc,
                         "seq_start": _int(start.get("residue_number"), w, "start.residue_number"),
                         "seq_end": _int(end.get("residue_number"), w, "end.residue_number"),
                         "unp_start": _int(m.get("unp_start"), w, "unp_start"),
                         "unp_end": _int(m.get("unp_end"), w, "unp_end")})
    return pd.DataFrame(rows, columns=SEGMENT_COLUMNS)


def read_sifts_tsv(path: str | Path, pdb_ids=None) -> pd.DataFrame:
    """``pdb_chain_uniprot.tsv(.gz)`` -> segments (``SEGMENT_COLUMNS``) of the entries ``pdb_ids``
    (all when None). A missing column or a bad number raises DataError with the file and line."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    want = {p.lower() for p in pdb_ids} if pdb_ids is not None else None
    rows, cols = [], None
    try:
        fh = opener(path, "rt")
    except FileNotFoundError:
        raise DataError(f"data.structures.sifts.local: file not found: {path}") from None
    with fh:
        for n, line in enumerate(fh, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if cols is None:
                missing = [c for c in TSV_COLUMNS if c not in fields]
                if missing:
                    raise DataError(f"{path}, line {n}: header lacks {missing} (need {' '.join(TSV_COLUMNS)})")
                cols = {c: fields.index(c) for c in TSV_COLUMNS}
                continue
            if want is not None and fields[cols["PDB"]].lower() not in want:
                continue
            if len(fields) < len(cols):
                raise DataError(f"{path}, line {n}: {len(fields)} fields, need {len(TSV_COLUMNS)}")
            w = f"{path}, line {n}"
            rows.append({"pdb_id": fields[cols["PDB"]].upper(), "chain": fields[cols["CHAIN"]],
                         "uniprot": fields[cols["SP_PRIMARY"]],
                         "seq_start": _int(fields[cols["RES_BEG"]], w, "RES_BEG"),
                         "seq_end": _int(fields[cols["RES_END"]], w, "RES_END"),
                         "unp_start": _int(fields[cols["SP_BEG"]], w, "SP_BEG"),
                         "unp_end": _int(fields[cols["SP_END"]], w, "SP_END")})
    if cols is None:
        raise DataError(f"{path}: no header line (need {' '.join(TSV_COLUMNS)})")
    return pd.DataFrame(rows, columns=SEGMENT_COLUMNS)


def chain_residue_map(segments: pd.DataFrame, length: int, where: str = "",
                      report: DropReport | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(UniProt accession, UniProt position) of each chain position ``k = 0..length-1`` ("" and 0
    where unmapped) from one chain's segments."""
    acc = np.full(length, "", dtype=object)
    pos = np.zeros(length, np.int64)
    for s in segments.itertuples(index=False):
        if "-" in s.uniprot:  # an isoform: its positions are not those of the canonical entry
            if report is not None:
                report.drop("sifts segment", "maps to a UniProt isoform", f"{where} {s.uniprot}")
            continue
        n = s.seq_end - s.seq_start
        if n < 0 or s.unp_end - s.unp_start != n:
            if report is not None:
                report.drop("sifts segment", "PDB and UniProt ranges differ in length",
                            f"{where} {s.uniprot} {s.seq_start}-{s.seq_end}/{s.unp_start}-{s.unp_end}")
            continue
        if s.seq_end > length:
            if report is not None:
                report.drop("sifts segment", "beyond the chain's sequence",
                            f"{where} {s.uniprot} {s.seq_start}-{s.seq_end} (length {length})")
            continue
        k = np.arange(s.seq_start - 1, s.seq_end)
        acc[k] = s.uniprot
        pos[k] = np.arange(s.unp_start, s.unp_end + 1)
    return acc, pos


def features_on_chain(accession: str, acc_at: np.ndarray, pos_at: np.ndarray, features: pd.DataFrame) -> list[dict]:
    """UniProt features (rows of a residue_annotations table keyed by UniProt accession) carried to
    chain positions: one row per run of chain positions that are consecutive in both numberings."""
    rows = []
    for f in features.itertuples(index=False):
        if pd.isna(f.start) or pd.isna(f.end):
            continue
        k = np.flatnonzero((acc_at == f.accession) & (pos_at >= int(f.start)) & (pos_at <= int(f.end)))
        if not len(k):
            continue
        breaks = np.flatnonzero((np.diff(k) != 1) | (np.diff(pos_at[k]) != 1)) + 1
        for run in np.split(k, breaks):
            rows.append({"accession": accession, "type": f.type, "start": int(run[0]) + 1, "end": int(run[-1]) + 1,
                         "description": f.description})
    return rows


def mapped_identity(sequence: str, acc_at: np.ndarray, pos_at: np.ndarray, uniprot_seqs: dict) -> float:
    """Share of mapped chain positions whose residue equals the UniProt residue it maps to."""
    same = n = 0
    for k in np.flatnonzero(pos_at > 0):
        useq = uniprot_seqs.get(acc_at[k])
        if useq is None or pos_at[k] > len(useq):
            continue
        n += 1
        same += sequence[k] == useq[pos_at[k] - 1]
    return same / n if n else float("nan")


# ---------------------------------------------------------------- sources
def fetch_segments(pdb_ids, fetcher: Fetcher, cache_dir, url: str = SIFTS_API,
                   report: DropReport | None = None) -> pd.DataFrame:
    """Segments of the entries from the PDBe API, one cached JSON per entry (``cache_dir/sifts``);
    an entry the API does not know (404: no UniProt mapping) is counted, not an error."""
    frames = []
    for pdb_id in sorted(set(pdb_ids)):
        dest = Path(cache_dir) / "sifts" / f"{pdb_id.lower()}.json"
        try:
            path = fetcher.download(url.format(pdb_id=pdb_id.lower()), dest, validate=_valid_json)
        except DownloadError as exc:
            if exc.status != 404:
                raise
            if report is not None:
                report.drop("entry", "no SIFTS mapping (404)", pdb_id)
            continue
        frames.append(segments_from_api(json.loads(path.read_text()), pdb_id, str(path)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SEGMENT_COLUMNS)


def _valid_json(path: Path) -> None:
    json.loads(path.read_text())  # ValueError on a truncated body: the download is retried


def local_segments(local: str | Path, pdb_ids) -> pd.DataFrame:
    """Segments from ``data.structures.sifts.local``: a ``pdb_chain_uniprot.tsv(.gz)`` file, or a
    folder of PDBe API answers ``<pdb id>.json`` (any case); an entry without a file has none."""
    local = Path(local)
    if local.is_file():
        return read_sifts_tsv(local, pdb_ids)
    if not local.is_dir():
        raise DataError(f"data.structures.sifts.local: no such file or folder: {local}")
    frames = []
    for pdb_id in sorted(set(pdb_ids)):
        path = next((p for p in (local / f"{pdb_id.lower()}.json", local / f"{pdb_id.upper()}.json")
                     if p.is_file()), None)
        if path is None:
            continue
        try:
            obj = json.loads(path.read_text())
        except ValueError as exc:
            raise DataError(f"{path}: not JSON ({exc})") from None
        frames.append(segments_from_api(obj, pdb_id, str(path)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SEGMENT_COLUMNS)


def uniprot_query(accessions) -> str:
    return " OR ".join(f"accession:{a}" for a in accessions)


def uniprot_entries(accessions, cfg: dict, features, fetcher: Fetcher | None):
    """(proteins, residue_annotations, data report) of the UniProt entries ``accessions``, with the
    shared UniProt reader: ``cfg['uniprot_local']`` files, else REST searches of up to
    ``cfg['uniprot_batch']`` accessions each."""
    from .uniprot import UNIPROT_SEARCH, ProteinRules, load_proteins

    rules = ProteinRules(features=list(features or []), nonstandard="map")
    accessions = sorted(set(accessions))
    if cfg.get("uniprot_local"):
        prot, ann, _, rep = load_proteins(local=cfg["uniprot_local"], rules=rules)
        prot = prot[prot["accession"].isin(accessions)]
        return prot, ann[ann["accession"].isin(accessions)], rep
    batch = int(cfg.get("uniprot_batch", 100))
    parts = []
    for i in range(0, len(accessions), batch):
        chunk = accessions[i:i + batch]
        try:
            parts.append(load_proteins(query=uniprot_query(chunk), rules=rules, fetcher=fetcher,
                                       base_url=cfg.get("uniprot_url", UNIPROT_SEARCH)))
        except DataError as exc:  # e.g. every accession of the batch obsolete: its chains get no rows
            log.warning("sifts: UniProt gave no usable entry for %d accessions (%s ...): %s", len(chunk),
                        chunk[0], exc)
    if not parts:
        return (pd.DataFrame(columns=["accession", "sequence"]), pd.DataFrame(columns=ANNOTATION_COLUMNS),
                pd.DataFrame(columns=["source", "item", "reason", "count", "example"]))
    return (pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True),
            pd.concat([p[3] for p in parts], ignore_index=True))


def annotate_chains(chains: pd.DataFrame, proteins: pd.DataFrame, cfg: dict | None, features, http_cfg=None,
                    cache_dir=None, fetcher: Fetcher | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """residue_annotations rows (keyed by chain accession, chain positions) and a data report for
    the chains (rows of a chain list: accession, pdb_id, chain) with sequences in ``proteins``."""
    from .http import local_hint, make_fetcher

    cfg = dict(cfg or {})
    report = DropReport("structures:sifts")
    empty = pd.DataFrame(columns=ANNOTATION_COLUMNS)
    if not features:
        log.info("sifts: no UniProt feature types requested (data.uniprot.features): no annotations")
        return empty, report.to_frame()
    needs_net = not cfg.get("local") or not cfg.get("uniprot_local")
    if fetcher is None and needs_net:
        fetcher = make_fetcher(http_cfg, cache_dir)
    pdb_ids = chains["pdb_id"].unique()
    with local_hint("data.structures.sifts.local and data.structures.sifts.uniprot_local",
                    "pdb_chain_uniprot.tsv.gz (SIFTS) and the UniProt JSON entries of the mapped accessions"):
        segs = (local_segments(cfg["local"], pdb_ids) if cfg.get("local")
                else fetch_segments(pdb_ids, fetcher, cache_dir, cfg.get("url", SIFTS_API), report))
        by_chain = {k: g for k, g in segs.groupby(["pdb_id", "chain"])}
        seqs = proteins.set_index("accession")["sequence"]
        maps = {}
        for c in chains.itertuples(index=False):
            g = by_chain.get((c.pdb_id, c.chain))
            if g is None:
                report.drop("chain", "no UniProt mapping in SIFTS", c.accession, warn=False)
                continue
            maps[c.accession] = chain_residue_map(g, len(seqs[c.accession]), c.accession, report)
        accs = sorted({a for acc_at, _ in maps.values() for a in set(acc_at) if a})
        if not accs:
            log.warning("sifts: none of the %d chains maps to UniProt: no annotations", len(chains))
            return empty, report.to_frame()
        uprot, uann, urep = uniprot_entries(accs, cfg, features, fetcher)
    useqs = dict(zip(uprot["accession"], uprot["sequence"]))
    min_identity = float(cfg.get("min_identity", 0.9))
    rows = []
    for acc, (acc_at, pos_at) in maps.items():
        ident = mapped_identity(seqs[acc], acc_at, pos_at, useqs)
        if np.isnan(ident):
            report.drop("chain", "mapped UniProt entry not retrieved", acc, warn=False)
            continue
        if ident < min_identity:
            report.drop("chain", f"mapped residues < {min_identity:.0%} identical to UniProt", f"{acc} ({ident:.2f})")
            continue
        report.keep("chain")
        rows += features_on_chain(acc, acc_at, pos_at, uann[uann["accession"].isin(set(acc_at))])
    ann = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS).drop_duplicates().reset_index(drop=True)
    log.info("sifts: %d of %d chains mapped to %d UniProt entries; %d annotated segments (%s)",
             report.n("chain"), len(chains), len(useqs), len(ann),
             ", ".join(f"{t} {n}" for t, n in ann["type"].value_counts().items()) or "none")
    report.log_summary()
    return ann, pd.concat([report.to_frame(), urep], ignore_index=True)
