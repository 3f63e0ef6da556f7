"""UniProtKB entries -> the ``proteins`` and ``residue_annotations`` tables.

Inputs: the REST search API (``/uniprotkb/search``, JSON or TSV, cursor pages followed through
``Link: <...>; rel="next"``, ``size`` <= 500), or local files: REST JSON (``{"results": [...]}``
or one entry), REST TSV (columns named by their TSV labels, e.g. ``Entry``, ``Sequence``,
``EC number``, ``Transmembrane``; the CLEAN EC table is such a file), Swiss-Prot flat files
(``.txt``/``.dat``, read record by record with Bio.SwissProt), and TMbed label FASTA files.

Reading the entries of each format, the feature types and positions:
:mod:`.uniprot_entries`.

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
from .uniprot_entries import (
    FEATURE_TYPES,
    Entry,
    entries_from_file,
    entries_from_tsv,
    entry_from_json,
    go_with_aspects,
)

log = logging.getLogger("seqxai")

DEFAULT_FEATURES = ["active_site", "binding_site", "motif", "transmembrane"]
DEFAULT_NONSTANDARD_MAP = {"U": "C", "O": "K", "B": "D", "Z": "E"}
_STD = set(STANDARD_AMINO_ACIDS)


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
