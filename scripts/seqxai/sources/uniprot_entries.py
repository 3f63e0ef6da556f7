"""UniProtKB entries (:class:`Entry`) read from REST JSON, REST TSV, Swiss-Prot flat files and
TMbed label FASTA, as text or as local files (optionally gzipped).

REST JSON: ``{"results": [...]}``, a list, or one entry. REST TSV: columns named by their TSV
labels (``Entry``, ``Sequence``, ``EC number``, ``Transmembrane``, ...). Flat files
(``.txt``/``.dat``) are read record by record with Bio.SwissProt; an unreadable record is
dropped and counted. TMbed: ``>pdbchain|UniProt|name``, sequence line, label line.

Positions: feature ``start``/``end`` are UniProt's 1-based inclusive positions, kept as is.
Features with an unknown position (``?``) or outside ``1..len(sequence)`` are dropped and
counted when the tables are built (:func:`.uniprot.build_tables`). Feature types are snake_case of UniProt's display names ("Active site" ->
``active_site``; flat-file ``ACT_SITE`` -> ``active_site``), except ``MOD_RES`` (Modified residue)
-> ``ptm`` and ``SIGNAL`` -> ``signal_peptide``; see :data:`FEATURE_TYPES`.
GO terms are kept as (id, aspect) pairs, aspect F/P/C or "" where the format does not say.
"""
from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import DataError
from . import DropReport

# flat-file key, JSON display name, REST return field
_FEATURES = [
    ("INIT_MET", "Initiator methionine", "ft_init_met"),
    ("SIGNAL", "Signal", "ft_signal"),
    ("PROPEP", "Propeptide", "ft_propep"),
    ("TRANSIT", "Transit peptide", "ft_transit"),
    ("CHAIN", "Chain", "ft_chain"),
    ("PEPTIDE", "Peptide", "ft_peptide"),
    ("TOPO_DOM", "Topological domain", "ft_topo_dom"),
    ("TRANSMEM", "Transmembrane", "ft_transmem"),
    ("INTRAMEM", "Intramembrane", "ft_intramem"),
    ("DOMAIN", "Domain", "ft_domain"),
    ("REPEAT", "Repeat", "ft_repeat"),
    ("ZN_FING", "Zinc finger", "ft_zn_fing"),
    ("DNA_BIND", "DNA binding", "ft_dna_bind"),
    ("REGION", "Region", "ft_region"),
    ("COILED", "Coiled coil", "ft_coiled"),
    ("MOTIF", "Motif", "ft_motif"),
    ("COMPBIAS", "Compositional bias", "ft_compbias"),
    ("ACT_SITE", "Active site", "ft_act_site"),
    ("BINDING", "Binding site", "ft_binding"),
    ("SITE", "Site", "ft_site"),
    ("NON_STD", "Non-standard residue", "ft_non_std"),
    ("MOD_RES", "Modified residue", "ft_mod_res"),
    ("LIPID", "Lipidation", "ft_lipid"),
    ("CARBOHYD", "Glycosylation", "ft_carbohyd"),
    ("DISULFID", "Disulfide bond", "ft_disulfid"),
    ("CROSSLNK", "Cross-link", "ft_crosslnk"),
    ("VAR_SEQ", "Alternative sequence", "ft_var_seq"),
    ("VARIANT", "Natural variant", "ft_variant"),
    ("MUTAGEN", "Mutagenesis", "ft_mutagen"),
    ("UNSURE", "Sequence uncertainty", "ft_unsure"),
    ("CONFLICT", "Sequence conflict", "ft_conflict"),
    ("NON_CONS", "Non-adjacent residues", "ft_non_cons"),
    ("NON_TER", "Non-terminal residue", "ft_non_ter"),
    ("HELIX", "Helix", "ft_helix"),
    ("TURN", "Turn", "ft_turn"),
    ("STRAND", "Beta strand", "ft_strand"),
    # retired keys still found in older flat files
    ("METAL", "Metal binding", None),
    ("NP_BIND", "Nucleotide binding", None),
    ("CA_BIND", "Calcium binding", None),
]


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# our type name -> (flat key, display name, return field)
FEATURE_TYPES = {snake(disp): (key, disp, fld) for key, disp, fld in _FEATURES}
FEATURE_TYPES["signal_peptide"] = FEATURE_TYPES.pop("signal")  # "Signal" reads badly alone
# MOD_RES, a post-translationally modified residue: Vig et al.'s "PTM" property
FEATURE_TYPES["ptm"] = FEATURE_TYPES.pop("modified_residue")
_BY_FLATKEY = {v[0]: k for k, v in FEATURE_TYPES.items()}
_BY_DISPLAY = {v[1].lower(): k for k, v in FEATURE_TYPES.items()}
_BY_DISPLAY["signal peptide"] = "signal_peptide"
# TSV labels that differ from the display name
_TSV_LABELS = {"Domain [FT]": "domain"}


def feature_type(name: str) -> str:
    """Our snake_case type for a flat-file key ("ACT_SITE") or display name ("Active site")."""
    if name in _BY_FLATKEY:
        return _BY_FLATKEY[name]
    if name in _TSV_LABELS:
        return _TSV_LABELS[name]
    return _BY_DISPLAY.get(name.lower(), snake(name))


@dataclass
class Entry:
    accession: str
    sequence: str
    ec: list[str] = field(default_factory=list)
    go: list[tuple[str, str]] = field(default_factory=list)  # (GO id, aspect F/P/C or "")
    organism_id: int = 0
    features: list[tuple[str, int | None, int | None, str]] = field(default_factory=list)
    xrefs: list[tuple[str, str, str]] = field(default_factory=list)  # (database, id, chains)


# ---------------------------------------------------------------- JSON
def _json_ecs(desc: dict) -> list[str]:
    out = []

    def names(d):
        if not d:
            return
        for key in ("recommendedName",):
            if d.get(key):
                yield d[key]
        for key in ("alternativeNames", "submissionNames"):
            yield from d.get(key) or []
        for key in ("includes", "contains"):
            for sub in d.get(key) or []:
                yield from names(sub)

    for n in names(desc or {}):
        out.extend(e["value"] for e in n.get("ecNumbers") or [])
    return out


def _pos(p: dict | None) -> int | None:
    if not p or p.get("value") is None or p.get("modifier") == "UNKNOWN":
        return None
    return int(p["value"])


def entry_from_json(e: dict) -> Entry:
    acc = e.get("primaryAccession")
    if not acc:
        raise DataError(f"UniProt JSON entry without primaryAccession: {str(e)[:120]}")
    ent = Entry(acc, (e.get("sequence") or {}).get("value", ""))
    ent.ec = _json_ecs(e.get("proteinDescription"))
    ent.organism_id = int((e.get("organism") or {}).get("taxonId") or 0)
    for x in e.get("uniProtKBCrossReferences") or []:
        db = x.get("database")
        props = {p["key"]: p["value"] for p in x.get("properties") or []}
        if db == "GO":
            term = props.get("GoTerm", "")
            ent.go.append((x["id"], term[0] if term[1:2] == ":" else ""))
        elif db in ("PDB", "AlphaFoldDB"):
            ent.xrefs.append((db, x["id"], props.get("Chains", "")))
    for f in e.get("features") or []:
        loc = f.get("location") or {}
        desc = f.get("description") or ""
        if not desc and f.get("ligand"):
            desc = f["ligand"].get("name", "")
        ent.features.append((feature_type(f["type"]), _pos(loc.get("start")), _pos(loc.get("end")), desc))
    return ent


def iter_json_entries(obj) -> Iterator[dict]:
    if isinstance(obj, dict) and "results" in obj:
        yield from obj["results"]
    elif isinstance(obj, dict) and "primaryAccession" in obj:
        yield obj
    elif isinstance(obj, list):
        yield from obj
    else:
        raise DataError("UniProt JSON: expected {'results': [...]}, a list or one entry")


# ---------------------------------------------------------------- TSV
_FT_HEAD = re.compile(r"([A-Z_]+) (?:[A-Z0-9-]+:)?([<>]?\d+|\?)(?:\.\.([<>]?\d+|\?))?")
_FT_QUAL = re.compile(r'/(\w+)="(.*?)"(?=; |$)')
_GO_ID = re.compile(r"GO:\d{7}")
_GO_TSV_ASPECTS = {"molecular function": "F", "biological process": "P", "cellular component": "C"}


def go_with_aspects(go: Iterable[tuple[str, str]], keep_aspects: Iterable[str]) -> tuple[list[str], list[str]]:
    """(GO ids, their aspects): sorted unique ids of ``go`` ((id, aspect) pairs), each with the
    aspect any pair names ("" when none does), limited to ``keep_aspects`` (unknown kept).

    [("GO:2", ""), ("GO:1", "P"), ("GO:2", "F")], keep F and P -> (["GO:1", "GO:2"], ["P", "F"]).
    """
    aspect_of: dict[str, str] = {}
    for g, a in go:
        if a or g not in aspect_of:
            aspect_of[g] = a or aspect_of.get(g, "")
    keep = set(keep_aspects)
    terms = sorted(g for g, a in aspect_of.items() if a in keep or a == "")
    return terms, [aspect_of[g] for g in terms]


def parse_feature_cell(cell: str, where: str = "") -> list[tuple[str, int | None, int | None, str]]:
    """Parse a TSV feature cell: ``TRANSMEM 314..334; /note="Helical"; TRANSMEM 340..360; ...``."""
    out, pos, cell = [], 0, cell.strip()
    while pos < len(cell):
        m = _FT_HEAD.match(cell, pos)
        if not m:
            raise DataError(f"{where}: cannot parse feature text at '{cell[pos:pos + 60]}'")
        key, a, b = m.group(1), m.group(2), m.group(3) or m.group(2)
        pos, quals = m.end(), {}
        while cell.startswith("; /", pos):
            q = _FT_QUAL.match(cell, pos + 2)
            if not q:
                break
            quals[q.group(1)] = q.group(2)
            pos = q.end()
        if cell.startswith(";", pos):
            pos += 1
        while pos < len(cell) and cell[pos] == " ":
            pos += 1

        def num(s):
            return None if s == "?" else int(s.lstrip("<>"))

        desc = quals.get("note") or quals.get("ligand") or ""
        out.append((feature_type(key), num(a), num(b), desc))
    return out


def entries_from_tsv(text: str, where: str = "TSV") -> Iterator[Entry]:
    """Entries from a UniProt TSV (header row of TSV labels; repeated headers of later pages skipped)."""
    df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    cols = {c.strip(): c for c in df.columns}
    acc_col = cols.get("Entry") or cols.get("Accession")
    if acc_col is None or "Sequence" not in cols:
        raise DataError(f"{where}: a UniProt TSV needs 'Entry' and 'Sequence' columns, found {list(cols)}")
    # "Gene Ontology (molecular function)" -> F, ...; "Gene Ontology IDs" / "(GO)" -> "" (unknown)
    go_cols = {c: next((a for k, a in _GO_TSV_ASPECTS.items() if k in c.lower()), "")
               for c in cols if c.startswith("Gene Ontology")}
    ft_cols = {}
    for label in cols:
        t = feature_type(label)
        if t in FEATURE_TYPES and label not in ("Entry", "Sequence"):
            ft_cols[label] = t
    for _, row in df.iterrows():
        acc = row[acc_col].strip()
        if acc == acc_col:  # header row repeated by a later page
            continue
        ent = Entry(acc, row[cols["Sequence"]].strip())
        if "EC number" in cols:
            ent.ec = [x.strip() for x in re.split(r"[;,]", row[cols["EC number"]]) if x.strip()]
        for c in go_cols:
            ent.go.extend((g, go_cols[c]) for g in _GO_ID.findall(row[cols[c]]))
        for c in ("Organism (ID)", "Organism ID"):
            if c in cols and row[cols[c]].strip().isdigit():
                ent.organism_id = int(row[cols[c]])
        if "PDB" in cols:
            ent.xrefs.extend(("PDB", x, "") for x in row[cols["PDB"]].split(";") if x.strip())
        if "AlphaFoldDB" in cols:
            ent.xrefs.extend(("AlphaFoldDB", x, "") for x in row[cols["AlphaFoldDB"]].split(";") if x.strip())
        for label, _t in ft_cols.items():
            if row[cols[label]].strip():
                ent.features.extend(parse_feature_cell(row[cols[label]], f"{where} {acc} {label}"))
        yield ent


# ---------------------------------------------------------------- flat file
def _flat_records(text: str) -> Iterator[str]:
    buf = []
    for line in text.splitlines(keepends=True):
        buf.append(line)
        if line.startswith("//"):
            yield "".join(buf)
            buf = []
    if any(x.strip() for x in buf):
        yield "".join(buf)


def entries_from_flat(text: str, report: DropReport, where: str = "flat file") -> Iterator[Entry]:
    """Entries from Swiss-Prot flat-file text, one record at a time; an unreadable record is
    dropped with its ID line named (files in the wild mix in keyword-list or IPI records)."""
    from Bio import SwissProt

    for rec_text in _flat_records(text):
        first = rec_text.splitlines()[0][:60] if rec_text.strip() else ""
        try:
            rec = SwissProt.read(io.StringIO(rec_text))
        except Exception as exc:  # Biopython raises ValueError/SwissProtParserError/...
            report.drop("entry", "unparseable flat-file record", f"{where}: '{first.strip()}' ({exc})")
            continue
        if not rec.accessions:
            report.drop("entry", "unparseable flat-file record", f"{where}: '{first.strip()}' (no AC line)")
            continue
        ent = Entry(rec.accessions[0], rec.sequence)
        ent.ec = re.findall(r"EC=([0-9n.\-]+)", rec.description or "")
        if rec.taxonomy_id and str(rec.taxonomy_id[0]).isdigit():
            ent.organism_id = int(rec.taxonomy_id[0])
        for x in rec.cross_references:
            if x[0] == "GO":
                term = x[2] if len(x) > 2 else ""
                ent.go.append((x[1], term[0] if term[1:2] == ":" else ""))
            elif x[0] == "PDB":
                ent.xrefs.append(("PDB", x[1], x[4] if len(x) > 4 else ""))
            elif x[0] == "AlphaFoldDB":
                ent.xrefs.append(("AlphaFoldDB", x[1], ""))
        for f in rec.features:
            try:
                start = int(f.location.start) + 1
                end = int(f.location.end)
            except (TypeError, ValueError, AttributeError):
                start = end = None
            q = f.qualifiers or {}
            desc = q.get("note") or q.get("ligand") or ""
            if isinstance(desc, list):
                desc = "; ".join(desc)
            ent.features.append((feature_type(f.type), start, end, str(desc)))
        yield ent


# ---------------------------------------------------------------- TMbed
def entries_from_tmbed(text: str, report: DropReport, where: str = "TMbed") -> Iterator[Entry]:
    """TMbed label FASTA: ``>pdbchain|UniProt|name``, sequence line, label line. Runs of H/h
    (alpha helix) and B/b (beta strand) become ``transmembrane`` segments, S ``signal_peptide``.
    The sequence is the PDB chain's; the UniProt accession names it."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if len(lines) % 3:
        raise DataError(f"{where}: expected header/sequence/label triplets, found {len(lines)} lines")
    for i in range(0, len(lines), 3):
        head, seq, lab = lines[i : i + 3]
        parts = head[1:].split("|")
        if not head.startswith(">") or len(parts) < 2:
            raise DataError(f"{where}:{i + 1}: bad TMbed header '{head}'")
        if len(seq) != len(lab):
            report.drop("entry", "label length != sequence length", parts[1])
            continue
        ent = Entry(parts[1], seq.upper())
        for m in re.finditer(r"[Hh]+|[Bb]+|S+", lab):
            kind = "signal_peptide" if m.group()[0] == "S" else "transmembrane"
            desc = {"H": "Helical", "B": "Beta stranded", "S": ""}[m.group()[0].upper()]
            ent.features.append((kind, m.start() + 1, m.end(), desc))
        yield ent


# ---------------------------------------------------------------- local files
def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".json"):
        return "json"
    if name.endswith((".tsv", ".tab", ".csv")):
        return "tsv"
    if name.endswith((".txt", ".dat", ".sprot", ".swiss")):
        return "flat"
    if name.endswith((".fasta", ".fa")):
        return "tmbed"
    raise DataError(f"{path}: cannot tell the UniProt file format from the name; set format: json|tsv|flat|tmbed")


def read_text(path: Path) -> str:
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    except (EOFError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the UniProt file ({type(exc).__name__}: {exc}); "
                        f"a truncated download? fetch it again") from exc


def check_tsv_rows(text: str, path) -> None:
    """DataError for a local TSV cut short (no newline at its end) or a row whose number of
    cells differs from the header's, naming the file, line and record."""
    lines = text.splitlines()
    ncell = lines[0].count("\t") + 1 if lines else 0
    for n, line in enumerate(lines[1:], 2):
        if line.strip() and line.count("\t") + 1 != ncell:
            raise DataError(f"{path}: line {n} (record {line.split(chr(9))[0]}) has {line.count(chr(9)) + 1} "
                            f"tab-separated cells, the header has {ncell}")
    if not text.endswith("\n") and len(lines) > 1:
        raise DataError(f"{path}: line {len(lines)} (record {lines[-1].split(chr(9))[0]}) is cut: the file does "
                        f"not end with a newline (a truncated copy?); fetch or export it again")


def entries_from_file(path, report: DropReport, fmt: str = "auto") -> Iterator[Entry]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"UniProt local file not found: {path}")
    fmt = detect_format(path) if fmt in (None, "auto") else fmt
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: the UniProt file is empty (no records); a failed download? "
                        f"fetch it again or remove it from data.uniprot.local")
    if fmt == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        for e in iter_json_entries(obj):
            yield entry_from_json(e)
    elif fmt == "tsv":
        check_tsv_rows(text, path)
        yield from entries_from_tsv(text, str(path))
    elif fmt == "flat":
        yield from entries_from_flat(text, report, str(path))
    elif fmt == "tmbed":
        yield from entries_from_tmbed(text, report, str(path))
    else:
        raise DataError(f"{path}: unknown UniProt format '{fmt}' (json, tsv, flat, tmbed)")
