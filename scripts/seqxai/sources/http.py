"""A polite, retrying, caching HTTP fetcher for the download rules.

- Every request has a connect/read timeout.
- Retried with exponential backoff and jitter: timeouts, dropped connections, a body shorter
  than its Content-Length, an md5/size mismatch, 429 and 5xx (``Retry-After`` honoured on
  429/503), and a body that fails the caller's ``validate`` check (e.g. truncated JSON).
  Other 4xx fail at once. After the last attempt a :class:`DownloadError` names the URL.
- Bodies are read raw (still content-encoded) so that Content-Length and the service's md5
  (``x-goog-hash: md5=...`` on AlphaFold files, ``Content-MD5``) are checked on the bytes that
  travelled; gzip/deflate bodies are decoded afterwards.
- :meth:`Fetcher.download` writes to a temporary name, verifies (size, md5, the caller's format
  check of :mod:`.validate`), then renames: a file at the target path passed the checks. A
  cached file is checked again when reused; one that fails (cached before a check existed, or
  damaged since) is removed, logged and fetched once more.
- ``min_interval`` spaces requests (UniProt and NCBI ask for a few requests per second at most).
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import gzip
import hashlib
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests
import urllib3

from ..io import atomic_path, write_json

log = logging.getLogger("seqxai")

USER_AGENT = "seqxai/0.1 (python-requests; research workflow)"
RETRY_STATUS = {429, 500, 502, 503, 504}


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL and the last reason.

    ``status`` is the HTTP status of a non-retried client error (404, ...), else None.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def local_hint(option: str, what: str):
    """Add to a download that failed for lack of a connection (no HTTP answer, or only
    retried ones) where a local copy goes instead: offline compute nodes are common."""
    try:
        yield
    except DownloadError as exc:
        if exc.status is not None:  # the server answered (404, 400): no network problem
            raise
        raise DownloadError(
            f"{exc}\n  No network on this machine, or the server is down? Download {what} on a "
            f"machine with network and set {option} in the config (README: Troubleshooting).",
            status=exc.status) from exc


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


@dataclass
class RetryPolicy:
    """Attempts and waits: wait_k = min(max_backoff, backoff * 2**k) * (1 + jitter*U(-1, 1))."""

    attempts: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: float = 0.25
    max_retry_after: float = 600.0
    seed: int | None = 0


@dataclass
class Response:
    """A complete, decoded response."""

    url: str
    status: int
    headers: requests.structures.CaseInsensitiveDict
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self):
        return json.loads(self.content)

    @property
    def next_url(self) -> str | None:
        return next_link(self.headers.get("Link"))


def next_link(link_header: str | None) -> str | None:
    """The URL of ``rel="next"`` in an RFC 8288 Link header, or None."""
    if not link_header:
        return None
    for part in requests.utils.parse_header_links(link_header):
        if part.get("rel") == "next":
            return part.get("url")
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def expected_md5(headers) -> str | None:
    """Hex md5 the server states for the raw body (``x-goog-hash: md5=<b64>`` or Content-MD5)."""
    candidates = []
    for v in (headers.get("x-goog-hash") or "").split(","):
        v = v.strip()
        if v.startswith("md5="):
            candidates.append(v[4:])
    if headers.get("Content-MD5"):
        candidates.append(headers["Content-MD5"].strip())
    for b64 in candidates:
        try:
            digest = base64.b64decode(b64, validate=True)
        except ValueError:
            continue
        if len(digest) == 16:
            return digest.hex()
    return None


def _decode(raw: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(raw)
    if encoding == "deflate":
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return zlib.decompress(raw, -zlib.MAX_WBITS)
    raise _Retryable(f"unsupported Content-Encoding {encoding!r}")


class Fetcher:
    """HTTP GETs with timeouts, retries, verification and a download cache.

    ``sleep`` and ``clock`` are injectable so that tests run the real retry logic without
    real waits.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
        retry: RetryPolicy | None = None,
        min_interval: float = 0.0,
        user_agent: str = USER_AGENT,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        chunk_size: int = 1 << 16,
    ):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.min_interval = min_interval
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        self.sleep, self.clock = sleep, clock
        self.chunk_size = chunk_size
        self._rng = random.Random(self.retry.seed)
        self._last_request: float | None = None
        self.waits: list[float] = []  # every retry wait, for logs and tests
        self.requests_made = 0

    # ------------------------------------------------------------------ core
    def _pace(self) -> None:
        if self.min_interval > 0 and self._last_request is not None:
            gap = self.clock() - self._last_request
            if gap < self.min_interval:
                self.sleep(self.min_interval - gap)
        self._last_request = self.clock()

    def _backoff(self, attempt: int) -> float:
        p = self.retry
        base = min(p.max_backoff, p.backoff * (2**attempt))
        return max(0.0, base * (1.0 + p.jitter * self._rng.uniform(-1.0, 1.0)))

    def _once(self, url, params, headers, sink) -> tuple[int, requests.structures.CaseInsensitiveDict, str]:
        """One attempt: stream the raw body into ``sink``; verify length and md5."""
        self._pace()
        self.requests_made += 1
        try:
            r = self.session.get(url, params=params, headers=headers, stream=True, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        with r:
            if r.status_code in RETRY_STATUS:
                wait = None
                if r.status_code in (429, 503):
                    wait = parse_retry_after(r.headers.get("Retry-After"))
                raise _Retryable(f"HTTP {r.status_code} {r.reason}", wait)
            if r.status_code >= 400:
                snippet = r.content[:300].decode("utf-8", "replace")
                raise DownloadError(
                    f"GET {r.url} failed: HTTP {r.status_code} {r.reason}: {snippet}", status=r.status_code
                )
            md5 = hashlib.md5()
            n = 0
            try:
                for chunk in r.raw.stream(self.chunk_size, decode_content=False):
                    md5.update(chunk)
                    n += len(chunk)
                    sink(chunk)
            except (
                urllib3.exceptions.HTTPError,
                requests.exceptions.ChunkedEncodingError,
                requests.ConnectionError,
                requests.Timeout,
                OSError,
            ) as exc:
                raise _Retryable(f"connection broken after {n} bytes: {type(exc).__name__}: {exc}") from exc
            declared = r.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != n:
                raise _Retryable(f"incomplete body: {n} of {declared} bytes (Content-Length)")
            want = expected_md5(r.headers)
            if want and want != md5.hexdigest():
                raise _Retryable(f"md5 mismatch: got {md5.hexdigest()}, server states {want}")
            return r.status_code, r.headers, r.url

    def _with_retries(self, url: str, attempt_fn):
        p = self.retry
        last = ""
        for attempt in range(p.attempts):
            try:
                return attempt_fn()
            except _Retryable as exc:
                last = str(exc)
                if attempt == p.attempts - 1:
                    break
                wait = self._backoff(attempt)
                if exc.wait is not None:
                    wait = max(wait, min(exc.wait, p.max_retry_after))
                log.warning("GET %s: %s; retry %d/%d in %.2f s", url, last, attempt + 1, p.attempts - 1, wait)
                self.waits.append(wait)
                self.sleep(wait)
        raise DownloadError(f"GET {url} failed after {p.attempts} attempts: {last}")

    # ------------------------------------------------------------------ API
    def get(
        self,
        url: str,
        params: dict | None = None,
        headers: dict | None = None,
        validate: Callable[[Response], None] | None = None,
    ) -> Response:
        """GET a whole body into memory (retried, verified, decoded).

        ``validate(response)`` may raise ValueError for a body that arrived complete at the
        HTTP level but is unusable (truncated JSON/TSV); that is retried like a dropped connection.
        """

        def attempt():
            buf = bytearray()
            status, hdrs, final = self._once(url, params, headers, buf.extend)
            try:
                body = _decode(bytes(buf), hdrs.get("Content-Encoding"))
            except (OSError, EOFError, zlib.error) as exc:
                raise _Retryable(f"undecodable {hdrs.get('Content-Encoding')} body: {exc}") from exc
            resp = Response(final, status, hdrs, body)
            if validate is not None:
                try:
                    validate(resp)
                except ValueError as exc:
                    raise _Retryable(f"invalid body: {exc}") from exc
            return resp

        return self._with_retries(url, attempt)

    def download(
        self,
        url: str,
        dest: str | Path,
        params: dict | None = None,
        md5: str | None = None,
        size: int | None = None,
        validate: Callable[[Path], None] | None = None,
    ) -> Path:
        """Fetch ``url`` to ``dest`` unless ``dest`` already exists (cache hit).

        The body goes to a temporary file beside ``dest``; Content-Length and the server's md5
        are checked on the raw bytes, a content-encoded body is decoded (unless ``dest`` ends
        in ``.gz`` and the encoding is gzip), then the caller's ``md5``/``size`` of the final
        file and ``validate(path)`` are checked, and only then is it renamed to ``dest``.
        A ``dest.meta.json`` sidecar records the URL, retrieval time and service headers.
        """
        dest = Path(dest)
        if dest.exists():
            bad = _cached_problem(dest, md5, size, validate)
            if bad is None:
                log.info("cached: %s (not fetched again)", dest)
                return dest
            # a file cached by an older version without this check, or damaged since: fetch again
            log.warning("cached %s fails its check (%s); removed, fetching %s again", dest, bad, url)
            dest.unlink()
            dest.with_name(dest.name + ".meta.json").unlink(missing_ok=True)

        def attempt():
            with atomic_path(dest, suffix=".part") as tmp:
                with open(tmp, "wb") as fh:
                    status, hdrs, final = self._once(url, params, None, fh.write)
                enc = (hdrs.get("Content-Encoding") or "").lower()
                if enc and not (enc in ("gzip", "x-gzip") and dest.name.endswith(".gz")):
                    try:
                        tmp.write_bytes(_decode(tmp.read_bytes(), enc))
                    except (OSError, EOFError, zlib.error) as exc:
                        raise _Retryable(f"undecodable {enc} body: {exc}") from exc
                self._verify_file(tmp, md5, size, validate)
                write_json(dest.with_name(dest.name + ".meta.json"), _meta(final, status, hdrs, tmp))
            log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
            return dest

        return self._with_retries(url, attempt)

    @staticmethod
    def _verify_file(path: Path, md5: str | None, size: int | None, validate) -> None:
        if size is not None and path.stat().st_size != size:
            raise _Retryable(f"size {path.stat().st_size} != expected {size}")
        if md5 is not None:
            h = hashlib.md5(path.read_bytes()).hexdigest()
            if h != md5.lower():
                raise _Retryable(f"md5 {h} != expected {md5}")
        if validate is not None:
            try:
                validate(path)
            except ValueError as exc:
                raise _Retryable(f"invalid file: {exc}") from exc

    def pages(
        self,
        url: str,
        params: dict | None = None,
        validate: Callable[[Response], None] | None = None,
        cache_key: str | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Response]:
        """Follow ``Link: <...>; rel="next"`` from ``url`` until a page has no next link.

        With a cache directory and ``cache_key``, each page is stored under
        ``cache_dir/pages/<cache_key>/NNNNN.body`` (+ ``.meta.json`` with its headers), so a
        rerun replays finished pages and resumes an interrupted walk at the first missing page.
        """
        page_dir = self.cache_dir / "pages" / cache_key if (self.cache_dir and cache_key) else None
        next_url, next_params, i = url, params, 0
        while next_url is not None:
            i += 1
            if max_pages is not None and i > max_pages:
                break
            resp = None
            if page_dir is not None:
                resp = _load_page(page_dir, i)
            if resp is not None and validate is not None:
                try:
                    validate(resp)
                except ValueError as exc:  # a page cached before the check existed: fetch again
                    log.warning("cached page %d of %s fails its check (%s); fetching it again", i, url, exc)
                    resp = None
            if resp is None:
                resp = self.get(next_url, params=next_params, validate=validate)
                if page_dir is not None:
                    _store_page(page_dir, i, resp)
            yield resp
            next_url, next_params = resp.next_url, None


def _cached_problem(path: Path, md5, size, validate) -> str | None:
    """Why a cached file fails the checks a fresh download must pass, or None."""
    try:
        Fetcher._verify_file(path, md5, size, validate)
    except _Retryable as exc:
        return str(exc)
    return None


def _meta(url, status, headers, path: Path) -> dict:
    keep = {
        k: v
        for k, v in headers.items()
        if k.lower().startswith(("x-uniprot", "x-total", "last-modified", "etag", "date", "x-goog-hash", "link"))
        or k.lower() in ("content-type",)
    }
    return {
        "url": url,
        "status": status,
        "retrieved": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": path.stat().st_size if path.exists() else None,
        "md5": hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else None,
        "headers": keep,
    }


def _store_page(page_dir: Path, i: int, resp: Response) -> None:
    body = page_dir / f"{i:05d}.body"
    with atomic_path(body) as tmp:
        tmp.write_bytes(resp.content)
    # the meta file is written last: a page counts as cached only when both exist
    write_json(
        page_dir / f"{i:05d}.meta.json",
        {"url": resp.url, "status": resp.status, "headers": dict(resp.headers)},
    )


def _load_page(page_dir: Path, i: int) -> Response | None:
    body, meta = page_dir / f"{i:05d}.body", page_dir / f"{i:05d}.meta.json"
    if not (body.exists() and meta.exists()):
        return None
    m = json.loads(meta.read_text())
    hdrs = requests.structures.CaseInsensitiveDict(m["headers"])
    log.info("cached page %d: %s", i, m["url"])
    return Response(m["url"], m["status"], hdrs, body.read_bytes())


def cache_key(*parts) -> str:
    """A short stable key for a request (URL + sorted params)."""
    h = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return h[:16]


def make_fetcher(http_cfg: dict | None, cache_dir: str | Path | None = None) -> Fetcher:
    """A Fetcher from the config's ``data.http`` section (timeouts, retries, pacing)."""
    cfg = dict(http_cfg or {})
    timeout = cfg.get("timeout", [10.0, 120.0])
    if isinstance(timeout, (int, float)):
        timeout = [timeout, timeout]
    retry = RetryPolicy(
        attempts=int(cfg.get("attempts", 6)),
        backoff=float(cfg.get("backoff", 1.0)),
        max_backoff=float(cfg.get("max_backoff", 60.0)),
        jitter=float(cfg.get("jitter", 0.25)),
        max_retry_after=float(cfg.get("max_retry_after", 600.0)),
        seed=cfg.get("seed", 0),
    )
    return Fetcher(
        cache_dir=cache_dir,
        timeout=(float(timeout[0]), float(timeout[1])),
        retry=retry,
        min_interval=float(cfg.get("min_interval", 0.34)),
        user_agent=cfg.get("user_agent", USER_AGENT),
    )
