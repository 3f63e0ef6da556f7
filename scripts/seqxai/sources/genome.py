"""The E. coli K-12 MG1655 genome (NC_000913.3) from NCBI E-utilities or a local FASTA.

The record id becomes ``chrom`` in the DNA tables. Legacy headers
(``>gi|45478711|ref|NC_005816.1| ...``) are renamed to their RefSeq accession. Each expected
record must be present with its expected length (NC_000913.3: 4,641,652 bp), and the sequence
may only hold IUPAC nucleotide letters; anything else is a DataError naming the record.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..io import DataError, read_fasta
from . import validate as formats
from .http import Fetcher

log = logging.getLogger("seqxai")

EFETCH = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/efetch.fcgi"
NC_000913_3_LENGTH = 4_641_652
_IUPAC = re.compile(r"[^ACGTRYSWKMBDHVN]")


def _record_id(name: str) -> str:
    if name.startswith("gi|"):
        parts = name.split("|")
        if "ref" in parts and parts.index("ref") + 1 < len(parts):
            return parts[parts.index("ref") + 1]
    return name


def check_genome(records: dict[str, str], expected: dict[str, int] | None, where: str) -> dict[str, str]:
    """Rename legacy ids, keep the expected records (all when none given), check lengths/letters."""
    records = {_record_id(k): v for k, v in records.items()}
    if not records:
        raise DataError(f"{where}: no FASTA records")
    if expected:
        missing = [k for k in expected if k not in records]
        if missing:
            raise DataError(f"{where}: expected record(s) {missing} not found (has {list(records)[:5]})")
        records = {k: records[k] for k in expected}
        for k, n in expected.items():
            if n and len(records[k]) != int(n):
                raise DataError(f"{where}: record {k} has {len(records[k]):,} bp, expected {int(n):,}")
    for k, seq in records.items():
        m = _IUPAC.search(seq)
        if m:
            raise DataError(f"{where}: record {k} has a non-nucleotide letter '{m.group()}' at {m.start() + 1}")
    return records


def efetch_params(accession: str, email: str | None = None, api_key: str | None = None, tool: str = "seqxai") -> dict:
    p = {"db": "nuccore", "id": accession, "rettype": "fasta", "retmode": "text", "tool": tool}
    if email:
        p["email"] = email
    if api_key:
        p["api_key"] = api_key
    return p


def fetch_genome(
    fetcher: Fetcher,
    accession: str,
    cache_dir: str | Path,
    url: str = EFETCH,
    email: str | None = None,
    api_key: str | None = None,
    expected_length: int | None = None,
) -> Path:
    """Download the genome FASTA with efetch (cached; verified before it is renamed into place)."""
    dest = Path(cache_dir) / "genome" / f"{accession}.fasta"

    def validate(path: Path) -> None:
        check_format = formats.genbank if dest.name.endswith((".gb", ".gbk", ".gbff")) else formats.fasta
        check_format(path)
        if expected_length and check_format is formats.fasta:
            text = path.read_text()
            n = sum(len(x.strip()) for x in text.splitlines()[1:] if not x.startswith(">"))
            if n != expected_length:
                raise ValueError(f"{n} bp received, {expected_length} expected")

    return fetcher.download(url, dest, params=efetch_params(accession, email, api_key), validate=validate)


def load_genome(path: str | Path, expected: dict[str, int] | None = None) -> dict[str, str]:
    """Read a (gzipped) FASTA and check it (see :func:`check_genome`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"genome FASTA not found: {path}")
    return check_genome(read_fasta(path), expected, str(path))


def run_genome(cfg: dict, http_cfg: dict | None, cache_dir, out_fasta) -> None:
    """Rule entry point: the ``data.genome`` config section -> genome.fasta (record id = chrom)."""
    from ..io import write_fasta
    from .http import local_hint, make_fetcher

    cfg = dict(cfg or {})
    acc = cfg.get("accession", "NC_000913.3")
    n = cfg.get("expected_length")
    expected = {acc: int(n) if n else 0}
    if cfg.get("local"):
        path = cfg["local"]
    else:
        with local_hint("data.genome.local", f"the {acc} FASTA (.fna.gz from NCBI Datasets or FTP)"):
            path = fetch_genome(make_fetcher(http_cfg, cache_dir), acc, cache_dir, cfg.get("url", EFETCH),
                                cfg.get("email"), cfg.get("api_key"), int(n) if n else None)
    records = load_genome(path, expected)
    write_fasta(out_fasta, records)
    log.info("genome: wrote %s", {k: len(v) for k, v in records.items()})
