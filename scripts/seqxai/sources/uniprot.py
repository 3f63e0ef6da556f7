"""UniProtKB entries -> the ``proteins`` and ``residue_annotations`` tables.

Inputs: the REST search API (``/uniprotkb/search``, JSON or TSV, cursor pages followed through
``Link: <...>; rel="next"``, ``size`` <= 500), or local files: REST JSON (``{"results": [...]}``
or one entry), REST TSV (columns named by their TSV labels, e.g. ``Entry``, ``Sequence``,
``EC number``, ``Transmembrane``; the CLEAN EC table is such a file), Swiss-Prot flat files
(``.txt``/``.dat``, read record by record with Bio.SwissProt), and TMbed label FASTA files.

Positions: feature ``start``/``end`` are UniProt's 1-based inclusive positions, kept as is.
Features with an unknown position (``?``) or outside ``1..len(sequence)`` are dropped and
counted. Feature types are snake_case of UniProt's display names ("Active site" ->
``active_site``; flat-file ``ACT_SITE`` -> ``active_site``), except ``MOD_RES`` (Modified residue)
-> ``ptm`` and ``SIGNAL`` -> ``signal_peptide``; see :data:`FEATURE_TYPES`.

Non-standard residues (anything outside the 20 standard amino acids: U, O, B, Z, X, ...), rule
``nonstandard``:
- ``"drop"`` (default): the entry is dropped and counted ("non-standard residue").
- ``"map"``: letters in ``nonstandard_map`` (default U->C, O->K, B->D, Z->E, the closest
  standard residue) are replaced in place, so positions and annotations stay valid; an entry
  still holding a non-standard letter (X and anything unmapped) is then dropped.
EC numbers: every EC number of the entry (recommended, alternative, submission names, includes,
contains), de-duplicated and sorted, joined by ";"; ``ec_class`` is the first digit of the
first one (sorting makes JSON, TSV and flat files agree). GO: all GO ids, optionally limited to
some aspects (F, P, C), sorted, with their aspects in ``go_aspects`` (same order). Where each
format carries the aspect: JSON ``GoTerm`` "F:name", flat-file ``DR GO; id; F:name``, TSV the
column ("Gene Ontology (molecular function)" = field ``go_f``, ``go_p``, ``go_c``). The TSV
columns "Gene Ontology IDs" (``go_id``) and "Gene Ontology (GO)" (``go``) do not say: their terms
get aspect "" (unknown), unless another column of the entry names it. The search therefore asks
for ``go_f``, ``go_p`` and ``go_c`` rather than ``go_id``.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..io import DataError
from ..tables import STANDARD_AMINO_ACIDS
from . import DropReport
from . import validate as formats
from .http import Fetcher, Response, cache_key

log = logging.getLogger("seqxai")

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

DEFAULT_FEATURES = ["active_site", "binding_site", "motif", "transmembrane"]
DEFAULT_NONSTANDARD_MAP = {"U": "C", "O": "K", "B": "D", "Z": "E"}
_STD = set(STANDARD_AMINO_ACIDS)


def feature_type(name: str) -> str:
    """Our snake_case type for a flat-file key ("ACT_SITE") or display name ("Active site")."""
    if name in _BY_FLATKEY:
        return _BY_FLATKEY[name]
    if name in _TSV_LABELS:
        return _TSV_LABELS[name]
    return _BY_DISPLAY.get(name.lower(), snake(name))


def return_fields(features: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """REST ``fields=`` for our tables and the configured feature types."""
    # go_f/go_p/go_c, not go_id: in TSV only the aspect-specific columns tell F, P and C apart
    # (JSON carries the aspect in every GO cross-reference either way)
    fields = ["accession", "sequence", "ec", "go_f", "go_p", "go_c", "organism_id", "xref_pdb",
              "xref_alphafolddb"]
    for f in features:
        if f not in FEATURE_TYPES or FEATURE_TYPES[f][2] is None:
            known = sorted(k for k, v in FEATURE_TYPES.items() if v[2])
            raise DataError(f"unknown UniProt feature type '{f}' in the config; known: {known}")
        fields.append(FEATURE_TYPES[f][2])
    return fields + [x for x in extra if x not in fields]


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


# ---------------------------------------------------------------- tables
@dataclass
class ProteinRules:
    features: list[str] = field(default_factory=lambda: list(DEFAULT_FEATURES))
    nonstandard: str = "drop"
    nonstandard_map: dict = field(default_factory=lambda: dict(DEFAULT_NONSTANDARD_MAP))
    min_length: int = 1
    max_length: int | None = None
    go_aspects: list[str] = field(default_factory=lambda: ["F", "P", "C"])

    @classmethod
    def from_config(cls, cfg: dict | None) -> ProteinRules:
        cfg = dict(cfg or {})
        keep = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg and cfg[k] is not None}
        rules = cls(**keep)
        if rules.nonstandard not in ("drop", "map"):
            raise DataError(f"nonstandard must be 'drop' or 'map', not '{rules.nonstandard}'")
        return rules


def clean_sequence(seq: str, rules: ProteinRules) -> tuple[str | None, str]:
    """Apply the non-standard residue rule; returns (sequence or None, reason)."""
    seq = re.sub(r"\s+", "", seq).upper()
    if not seq:
        return None, "empty sequence"
    if rules.nonstandard == "map":
        seq = "".join(rules.nonstandard_map.get(c, c) for c in seq)
    bad = sorted(set(seq) - _STD)
    if bad:
        return None, "non-standard residue " + "".join(bad)
    return seq, ""


def build_tables(entries: Iterable[Entry], rules: ProteinRules, report: DropReport):
    """Entries -> (proteins, residue_annotations, xrefs) data frames, counting every drop."""
    prot_rows, ann_rows, xref_rows, seen = [], [], [], set()
    wanted = set(rules.features)
    for ent in entries:
        if ent.accession in seen:
            report.drop("entry", "duplicate accession", ent.accession)
            continue
        seen.add(ent.accession)
        seq, why = clean_sequence(ent.sequence, rules)
        if seq is None:
            reason = "empty sequence" if why == "empty sequence" else "non-standard residue"
            report.drop("entry", reason, f"{ent.accession} ({why})")
            continue
        if len(seq) < rules.min_length or (rules.max_length and len(seq) > rules.max_length):
            report.drop("entry", "length outside range", f"{ent.accession} ({len(seq)} aa)")
            continue
        ecs = sorted(dict.fromkeys(e.strip() for e in ent.ec if e.strip()))
        go, go_aspects = go_with_aspects(ent.go, rules.go_aspects)
        prot_rows.append(
            {
                "accession": ent.accession,
                "sequence": seq,
                "length": len(seq),
                "ec": ";".join(ecs),
                "ec_class": ecs[0].split(".")[0] if ecs else "",
                "go_terms": go,
                "organism_id": ent.organism_id,
                "go_aspects": go_aspects,
            }
        )
        report.keep("entry")
        for t, s, e, d in ent.features:
            if t not in wanted:
                continue
            if s is None or e is None:
                report.drop("feature", "unknown position", f"{ent.accession} {t}")
            elif not (1 <= s <= e <= len(seq)):
                report.drop("feature", "outside sequence", f"{ent.accession} {t} {s}..{e} (length {len(seq)})")
            else:
                ann_rows.append({"accession": ent.accession, "type": t, "start": s, "end": e, "description": d})
                report.keep("feature")
        for db, xid, chains in ent.xrefs:
            xref_rows.append({"accession": ent.accession, "database": db, "id": xid, "chains": chains})
    proteins = pd.DataFrame(
        prot_rows, columns=["accession", "sequence", "length", "ec", "ec_class", "go_terms", "organism_id",
                            "go_aspects"]
    )
    ann = pd.DataFrame(ann_rows, columns=["accession", "type", "start", "end", "description"])
    ann = ann.drop_duplicates().reset_index(drop=True)
    xrefs = pd.DataFrame(xref_rows, columns=["accession", "database", "id", "chains"])
    return proteins, ann, xrefs


# ---------------------------------------------------------------- REST search
UNIPROT_SEARCH = "https://rest.uniprot.org/uniprotkb/search"


def _validate_json_page(resp: Response) -> None:
    formats.uniprot_json_text(resp.content)


def _validate_tsv_page(resp: Response) -> None:
    formats.uniprot_tsv_text(resp.text)


def search_pages(
    fetcher: Fetcher,
    query: str,
    fields: list[str] | None = None,
    fmt: str = "json",
    size: int = 500,
    base_url: str = UNIPROT_SEARCH,
    extra_params: dict | None = None,
) -> Iterator[Response]:
    """Walk the cursor pages of a UniProtKB search (``size`` is capped at UniProt's 500).

    After the last page the entries are counted against the first page's ``X-Total-Results``:
    fewer (a page cut at a row boundary, a cursor that ended early) is a DataError naming the
    query, and the query's cached pages are removed so that a rerun fetches them again."""
    if fmt not in ("json", "tsv"):
        raise DataError(f"UniProt format must be json or tsv, not '{fmt}'")
    params = {"query": query, "format": fmt, "size": str(max(1, min(int(size), 500)))}
    if fields:
        params["fields"] = ",".join(fields)
    params.update({k: str(v) for k, v in (extra_params or {}).items()})
    validate = _validate_json_page if fmt == "json" else _validate_tsv_page
    key = "uniprot-" + cache_key(base_url, params)
    total, seen, n_pages = None, 0, 0
    for resp in fetcher.pages(base_url, params, validate=validate, cache_key=key):
        n_pages += 1
        if total is None:
            stated = str(resp.headers.get("X-Total-Results") or "").strip()
            total = int(stated) if stated.isdigit() else -1
        seen += formats.uniprot_json_text(resp.content) if fmt == "json" else formats.uniprot_tsv_text(resp.text)
        yield resp
    if total is not None and seen < total:
        if fetcher.cache_dir is not None:
            shutil.rmtree(fetcher.cache_dir / "pages" / key, ignore_errors=True)
        raise DataError(
            f"UniProt query '{query}': {n_pages} page(s) hold {seen} entries, X-Total-Results states {total}; "
            f"a page was cut short or the search ended early. Its cached pages were removed: run again.")


def entries_from_pages(pages: Iterable[Response], fmt: str, provenance: dict) -> Iterator[Entry]:
    for i, resp in enumerate(pages, 1):
        if i == 1:
            provenance.update(
                {
                    "release": resp.headers.get("X-UniProt-Release", ""),
                    "release_date": resp.headers.get("X-UniProt-Release-Date", ""),
                    "total_results": resp.headers.get("X-Total-Results", ""),
                    "retrieved": resp.headers.get("Date", ""),
                    "url": resp.url,
                }
            )
        if fmt == "json":
            for e in resp.json()["results"]:
                yield entry_from_json(e)
        else:
            yield from entries_from_tsv(resp.text, resp.url)


def provenance_frame(source: str, provenance: dict) -> pd.DataFrame:
    """Provenance (release, retrieval date, ...) as data-report rows (item 'provenance')."""
    rows = [
        {"source": source, "item": "provenance", "reason": f"{k}={v}", "count": 0, "example": ""}
        for k, v in sorted(provenance.items())
        if v not in (None, "")
    ]
    return pd.DataFrame(rows, columns=["source", "item", "reason", "count", "example"])


def load_proteins(
    local: list[str] | str | None = None,
    fmt: str = "auto",
    query: str | None = None,
    rules: ProteinRules | None = None,
    fetcher: Fetcher | None = None,
    api_format: str = "json",
    page_size: int = 500,
    base_url: str = UNIPROT_SEARCH,
    extra_params: dict | None = None,
):
    """Proteins, annotations, structure cross-references and a data report, from local files
    (``local``) or a UniProtKB search (``query``). Raises DataError when nothing is left."""
    rules = rules or ProteinRules()
    report = DropReport("uniprot")
    provenance: dict = {}
    if local:
        files = [local] if isinstance(local, (str, Path)) else list(local)
        entries = (e for f in files for e in entries_from_file(f, report, fmt))
        provenance["local"] = ";".join(str(f) for f in files)
        what = f"local files {files}"
    elif query:
        if fetcher is None:
            raise DataError("a UniProt query needs a fetcher")
        fields = return_fields(rules.features)
        pages = search_pages(fetcher, query, fields, api_format, page_size, base_url, extra_params)
        entries = entries_from_pages(pages, api_format, provenance)
        provenance["query"] = query
        what = f"UniProt query '{query}'"
    else:
        raise DataError("uniprot: set either 'local' (files) or 'query' in the config")
    proteins, ann, xrefs = build_tables(entries, rules, report)
    if proteins.empty:
        total = sum(report.counts.values())
        raise DataError(f"{what} gave no usable entries ({total} records read, all dropped or none returned)")
    report.log_summary()
    data_report = pd.concat([report.to_frame(), provenance_frame("uniprot", provenance)], ignore_index=True)
    return proteins, ann, xrefs, data_report


def subsample(proteins, ann, xrefs, report, max_proteins: int | None, seed: int):
    """Keep a seeded random ``max_proteins`` of the entries (a pilot run of a large query).

    The kept entries stay in their input order; the rest are counted in the report.
    """
    if not max_proteins or len(proteins) <= max_proteins:
        return proteins, ann, xrefs, report
    import numpy as np

    keep_idx = np.sort(np.random.default_rng(seed).choice(len(proteins), max_proteins, replace=False))
    kept = proteins.iloc[keep_idx].reset_index(drop=True)
    keep = set(kept["accession"])
    row = pd.DataFrame([{"source": "uniprot", "item": "entry", "reason": "subsampled (max_proteins)",
                         "count": len(proteins) - len(kept), "example": ""}])
    report = pd.concat([report, row.reindex(columns=report.columns)], ignore_index=True)
    log.info("uniprot: kept a seeded sample of %d of %d entries (max_proteins)", len(kept), len(proteins))
    return (kept, ann[ann["accession"].isin(keep)].reset_index(drop=True),
            xrefs[xrefs["accession"].isin(keep)].reset_index(drop=True) if "accession" in xrefs else xrefs,
            report)


def run_uniprot(cfg: dict, http_cfg: dict | None, cache_dir, out_proteins, out_annotations, out_xrefs, out_report,
                seed: int = 0) -> None:
    """Rule entry point: the ``data.uniprot`` config section -> four Parquet files."""
    from ..io import write_table
    from .http import local_hint, make_fetcher

    cfg = dict(cfg or {})
    local = cfg.get("local") or None
    fetcher = None if local else make_fetcher(http_cfg, cache_dir)
    with local_hint("data.uniprot.local", "the UniProt entries (JSON or TSV from rest.uniprot.org, "
                    "or Swiss-Prot .dat)"):
        proteins, ann, xrefs, report = load_proteins(
            local=local,
            fmt=cfg.get("format", "auto"),
            query=cfg.get("query"),
            rules=ProteinRules.from_config(cfg),
            fetcher=fetcher,
            api_format=cfg.get("api_format", "json"),
            page_size=int(cfg.get("page_size", 500)),
            base_url=cfg.get("url", UNIPROT_SEARCH),
            extra_params=cfg.get("extra_params"),
        )
    proteins, ann, xrefs, report = subsample(proteins, ann, xrefs, report, cfg.get("max_proteins"), seed)
    write_table(out_proteins, proteins, table="proteins")
    write_table(out_annotations, ann, table="residue_annotations")
    write_table(out_xrefs, xrefs)
    write_table(out_report, report)
    log.info("uniprot: wrote %d proteins, %d annotated segments", len(proteins), len(ann))
