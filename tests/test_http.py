"""The real fetcher against a loopback server replaying recorded responses, with injected faults."""
import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.sources.http import (  # noqa: E402
    DownloadError,
    Fetcher,
    RetryPolicy,
    expected_md5,
    next_link,
    parse_retry_after,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)

FIX = SHARED / "fixtures"
needs_shared = pytest.mark.skipif(not FIX.is_dir(), reason="../shared/fixtures (recorded responses) is absent")
TAXO = FIX / "uniprot" / "recorded_vcr" / "protein-quest_taxonomy_search_2025"
AF = FIX / "alphafold"


def fetcher(tmp_path, attempts=4, **kw):
    waits = []
    f = Fetcher(cache_dir=tmp_path / "cache", retry=RetryPolicy(attempts=attempts, backoff=0.01, seed=1),
                sleep=waits.append, timeout=(2, 5), **kw)
    return f, waits


# ------------------------------------------------------------------ pure helpers
def test_next_link_and_retry_after():
    h = '<https://rest.uniprot.org/x?cursor=abc&size=500>; rel="next"'
    assert next_link(h) == "https://rest.uniprot.org/x?cursor=abc&size=500"
    assert next_link('<https://a/b>; rel="prev"') is None
    assert next_link(None) is None
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None


def test_expected_md5_from_goog_hash():
    assert expected_md5({"x-goog-hash": "crc32c=3ZABlA==, md5=iXU65aY2Si8dkN2JNV5CHQ=="}) == "89753ae5a6364a2f1d90dd89355e421d"
    assert expected_md5({"x-goog-hash": "crc32c=3ZABlA=="}) is None


def test_backoff_is_deterministic_with_seed_and_grows():
    a = Fetcher(retry=RetryPolicy(backoff=1.0, jitter=0.25, seed=3))
    b = Fetcher(retry=RetryPolicy(backoff=1.0, jitter=0.25, seed=3))
    wa = [a._backoff(k) for k in range(5)]
    assert wa == [b._backoff(k) for k in range(5)]
    for k, w in enumerate(wa):
        assert 0.75 * 2**k <= w <= 1.25 * 2**k


def test_min_interval_paces_requests(tmp_path):
    with ReplayServer() as srv:
        srv.add("/x", b"ok")
        t = [0.0]
        waits = []
        f = Fetcher(min_interval=0.5, sleep=waits.append, clock=lambda: t[0])
        f.get(srv.url("/x"))
        t[0] = 0.1
        f.get(srv.url("/x"))
        assert waits == [pytest.approx(0.4)]


# ------------------------------------------------------------------ recorded pages
@needs_shared
def test_pages_follow_real_link_headers(tmp_path):
    with ReplayServer() as srv:
        for i in range(1, 11):
            srv.add_recording(TAXO / f"page{i:02d}.meta.json", TAXO / f"page{i:02d}.json")
        f, _ = fetcher(tmp_path)
        pages = list(f.pages(srv.url("/taxonomy/search"),
                             {"query": "Human", "limit": "100", "compressed": "true", "format": "json"}, max_pages=10))
    assert len(pages) == 10
    assert all(len(p.json()["results"]) == 25 for p in pages)
    assert pages[0].headers["X-Total-Results"] == "5425"
    assert "cursor=" in pages[1].url and srv.log[1].startswith("/taxonomy/search?")
    # decoded bodies equal the recorded ones
    assert pages[3].json() == json.loads((TAXO / "page04.json").read_text())


@needs_shared
@pytest.mark.parametrize("kind", ["drop", "short", "truncated"])
def test_broken_body_is_retried(tmp_path, kind):
    with ReplayServer() as srv:
        srv.add_recording(TAXO / "page01.meta.json", TAXO / "page01.json")
        path, q = "/taxonomy/search", {"query": "Human", "limit": "100", "compressed": "true", "format": "json"}
        srv.fault(path, kind, query=q)
        f, waits = fetcher(tmp_path)
        r = f.get(srv.url(path), params=q, validate=lambda resp: resp.json())
    assert len(r.json()["results"]) == 25
    assert len(waits) == 1 and f.requests_made == 2


@needs_shared
def test_429_retry_after_is_honoured(tmp_path):
    with ReplayServer() as srv:
        srv.add_recording(TAXO / "page01.meta.json", TAXO / "page01.json")
        path, q = "/taxonomy/search", {"query": "Human", "limit": "100", "compressed": "true", "format": "json"}
        srv.fault(path, "429", query=q, retry_after="7")
        f, waits = fetcher(tmp_path)
        f.get(srv.url(path), params=q)
    assert waits[0] >= 7.0  # recorded, not slept: the test's sleep is list.append


def test_503_burst_then_success(tmp_path):
    with ReplayServer() as srv:
        srv.add("/x", b"payload")
        srv.fault("/x", "503", n=3)
        f, waits = fetcher(tmp_path, attempts=5)
        assert f.get(srv.url("/x")).content == b"payload"
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]


def test_last_retry_names_the_url(tmp_path):
    with ReplayServer() as srv:
        srv.add("/always-busy", b"x")
        srv.fault("/always-busy", "503", n=10)
        f, waits = fetcher(tmp_path, attempts=3)
        with pytest.raises(DownloadError, match=r"/always-busy.*after 3 attempts.*503"):
            f.get(srv.url("/always-busy"))
    assert len(waits) == 2


def test_404_fails_at_once(tmp_path):
    with ReplayServer() as srv:
        f, waits = fetcher(tmp_path)
        with pytest.raises(DownloadError) as exc:
            f.get(srv.url("/nothing"))
    assert exc.value.status == 404 and "/nothing" in str(exc.value) and waits == []


# ------------------------------------------------------------------ downloads
@needs_shared
def test_download_checks_served_md5_decodes_and_caches(tmp_path):
    meta = AF / "AF-P05067-F1-model_v6.pdb.meta.json"
    with ReplayServer() as srv:
        srv.add_recording(meta, AF / "AF-P05067-F1-model_v6.pdb", raw_gzip=AF / "AF-P05067-F1-model_v6.pdb.gz.as_served")
        srv.fault("/files/AF-P05067-F1-model_v6.pdb", "short")
        f, waits = fetcher(tmp_path)
        dest = tmp_path / "out" / "AF-P05067-F1-model_v6.pdb"
        f.download(srv.url("/files/AF-P05067-F1-model_v6.pdb"), dest)
        assert dest.read_bytes() == (AF / "AF-P05067-F1-model_v6.pdb").read_bytes()
        assert len(waits) == 1
        n = f.requests_made
        f.download(srv.url("/files/AF-P05067-F1-model_v6.pdb"), dest)  # cached: no request
        assert f.requests_made == n
    side = json.loads(dest.with_name(dest.name + ".meta.json").read_text())
    assert side["headers"]["x-goog-hash"].endswith("md5=iXU65aY2Si8dkN2JNV5CHQ==")


@needs_shared
def test_md5_mismatch_never_leaves_a_file(tmp_path):
    with ReplayServer() as srv:
        body = (AF / "AF-P05067-F1-model_v6.pdb.gz.as_served").read_bytes()
        corrupt = bytearray(body)
        corrupt[5000] ^= 0xFF
        srv.add("/f.pdb", b"", headers=[("Content-Encoding", "gzip"), ("x-goog-hash", "md5=iXU65aY2Si8dkN2JNV5CHQ==")],
                raw_gzip=bytes(corrupt))
        f, waits = fetcher(tmp_path, attempts=2)
        dest = tmp_path / "out" / "f.pdb"
        with pytest.raises(DownloadError, match="md5 mismatch"):
            f.download(srv.url("/f.pdb"), dest)
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path):
    with ReplayServer() as srv:
        srv.add("/big", b"A" * 100_000)
        srv.fault("/big", "drop", n=2)
        f, _ = fetcher(tmp_path, attempts=2)
        with pytest.raises(DownloadError, match="/big"):
            f.download(srv.url("/big"), tmp_path / "d" / "big.bin")
        assert list((tmp_path / "d").iterdir()) == []
        f2, _ = fetcher(tmp_path, attempts=2)
        f2.download(srv.url("/big"), tmp_path / "d" / "big.bin", size=100_000)
    assert (tmp_path / "d" / "big.bin").stat().st_size == 100_000


def test_download_keeps_gzip_when_target_is_gz(tmp_path):
    with ReplayServer() as srv:
        srv.add("/g.txt.gz", b"hello\n", headers=[("Content-Encoding", "gzip")])
        f, _ = fetcher(tmp_path)
        p = f.download(srv.url("/g.txt.gz"), tmp_path / "g.txt.gz")
    assert gzip.decompress(p.read_bytes()) == b"hello\n"
