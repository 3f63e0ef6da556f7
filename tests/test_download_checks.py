"""No bad answer is ever cached (issue 19.1): the format checks of seqxai.sources.validate on real
files and on their damaged copies, and the fetcher against a loopback server that serves an HTML
maintenance page with 200, 500/502/504, a stalled body, or a TSV cut at a row boundary."""
import gzip
import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.io import DataError  # noqa: E402
from seqxai.sources import validate as formats  # noqa: E402
from seqxai.sources.http import DownloadError, Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.uniprot import search_pages  # noqa: E402

SHARED = ROOT.parent / "shared"
FIX = SHARED / "fixtures"
needs_shared = pytest.mark.skipif(not FIX.is_dir(), reason="../shared/fixtures (real files) is absent")

HTML = b"<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head><body></body></html>\n"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)


def fetcher(tmp_path, attempts=3, timeout=(2, 5)):
    waits = []
    f = Fetcher(cache_dir=tmp_path / "cache", retry=RetryPolicy(attempts=attempts, backoff=0.01, seed=1),
                sleep=waits.append, timeout=timeout)
    return f, waits


# ------------------------------------------------------------------ the checks on real files
REAL = [  # (check, file): every kind the download rules fetch
    (formats.fasta, FIX / "ncbi" / "NC_005816.fna"),
    (formats.fasta, FIX / "ncbi" / "GCF_000005845.2_ASM584v2_genomic.fna.gz"),
    (formats.genbank, FIX / "ncbi" / "NC_005816.gb"),
    (formats.pdb, FIX / "rcsb" / "1AKI.pdb"),
    (formats.pdb, FIX / "alphafold" / "AF-P05067-F1-model_v6.pdb"),
    (formats.pdb, FIX / "alphafold" / "AF-P05067-F1-model_v6.pdb.gz.as_served"),
    (formats.mmcif, FIX / "rcsb" / "1AKI.cif"),
    (formats.mmcif, FIX / "alphafold" / "AF-A0A0C5B5G6-F1-model_v6.cif.gz"),
    (formats.regulondb_table, FIX / "regulondb" / "RegulonDB13.0_PromoterSet.tsv.head60"),
    (formats.regulondb_table, FIX / "regulondb" / "RegulonDB10.8_BindingSiteSet.txt.head60"),
    (formats.transfac, SHARED / "data" / "ecoli" / "regulonDB_2012-05_matrices.tf"),
    (formats.obo, ROOT / "tests" / "data" / "go_small.obo"),
    (formats.json_body, FIX / "alphafold" / "api_prediction_P05067.json"),
    (formats.chain_list, ROOT / "config" / "paper" / "vig_pisces_chains.txt"),
]


def _name(p):
    return p[1].name


@needs_shared
@pytest.mark.parametrize("check,path", REAL, ids=[_name(p) for p in REAL])
def test_real_file_passes_html_and_cut_copies_fail(tmp_path, check, path):
    check(path)
    html = tmp_path / "page"
    html.write_bytes(HTML)
    with pytest.raises(ValueError, match="HTML page.*Service temporarily unavailable"):
        check(html)
    raw = path.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: len(raw) // 2 + 7])  # a gzip stream cut short, or text cut inside a line
    with pytest.raises(ValueError):
        check(cut)


@needs_shared
@pytest.mark.parametrize("check,path", [REAL[2], REAL[3], REAL[10]], ids=["genbank", "pdb", "transfac"])
def test_file_cut_at_a_line_boundary_fails(tmp_path, check, path):
    """The formats with an end marker (GenBank '//', PDB TER/END, TRANSFAC '//') catch a cut
    that ends cleanly on a line, which a newline check alone cannot."""
    lines = path.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut"
    cut.write_text("".join(lines[: len(lines) // 2]))
    with pytest.raises(ValueError, match="cut"):
        check(cut)


@pytest.mark.parametrize("page", [HTML, b"\n  <!-- proxy -->\n<HTML><BODY>Bad gateway</BODY></HTML>\n",
                                  b"<html>\n<head><title>502</title></head></html>"])
def test_html_pages_are_recognised_in_their_usual_shapes(tmp_path, page):
    p = tmp_path / "page"
    p.write_bytes(page)
    for check in (formats.fasta, formats.pdb, formats.obo, formats.regulondb_table, formats.json_body):
        with pytest.raises(ValueError, match="an HTML page"):
            check(p)
    with pytest.raises(ValueError, match="an HTML page"):
        formats.uniprot_tsv_text(page.decode())


def test_structure_check_by_name():
    assert formats.structure_for("AF-P1-F1-model_v4.cif.gz") is formats.mmcif
    assert formats.structure_for("1abc.pdb") is formats.pdb
    assert formats.structure_for("1abc.ent.gz") is formats.pdb
    assert formats.structure_for("download?id=1") is formats.any_structure


# ------------------------------------------------------------------ the fetcher over loopback
PDB_TEXT = "".join(
    f"ATOM  {i:5d}  CA  ALA A{i:4d}    {i:8.3f}   0.000   0.000  1.00 90.00           C\n" for i in range(1, 40)
) + "TER\nEND\n"


def test_html_page_with_200_is_retried_then_the_real_file_is_cached(tmp_path):
    with ReplayServer() as srv:
        route = srv.add("/files/x.pdb", PDB_TEXT)
        srv.fault("/files/x.pdb", "html")
        f, waits = fetcher(tmp_path)
        dest = tmp_path / "cache" / "x.pdb"
        f.download(srv.url("/files/x.pdb"), dest, validate=formats.pdb)
    assert dest.read_text() == PDB_TEXT and route.hits == 2 and len(waits) == 1


def test_html_page_every_time_fails_naming_the_url_and_caches_nothing(tmp_path):
    with ReplayServer() as srv:
        srv.add("/files/x.pdb", PDB_TEXT)
        srv.fault("/files/x.pdb", "html", n=5)
        f, waits = fetcher(tmp_path, attempts=3)
        dest = tmp_path / "cache" / "x.pdb"
        with pytest.raises(DownloadError, match=r"GET http://127\.0\.0\.1:\d+/files/x\.pdb failed after 3 attempts: "
                                                r"invalid file: an HTML page"):
            f.download(srv.url("/files/x.pdb"), dest, validate=formats.pdb)
        assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
        # the next run (the server is back) fetches it: nothing bad was left to reuse
        f2, _ = fetcher(tmp_path)
        f2.download(srv.url("/files/x.pdb"), dest, validate=formats.pdb)
    assert dest.read_text() == PDB_TEXT


@pytest.mark.parametrize("status", ["500", "502", "504"])
def test_server_errors_are_retried(tmp_path, status):
    with ReplayServer() as srv:
        route = srv.add("/g.fna", ">chr\nACGT\n")
        srv.fault("/g.fna", status, n=2)
        f, waits = fetcher(tmp_path, attempts=3)
        p = f.download(srv.url("/g.fna"), tmp_path / "cache" / "g.fna", validate=formats.fasta)
        assert p.read_text() == ">chr\nACGT\n" and route.hits == 3 and len(waits) == 2
        srv.fault("/g.fna", status, n=3)
        with pytest.raises(DownloadError, match=rf"/g2?\.fna failed after 3 attempts: HTTP {status}"):
            f.download(srv.url("/g.fna"), tmp_path / "cache" / "g2.fna", validate=formats.fasta)
    assert not (tmp_path / "cache" / "g2.fna").exists()


def test_stalled_server_times_out_and_is_retried(tmp_path):
    with ReplayServer() as srv:
        srv.stall = 1.0
        route = srv.add("/g.fna", ">chr\nACGT\n")
        srv.fault("/g.fna", "stall")
        f, waits = fetcher(tmp_path, timeout=(1, 0.2))
        p = f.download(srv.url("/g.fna"), tmp_path / "cache" / "g.fna", validate=formats.fasta)
    assert p.read_text() == ">chr\nACGT\n" and route.hits == 2 and len(waits) == 1


def test_cached_file_that_fails_its_check_is_fetched_again(tmp_path, caplog):
    """A maintenance page cached by an older version (no check then) is replaced, with a warning."""
    dest = tmp_path / "cache" / "x.pdb"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(HTML)
    with ReplayServer() as srv:
        route = srv.add("/files/x.pdb", PDB_TEXT)
        f, _ = fetcher(tmp_path)
        with caplog.at_level(logging.WARNING, logger="seqxai"):
            f.download(srv.url("/files/x.pdb"), dest, validate=formats.pdb)
        assert dest.read_text() == PDB_TEXT and route.hits == 1
        assert "fails its check" in caplog.text and "HTML page" in caplog.text
        f.download(srv.url("/files/x.pdb"), dest, validate=formats.pdb)  # now a plain cache hit
    assert route.hits == 1


def test_gzipped_model_cut_short_is_refetched(tmp_path):
    good = gzip.compress(PDB_TEXT.encode(), mtime=0)
    with ReplayServer() as srv:
        srv.add("/m.pdb.gz", good)
        dest = tmp_path / "cache" / "m.pdb.gz"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(good[: len(good) // 2])
        f, _ = fetcher(tmp_path)
        f.download(srv.url("/m.pdb.gz"), dest, validate=formats.structure_for(dest.name))
    assert dest.read_bytes() == good


# ------------------------------------------------------------------ UniProt pages
TSV = "Entry\tEntry Name\tSequence\n" + "".join(f"P0000{i}\tX{i}_HUMAN\tMKV{'A' * i}\n" for i in range(1, 7))
PARAMS = {"query": "q1", "format": "tsv", "size": "500", "fields": "accession"}


def test_uniprot_tsv_cut_at_a_row_boundary_fails_naming_the_query_and_is_not_kept(tmp_path):
    """The page ends on a row (close-delimited, no Content-Length): only X-Total-Results tells."""
    with ReplayServer() as srv:
        srv.add("/uniprotkb/search", TSV, headers=[("X-Total-Results", "6")], query=PARAMS)
        srv.fault("/uniprotkb/search", "rows", query=PARAMS)
        f, _ = fetcher(tmp_path)
        url = srv.url("/uniprotkb/search")
        with pytest.raises(DataError, match=r"UniProt query 'q1': 1 page\(s\) hold 2 entries, X-Total-Results "
                                            r"states 6"):
            list(search_pages(f, "q1", ["accession"], "tsv", base_url=url))
        assert not any((tmp_path / "cache" / "pages").rglob("*.body"))
        pages = list(search_pages(f, "q1", ["accession"], "tsv", base_url=url))  # the rerun gets all rows
    assert pages[0].text == TSV


def test_uniprot_html_page_is_retried_and_a_cached_one_replaced(tmp_path):
    with ReplayServer() as srv:
        route = srv.add("/uniprotkb/search", TSV, headers=[("X-Total-Results", "6")], query=PARAMS)
        srv.fault("/uniprotkb/search", "html", query=PARAMS)
        f, waits = fetcher(tmp_path)
        url = srv.url("/uniprotkb/search")
        assert list(search_pages(f, "q1", ["accession"], "tsv", base_url=url))[0].text == TSV
        assert route.hits == 2 and len(waits) == 1
        body = next((tmp_path / "cache" / "pages").rglob("00001.body"))
        body.write_bytes(HTML)  # a page cached before the check existed
        assert list(search_pages(f, "q1", ["accession"], "tsv", base_url=url))[0].text == TSV
    assert route.hits == 3 and body.read_text() == TSV
