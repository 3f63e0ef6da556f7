"""Format checks for downloaded files, run before a download enters the cache and whenever a
cached file is reused (:meth:`seqxai.sources.http.Fetcher.download`).

Each check takes the file's path and raises ValueError naming what is wrong; the fetcher turns
that into a retry, so an HTML maintenance page served with status 200, or a body cut short, is
fetched again and, when it stays bad, fails naming the URL - it never lands in the cache.
Gzipped files (recognised by their magic bytes, not by name, since the fetcher checks a
temporary name) are decompressed whole, which also catches a cut gzip stream.

The checks are about format, not content: a file that passes can still hold records that the
readers drop and count (see :class:`seqxai.sources.DropReport`).
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path

_HTML = re.compile(rb"<(!doctype\s+html|html|head|body)\b", re.I)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (a cut stream: ValueError)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"broken gzip stream ({type(exc).__name__}: {exc})") from exc
    return raw


def not_html(data: bytes, what: str) -> None:
    """ValueError for an HTML page (a maintenance or error page served with status 200)."""
    # none of the formats starts with '<': a body that does and holds an HTML tag is a web page
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and _HTML.search(data[:4096]):
        title = re.search(rb"<title>(.*?)</title>", data[:4096], re.I | re.S)
        shown = title.group(1).decode("utf-8", "replace").strip() if title else data[:80].decode("utf-8", "replace")
        raise ValueError(f"an HTML page ({shown!r}), not {what}")


def _text(path, what: str, newline: bool = True) -> str:
    data = read_bytes(path)
    if not data.strip():
        raise ValueError(f"empty body, not {what}")
    not_html(data, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text, not {what} ({exc})") from exc
    if newline and not text.endswith("\n"):
        raise ValueError(f"{what} does not end with a newline (cut inside its last line)")
    return text


def _last_line(text: str) -> str:
    return next((x for x in reversed(text.splitlines()) if x.strip()), "")


# ---------------------------------------------------------------- sequences
_SEQ_LINE = re.compile(r"^[A-Za-z*\-.]+$")


def fasta(path) -> None:
    """FASTA: starts with '>', every other line is sequence letters, at least one residue."""
    text = _text(path, "a FASTA file")
    if not text.startswith(">"):
        raise ValueError(f"not FASTA (does not start with '>'): {text[:80]!r}")
    n = 0
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(">"):
            continue
        if not _SEQ_LINE.match(s):
            raise ValueError(f"FASTA line {i} is not sequence letters: {s[:60]!r}")
        n += len(s)
    if n == 0:
        raise ValueError("FASTA without sequence letters")


def genbank(path) -> None:
    """GenBank flat file: starts with LOCUS, has an ORIGIN section, the last record ends with '//'."""
    text = _text(path, "a GenBank file")
    if not text.lstrip().startswith("LOCUS"):
        raise ValueError(f"not GenBank (does not start with LOCUS): {text[:80]!r}")
    if _last_line(text).strip() != "//":
        raise ValueError("GenBank file does not end with '//' (cut inside its last record)")
    if "\nORIGIN" not in text:
        raise ValueError("GenBank file without an ORIGIN (sequence) section")


# ---------------------------------------------------------------- structures
_PDB_COORD = ("ATOM  ", "HETATM", "ANISOU", "SIGUIJ", "SIGATM")


def pdb(path) -> None:
    """PDB: has ATOM/HETATM records and does not end inside the coordinate section (a file cut
    at a line boundary ends on an ATOM line; a complete one on TER/ENDMDL/CONECT/MASTER/END)."""
    text = _text(path, "a PDB file", newline=False)  # AlphaFold's end on 'END' + spaces, no newline
    if not re.search(r"^(ATOM  |HETATM)", text, re.M):
        raise ValueError(f"PDB file without ATOM/HETATM records: {text[:80]!r}")
    last = _last_line(text)
    if last.startswith(_PDB_COORD):
        raise ValueError(f"PDB file ends on a coordinate record ({last[:27].rstrip()!r}) without TER/END: "
                         f"cut short?")


def mmcif(path) -> None:
    """mmCIF: a ``data_`` block with an ``_atom_site`` loop that gemmi parses whole."""
    text = _text(path, "an mmCIF file")
    first = next((x for x in text.splitlines() if x.strip() and not x.startswith("#")), "")
    if not first.startswith("data_"):
        raise ValueError(f"not mmCIF (first line is not data_...): {first[:80]!r}")
    if "_atom_site." not in text:
        raise ValueError("mmCIF file without an _atom_site loop (no coordinates)")
    import gemmi

    try:
        gemmi.cif.read_string(text)
    except Exception as exc:  # gemmi raises RuntimeError with the line
        raise ValueError(f"mmCIF does not parse ({exc})") from exc


def structure_for(name: str) -> Callable[[Path], None]:
    """The check for a structure file by its (final) name: .pdb/.ent or .cif/.mmcif, .gz or not."""
    base = name.lower().removesuffix(".gz")
    if base.endswith((".cif", ".mmcif")):
        return mmcif
    if base.endswith((".pdb", ".ent")):
        return pdb
    return any_structure


def any_structure(path) -> None:
    """A structure file of a name that does not tell its format: mmCIF if it starts with data_."""
    data = read_bytes(path)
    not_html(data, "a structure file")
    (mmcif if data.lstrip().startswith(b"data_") else pdb)(path)


# ---------------------------------------------------------------- tables and ontologies
def regulondb_table(path) -> None:
    """A RegulonDB tab-separated table: text, '#' comments, rows of >= 5 tab-separated cells."""
    text = _text(path, "a RegulonDB table")
    rows = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
    if not rows:
        raise ValueError("RegulonDB table without data rows")
    narrow = next((i for i, x in enumerate(rows) if x.count("\t") < 4), None)
    if narrow is not None:
        raise ValueError(f"RegulonDB table row {narrow + 1} has {rows[narrow].count(chr(9)) + 1} tab-separated "
                         f"cells: {rows[narrow][:80]!r}")


def transfac(path) -> None:
    """TRANSFAC-like matrices: at least one P0 header, the last block closed by '//'."""
    text = _text(path, "a TRANSFAC matrix file")
    if not re.search(r"^P[0O]\s", text, re.M):
        raise ValueError("TRANSFAC file without a P0 matrix header")
    if _last_line(text).strip() != "//":
        raise ValueError("TRANSFAC file does not end with '//' (cut inside its last matrix)")


def obo(path) -> None:
    """OBO: a format-version header, at least one [Term] stanza."""
    text = _text(path, "an OBO file")
    first = next((x for x in text.splitlines() if x.strip() and not x.startswith("!")), "")
    if not first.startswith("format-version:"):
        raise ValueError(f"not an OBO file (no 'format-version' first line): {first[:80]!r}")
    if "\n[Term]" not in text:
        raise ValueError("OBO file without [Term] stanzas")


def json_body(path) -> None:
    """JSON that parses whole (a list or an object)."""
    data = read_bytes(path)
    not_html(data, "JSON")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(obj, (list, dict)):
        raise ValueError(f"JSON is a {type(obj).__name__}, not a list or an object")


def uniprot_tsv_text(text: str) -> int:
    """Rows of a UniProt TSV page (header 'Entry...'; same column count on every line)."""
    not_html(text[:2048].encode(), "a UniProt TSV page")
    if text and not text.endswith("\n"):
        raise ValueError("TSV page does not end with a newline (truncated)")
    lines = text.splitlines()
    if not lines:
        return 0
    if not lines[0].startswith(("Entry", "Accession")):
        raise ValueError(f"TSV page without an 'Entry' header line: {lines[0][:80]!r}")
    n = lines[0].count("\t")
    bad = next((i for i, x in enumerate(lines) if x.count("\t") != n), None)
    if bad is not None:
        raise ValueError(f"TSV page line {bad + 1} has a different number of columns")
    return sum(1 for x in lines[1:] if x.strip() and not x.startswith(("Entry\t", "Accession\t")))


def uniprot_json_text(data: bytes) -> int:
    """Entries of a UniProt JSON search page (an object with 'results')."""
    not_html(data, "a UniProt JSON page")
    obj = json.loads(data)  # ValueError (JSONDecodeError) on a truncated page
    if not isinstance(obj, dict) or "results" not in obj:
        raise ValueError("JSON page without 'results'")
    return len(obj["results"])


def chain_list(path) -> None:
    """A PISCES cullpdb chain list: header 'PDBchain len method resol ...' (current lists) or
    'IDs length Exptl. resolution ...' (lists before ~2019), and rows."""
    text = _text(path, "a PISCES chain list")
    first = next((x for x in text.splitlines() if x.strip() and not x.startswith("#")), "")
    if first.split()[:1] not in (["PDBchain"], ["IDs"]):
        raise ValueError(f"not a PISCES chain list (no 'PDBchain' or 'IDs' header): {first[:80]!r}")
