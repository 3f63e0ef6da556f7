"""RegulonDB promoters, TF binding sites and TF matrices -> ``tss``, ``tf_sites``, MEME motifs.

RegulonDB's column layout changes between releases, so every file is matched to a known
layout before any row is read:

- ``promoters_10``  PromoterSet.txt (10.x): no header row; 8 columns described in ``# (N) ...``
                    comments (id, name, strand, TSS, sigma, sequence -60..+20, evidence, confidence)
- ``promoters_13``  PromoterSet.tsv (12/13): header ``1)pmId 2)pmName 3)strand 4)posTSS 5)sigmaFactor ...``
- ``sites_10``      BindingSiteSet.txt (10.x): no header row; 17 columns in ``# (N)`` comments
- ``riset_11``      RISet (11.x): header ``1)riId 2)riType 3)tfId 4)tfName ... 7)tfrsLeft 8)tfrsRight 9)strand``
- ``tfriset_13``    TF-RISet.tsv (13.0): header ``... 3)regulatorId 4)regulatorName ... 7)tfrsLeft ...``

An unknown layout is a DataError that names the file, what was found and the known layouts.
The release stated in the file (``# Release: 10.9`` / ``# RegulonDB Release: 13.0``) is checked
against the release pinned in the config when one is given.

Coordinates are RegulonDB's: 1-based genome positions on U00096.3 = NC_000913.3; the TSS is
the +1 position; sites are ``left..right`` inclusive. Strand "forward"/"reverse" -> "+"/"-".
Sigma "unknown"/empty -> "". Promoters can be filtered by RegulonDB's evidence confidence
level (Confirmed > Strong > Weak; config ``data.regulondb.evidence``: strong / weak / all).
Rows without coordinates (TSS 0, NA/empty site ends) are dropped and counted. A binding site listed once per regulatory interaction is kept once per (site, TF);
``site_id`` is RegulonDB's site id, suffixed with ``:<TF>`` when one site serves several TFs.

Known quirk of release 10.9: for reverse-strand high-throughput TSSs (ids ``TSS_*``) the
promoter sequence column sits one base off the stated position (2,465 of them; curated
promoters match exactly). Positions are kept as published; the test suite pins the count.
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

log = logging.getLogger("seqxai")


@dataclass(frozen=True)
class Layout:
    name: str
    kind: str  # "promoters" | "sites"
    header: tuple[str, ...] | None  # header-row column names (without the "N)" prefix)
    comments: tuple[str, ...] | None  # leading words of the "# (N) ..." column comments
    columns: dict  # our field -> 0-based column index


LAYOUTS = [
    Layout(
        "promoters_10",
        "promoters",
        None,
        ("promoter identifier", "promoter name", "dna strand", "genome map position of transcription start site",
         "sigma factor", "promoter sequence", "evidence that supports", "evidence confidence level"),
        {"id": 0, "name": 1, "strand": 2, "tss": 3, "sigma": 4, "sequence": 5, "confidence": 7},
    ),
    Layout(
        "promoters_13",
        "promoters",
        ("pmId", "pmName", "strand", "posTSS", "sigmaFactor", "pmSequence", "firstGeneName", "distToFirstGene",
         "pmEvidence", "addEvidence", "confidenceLevel", "pmids"),
        None,
        {"id": 0, "name": 1, "strand": 2, "tss": 3, "sigma": 4, "sequence": 5, "confidence": 10},
    ),
    Layout(
        "sites_10",
        "sites",
        None,
        ("transcription factor (tf) identifier", "tf name", "confornation name", "tf binding site (tf-bs) identifier",
         "tf-bs left end position", "tf-bs right end position", "dna strand", "tf-gene interaction identifier",
         "transcription unit id", "transcription unit name", "gene expression effect", "promoter name",
         "center position of tf-bs", "tf-bs sequence", "distance to first gene", "evidence that supports",
         "evidence confidence level"),
        {"tf": 1, "site": 3, "left": 4, "right": 5, "strand": 6, "confidence": 16},
    ),
    Layout(
        "riset_11",
        "sites",
        ("riId", "riType", "tfId", "tfName", "cnfName", "tfrsId", "tfrsLeft", "tfrsRight", "strand", "tfrsSeq",
         "riFunction", "promoterId", "promoterName", "TSS", "tfrsDistToPm", "firstGene", "tfrsDistTo1Gene",
         "targetTuOrGene", "confidenceLevel", "tfrsEvidence", "riEvidence", "addEvidence", "riEvTech"),
        None,
        {"tf": 3, "site": 5, "left": 6, "right": 7, "strand": 8, "confidence": 18},
    ),
    Layout(
        "tfriset_13",
        "sites",
        ("riId", "riType", "regulatorId", "regulatorName", "cnfName", "tfrsID", "tfrsLeft", "tfrsRight", "strand",
         "tfrsSeq", "riFunction", "promoterID", "promoterName", "tss", "sigmaF", "tfrsDistToPm", "firstGene",
         "tfrsDistTo1Gene", "targetTuOrGene", "confidenceLevel", "tfrsEvidence", "riEvidence", "addEvidence",
         "riEvTech", "riEvCategory", "tfrsPMIDS", "riPMIDS"),
        None,
        {"tf": 3, "site": 5, "left": 6, "right": 7, "strand": 8, "confidence": 19},
    ),
]

_HEADER_NUM = re.compile(r"^\s*\d+\)\s*")
_COMMENT_COL = re.compile(r"^#+\s*\((\d+)\)\s*(.*)$")
_RELEASE = re.compile(r"Release:\s*([0-9][0-9.]*)")


@dataclass
class ParsedFile:
    layout: Layout
    release: str
    rows: list[list[str]]
    first_row_line: int


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def read_layout(path: str | Path, kind: str | None = None, release: str | None = None) -> ParsedFile:
    """Split a RegulonDB file into comments, header and rows, and match it to a known layout."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"RegulonDB file not found: {path}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    comments, header, rows, first = [], None, [], 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            comments.append(line)
            continue
        cells = line.rstrip("\r\n").split("\t")
        if header is None and not rows and _HEADER_NUM.match(cells[0]):
            header = tuple(_HEADER_NUM.sub("", c).strip() for c in cells)
            continue
        if not rows:
            first = n
        rows.append([c.strip() for c in cells])

    found_release = ""
    for c in comments:
        m = _RELEASE.search(c)
        if m:
            found_release = m.group(1).rstrip(".")
            break
    col_comments = {}
    for c in comments:
        m = _COMMENT_COL.match(c)
        if m:
            col_comments.setdefault(int(m.group(1)), _norm(m.group(2)))
    described = [col_comments[k] for k in sorted(col_comments)]

    layout = None
    for lay in LAYOUTS:
        if kind and lay.kind != kind:
            continue
        if header is not None and lay.header is not None:
            if tuple(h.lower() for h in header) == tuple(h.lower() for h in lay.header):
                layout = lay
                break
        elif header is None and lay.comments is not None and len(described) == len(lay.comments):
            if all(d.startswith(w) for d, w in zip(described, lay.comments)):
                layout = lay
                break
    if layout is None:
        seen = f"header {list(header)}" if header else f"{len(described)} described columns {described[:4]}..."
        known = [f"{lay.name} ({lay.kind})" for lay in LAYOUTS if not kind or lay.kind == kind]
        raise DataError(
            f"{path}: unknown RegulonDB layout (release {found_release or '?'}): found {seen}; "
            f"known layouts: {known}. Pin a supported release in the config or add the layout "
            f"to seqxai.sources.regulondb.LAYOUTS."
        )
    if release and found_release and str(release) != found_release:
        raise DataError(f"{path}: RegulonDB release {found_release} in the file, but the config pins {release}")
    if not rows:
        raise DataError(f"{path}: the RegulonDB {layout.kind} file has no rows (layout {layout.name}, only "
                        f"comments/header): a failed download or an emptied file? fetch it again")
    ncol = len(layout.header) if layout.header else len(layout.comments)
    for i, r in enumerate(rows):
        if len(r) < max(layout.columns.values()) + 1:
            raise DataError(
                f"{path}:{first + i}: {len(r)} columns, layout {layout.name} has {ncol} (record '{r[0] if r else ''}')"
            )
    log.info("%s: RegulonDB layout %s, release %s, %d rows", path, layout.name, found_release or "?", len(rows))
    return ParsedFile(layout, found_release, rows, first)


_STRAND = {"forward": "+", "reverse": "-", "+": "+", "-": "-", "both": ".", ".": "."}


def _int(s: str) -> int | None:
    s = (s or "").strip()
    return int(float(s)) if re.fullmatch(r"-?\d+(\.0+)?", s) else None


def _sigma(s: str) -> str:
    s = (s or "").strip()
    if s.lower() in ("", "unknown", "na", "-"):
        return ""
    # "sigma70" (13.0) and "Sigma70" (10.x) -> "Sigma70"; several -> joined by ","
    parts = [p.strip() for p in re.split(r"[,;]", s) if p.strip()]
    return ",".join(p[0].upper() + p[1:] for p in parts)


#: RegulonDB evidence confidence levels, strongest first (10.x spells them out, 13.x uses C/S/W)
EVIDENCE_RANK = {"confirmed": 3, "c": 3, "strong": 2, "s": 2, "weak": 1, "w": 1}
#: ``evidence`` filter -> lowest confidence level kept (``all`` keeps rows without a level too)
EVIDENCE_MIN = {"strong": 2, "weak": 1, "all": 0}


def evidence_rank(level: str) -> int:
    """Rank of a RegulonDB confidence level: Confirmed 3, Strong 2, Weak 1, empty/unknown 0."""
    return EVIDENCE_RANK.get((level or "").strip().lower(), 0)


#: default of ``data.regulondb.max_outside_genome``: the share of rows with coordinates that may
#: lie beyond the genome's end before the run stops (a genome shorter than the coordinates or
#: another assembly moves many rows out; a handful is a release quirk, dropped and counted)
MAX_OUTSIDE_GENOME = 0.01


def check_outside_genome(rep: DropReport, item: str, kept_reasons: int, path, chrom: str, genome_length,
                         max_share: float | None) -> None:
    """DataError when more than ``max_share`` of the rows with coordinates lie outside the genome."""
    n_out = rep.n(item, "outside genome")
    if not n_out or max_share is None or not genome_length:
        return
    share = n_out / max(kept_reasons, 1)
    if share > max_share:
        what = "promoters" if item == "promoter" else "site rows"
        raise DataError(
            f"{path}: {n_out} of {kept_reasons} {what} ({share:.0%}) lie outside the genome ({chrom}, "
            f"{genome_length:,} bp), more than data.regulondb.max_outside_genome ({max_share}); a genome "
            f"shorter than the coordinates (set data.genome.expected_length) or another assembly? First: "
            f"{rep.examples.get((item, 'outside genome'), '?')}")


def read_promoters(
    path, chrom: str = "NC_000913.3", release: str | None = None, genome_length: int | None = None,
    evidence: str = "all", max_outside_genome: float | None = MAX_OUTSIDE_GENOME,
) -> tuple[pd.DataFrame, pd.DataFrame, DropReport]:
    """tss table, promoter sequences (tss_id, sequence -60..+20) and the drop report.

    ``evidence`` filters on RegulonDB's evidence confidence level: ``strong`` keeps Confirmed
    and Strong promoters, ``weak`` also Weak ones, ``all`` every row (also without a level).
    Rows below the level are dropped and counted ("evidence below <level>"). Rows beyond
    ``genome_length`` are dropped and counted; more than ``max_outside_genome`` of the rows with
    coordinates is a DataError (:func:`check_outside_genome`)."""
    if evidence not in EVIDENCE_MIN:
        raise DataError(f"regulondb.evidence: '{evidence}' (expected one of {sorted(EVIDENCE_MIN)})")
    pf = read_layout(path, "promoters", release)
    c = pf.layout.columns
    rep = DropReport(f"regulondb:promoters:{Path(path).name}")
    tss, seqs, seen = [], [], set()
    for r in pf.rows:
        rid = r[c["id"]]
        pos = _int(r[c["tss"]])
        strand = _STRAND.get(r[c["strand"]].lower())
        if pos is None or pos <= 0:
            rep.drop("promoter", "no TSS coordinate", rid, warn=False)
            continue
        if strand is None or strand == ".":
            rep.drop("promoter", "unknown strand", f"{rid} ({r[c['strand']]})")
            continue
        if genome_length and pos > genome_length:
            rep.drop("promoter", "outside genome", f"{rid} ({pos})")
            continue
        level = r[c["confidence"]] if len(r) > c["confidence"] else ""
        if evidence_rank(level) < EVIDENCE_MIN[evidence]:
            rep.drop("promoter", f"evidence below {evidence}", f"{rid} ({level or 'no level'})", warn=False)
            continue
        if rid in seen:
            rep.drop("promoter", "duplicate id", rid)
            continue
        seen.add(rid)
        tss.append({"tss_id": rid, "chrom": chrom, "position": pos, "strand": strand, "sigma": _sigma(r[c["sigma"]])})
        seqs.append({"tss_id": rid, "name": r[c["name"]], "sequence": r[c["sequence"]] if len(r) > c["sequence"] else ""})
        rep.keep("promoter")
    located = sum(n for (item, reason), n in rep.counts.items() if item == "promoter" and reason != "no TSS coordinate")
    check_outside_genome(rep, "promoter", located, path, chrom, genome_length, max_outside_genome)
    rep.log_summary()
    return pd.DataFrame(tss, columns=["tss_id", "chrom", "position", "strand", "sigma"]), pd.DataFrame(seqs), rep


def read_sites(
    path, chrom: str = "NC_000913.3", release: str | None = None, genome_length: int | None = None,
    evidence: str = "all", max_outside_genome: float | None = MAX_OUTSIDE_GENOME,
) -> tuple[pd.DataFrame, DropReport]:
    """tf_sites table from a BindingSiteSet / RISet / TF-RISet file, and the drop report.
    ``evidence``: the confidence filter of :func:`read_promoters`, on the site rows' level."""
    if evidence not in EVIDENCE_MIN:
        raise DataError(f"regulondb.site_evidence: '{evidence}' (expected one of {sorted(EVIDENCE_MIN)})")
    pf = read_layout(path, "sites", release)
    c = pf.layout.columns
    rep = DropReport(f"regulondb:sites:{Path(path).name}")
    rows, seen = [], set()
    for r in pf.rows:
        sid, tf = r[c["site"]], r[c["tf"]]
        left, right = _int(r[c["left"]]), _int(r[c["right"]])
        if not sid or sid in ("-", "NA"):
            rep.drop("site row", "no site id", f"{tf}", warn=False)
            continue
        if left is None or right is None or left <= 0 or right <= 0:
            rep.drop("site row", "no coordinates", f"{sid} ({tf})", warn=False)
            continue
        if left > right:
            left, right = right, left
        if genome_length and right > genome_length:
            rep.drop("site row", "outside genome", f"{sid} ({right})")
            continue
        level = r[c["confidence"]] if len(r) > c["confidence"] else ""
        if evidence_rank(level) < EVIDENCE_MIN[evidence]:
            rep.drop("site row", f"evidence below {evidence}", f"{sid} ({level or 'no level'})", warn=False)
            continue
        if (sid, tf) in seen:
            rep.drop("site row", "repeated for another interaction", sid, warn=False)
            continue
        seen.add((sid, tf))
        rows.append({"site_id": sid, "tf": tf, "chrom": chrom, "start": left, "end": right,
                     "strand": _STRAND.get(r[c["strand"]].lower(), ".")})
        rep.keep("site")
    located = sum(n for (item, reason), n in rep.counts.items()
                  if item == "site row" and reason not in ("no site id", "no coordinates"))
    check_outside_genome(rep, "site row", located, path, chrom, genome_length, max_outside_genome)
    df = pd.DataFrame(rows, columns=["site_id", "tf", "chrom", "start", "end", "strand"])
    shared = df["site_id"].duplicated(keep=False)
    df.loc[shared, "site_id"] = df.loc[shared, "site_id"] + ":" + df.loc[shared, "tf"]
    rep.log_summary()
    return df, rep


# ---------------------------------------------------------------- matrices
@dataclass
class Motif:
    id: str
    name: str
    counts: np.ndarray  # [position, base A C G T]
    nsites: int


def read_transfac(path) -> list[Motif]:
    """TRANSFAC-like matrices (RSAT ``.tf``: ``AC``, ``ID``, ``P0`` header, count rows, ``//``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"TF matrix file not found: {path}")
    motifs, cur, order, rows, nsites, header_line = [], {}, None, [], None, 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        tag = line[:2]
        if tag == "AC":
            cur["ac"] = line[2:].strip()
        elif tag == "ID":
            cur["id"] = line[2:].strip()
        elif tag in ("P0", "PO"):
            order = line.split()[1:]
            header_line = n
            if sorted(b.upper() for b in order) != ["A", "C", "G", "T"]:
                raise DataError(f"{path}:{n}: matrix header {order} is not A C G T")
        elif order is not None and re.match(r"^\d+\s", line):
            vals = line.split()[1 : 1 + len(order)]
            try:
                rows.append([float(v) for v in vals])
            except ValueError as exc:
                raise DataError(f"{path}:{n}: bad count row '{line}' in matrix {cur.get('id', '?')}") from exc
        elif tag == "BA":
            m = re.search(r"(\d+)", line)
            nsites = int(m.group(1)) if m else None
        elif tag == "//":
            if rows:
                idx = [order.index(b) for b in ("A", "C", "G", "T")]
                counts = np.array(rows)[:, idx]
                name = cur.get("id") or cur.get("ac") or f"motif{len(motifs) + 1}"
                motifs.append(Motif(cur.get("ac") or name, name, counts, nsites or int(round(counts[0].sum()))))
            cur, order, rows, nsites = {}, None, [], None
    if order is not None or rows:
        name = cur.get("id") or cur.get("ac") or f"motif{len(motifs) + 1}"
        raise DataError(f"{path}:{header_line}: matrix '{name}' is not closed by '//' (the file ends inside it: "
                        f"cut short?); {len(motifs)} complete matrices before it. Fetch the file again")
    if not motifs:
        raise DataError(f"{path}: no matrices found (expected TRANSFAC-like AC/ID/P0 ... // blocks)")
    return motifs


def to_meme(motifs: list[Motif], background=(0.25, 0.25, 0.25, 0.25), pseudocount: float = 0.0) -> str:
    """MEME minimal motif format; rows are (count + pseudocount*bg) / (n + pseudocount)."""
    bg = np.asarray(background, dtype=float)
    out = [
        "MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
        "Background letter frequencies",
        " ".join(f"{b} {p:.4f}" for b, p in zip("ACGT", bg)), "",
    ]
    seen = set()
    for m in motifs:
        mid = m.id
        k = 2
        while mid in seen:
            mid, k = f"{m.id}_{k}", k + 1
        seen.add(mid)
        tot = m.counts.sum(axis=1, keepdims=True)
        if (tot + pseudocount <= 0).any():
            raise DataError(f"motif {m.id}: a position has no counts")
        p = (m.counts + pseudocount * bg) / (tot + pseudocount)
        out += [f"MOTIF {mid} {m.name}", f"letter-probability matrix: alength= 4 w= {len(p)} nsites= {m.nsites} E= 0"]
        out += [" " + " ".join(f"{x:.6f}" for x in row) for row in p]
        out.append("")
    return "\n".join(out)


def genome_background(seq: str) -> tuple[float, float, float, float]:
    """A, C, G, T frequencies of a genome (both strands: A=T, C=G)."""
    seq = seq.upper()
    a, c, g, t = (seq.count(x) for x in "ACGT")
    at, cg = (a + t) / 2, (c + g) / 2
    n = 2 * (at + cg)
    return (at / n, cg / n, cg / n, at / n)


def _source_file(part: dict, name: str, cache_dir, fetcher_factory) -> Path:
    if part.get("local"):
        return Path(part["local"])
    if not part.get("url"):
        raise DataError(f"regulondb.{name}: set 'local' (a file) or 'url'")
    from . import validate as formats
    from .http import local_hint

    url = part["url"]
    check = formats.transfac if name == "matrices" else formats.regulondb_table
    with local_hint(f"data.regulondb.{name}.local", f"{url}"):
        return fetcher_factory().download(url, Path(cache_dir) / "regulondb" / url.rsplit("/", 1)[-1],
                                          validate=check)


def run_regulondb(cfg: dict, http_cfg: dict | None, cache_dir, genome_path, out_tss, out_sites, out_meme,
                  out_report) -> None:
    """Rule entry point: the ``data.regulondb`` config section -> tss, tf_sites, MEME motifs, report."""
    from ..io import read_fasta, write_table, write_text
    from .http import make_fetcher

    cfg = dict(cfg or {})
    genome = read_fasta(genome_path)
    chrom = cfg.get("chrom") or next(iter(genome))
    if chrom not in genome:
        raise DataError(f"regulondb.chrom '{chrom}' is not a record of {genome_path} ({list(genome)})")
    glen = len(genome[chrom])
    fetcher = []

    def factory():
        if not fetcher:
            fetcher.append(make_fetcher(http_cfg, cache_dir))
        return fetcher[0]

    parts = {k: dict(cfg.get(k) or {}) for k in ("promoters", "sites", "matrices")}
    release = cfg.get("release")
    max_out = cfg.get("max_outside_genome", MAX_OUTSIDE_GENOME)
    tss, _seqs, rep_p = read_promoters(_source_file(parts["promoters"], "promoters", cache_dir, factory), chrom,
                                       parts["promoters"].get("release") or release, glen,
                                       evidence=cfg.get("evidence") or "all", max_outside_genome=max_out)
    sites, rep_s = read_sites(_source_file(parts["sites"], "sites", cache_dir, factory), chrom,
                              parts["sites"].get("release") or release, glen,
                              evidence=cfg.get("site_evidence") or "all", max_outside_genome=max_out)
    motifs = read_transfac(_source_file(parts["matrices"], "matrices", cache_dir, factory))
    bg = genome_background(genome[chrom]) if cfg.get("background", "genome") == "genome" else (0.25,) * 4
    write_table(out_tss, tss, table="tss")
    write_table(out_sites, sites, table="tf_sites")
    write_text(out_meme, to_meme(motifs, bg, float(cfg.get("pseudocount", 0.0))))
    rep_m = DropReport("regulondb:matrices")
    rep_m.keep("matrix", len(motifs))
    write_table(out_report, pd.concat([rep_p.to_frame(), rep_s.to_frame(), rep_m.to_frame()], ignore_index=True))
