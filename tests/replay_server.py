"""A loopback (127.0.0.1) HTTP server that replays recorded responses, with fault injection.

Routes are keyed by path and the exact query parameters (order-insensitive). A route serves
its recorded status, headers and body; faults queued on a route are served first, one per
request, then the recorded response:

- ``"drop"``      chunked body, connection closed in the middle of a chunk
- ``"short"``     ``Content-Length`` of the full body, only half of it sent, then closed
- ``"truncated"`` half the body with no Content-Length and ``Connection: close`` (looks complete
                  at the HTTP level; only the payload check can tell)
- ``"429"``       ``429 Too Many Requests`` with ``Retry-After`` (seconds)
- ``"503"``       ``503 Service Unavailable`` (optionally with ``Retry-After``)
- ``"500"``, ``"502"``, ``"504"``  that server error
- ``"html"``      ``200 OK`` with an HTML maintenance page instead of the recorded body
- ``"rows"``      the body cut after the last newline of its first half, no Content-Length,
                  ``Connection: close``: a table that ends cleanly on a row boundary
- ``"stall"``     headers sent, then ``stall`` seconds of silence before the body (a read timeout)

Recorded fixtures keep ``Content-Encoding: gzip`` but store the decoded body; the server
re-gzips such bodies (deterministically) and sets a fresh Content-Length, or serves the exact
on-the-wire bytes when given (``raw_gzip``). Absolute URLs in ``Link`` headers are rewritten to
this server so that pagination stays on the loopback interface.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class Route:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    gzip: bool = False
    raw_gzip: bytes | None = None
    faults: list[dict] = field(default_factory=list)
    hits: int = 0
    gz_cache: bytes | None = None


def _key(path: str, query: str | dict | None) -> tuple:
    if isinstance(query, dict):
        items = [(k, str(v)) for k, v in query.items()]
    else:
        items = parse_qsl(query or "", keep_blank_values=True)
    return (path, tuple(sorted(items)))


class ReplayServer:
    def __init__(self):
        self.routes: dict[tuple, Route] = {}
        self.log: list[str] = []
        self.stall = 1.0  # seconds a "stall" fault keeps silent
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server._handle(self)

            def do_HEAD(self):
                server._handle(self, head=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ---------------------------------------------------------------- setup
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path, body: bytes | str, headers=(), status=200, query=None, raw_gzip=None) -> Route:
        if isinstance(body, str):
            body = body.encode()
        headers = [(k, self._rewrite(v) if k.lower() == "link" else v) for k, v in headers]
        gz = any(k.lower() == "content-encoding" and "gzip" in v.lower() for k, v in headers)
        route = Route(status, headers, body, gzip=gz, raw_gzip=raw_gzip)
        self.routes[_key(path, query)] = route
        return route

    def add_recording(self, meta_path: Path, body_path: Path | None = None, raw_gzip: Path | None = None) -> Route:
        """Serve a fixture recorded as ``X.meta.json`` (+ body) at its original path and query."""
        meta = json.loads(Path(meta_path).read_text())
        if body_path is None:
            name = meta.get("body_file")
            body_path = Path(meta_path).with_name(name) if name else Path(str(meta_path)[: -len(".meta.json")])
        parts = urlsplit(meta["url"])
        return self.add(
            parts.path,
            Path(body_path).read_bytes(),
            headers=[tuple(h) for h in meta["headers"]],
            status=meta.get("status_code", 200),
            query=parts.query,
            raw_gzip=Path(raw_gzip).read_bytes() if raw_gzip else None,
        )

    def fault(self, path, kind: str, n: int = 1, query=None, retry_after: str | None = None) -> None:
        route = self.routes[_key(path, query)]
        route.faults.extend({"kind": kind, "retry_after": retry_after} for _ in range(n))

    def _rewrite(self, value: str) -> str:
        return re.sub(r"https?://[^/>]+", self.base, value)

    # ---------------------------------------------------------------- serve
    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False) -> None:
        parts = urlsplit(h.path)
        self.log.append(h.path)
        route = self.routes.get(_key(parts.path, parts.query))
        if route is None:
            self._send(h, 404, [("Content-Type", "text/plain")], b"no recording for " + h.path.encode(), head)
            return
        route.hits += 1
        fault = route.faults.pop(0) if route.faults else None
        kind = fault["kind"] if fault else None
        if kind in ("500", "502", "504"):
            self._send(h, int(kind), [("Content-Type", "text/plain")], b"injected fault", head)
            return
        if kind == "html":
            page = (b"<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head>"
                    b"<body><h1>Down for maintenance</h1></body></html>\n")
            self._send(h, 200, [("Content-Type", "text/html; charset=utf-8")], page, head)
            return
        if kind in ("429", "503"):
            hdrs = [("Content-Type", "text/plain")]
            if fault["retry_after"] is not None:
                hdrs.append(("Retry-After", fault["retry_after"]))
            self._send(h, int(kind), hdrs, b"injected fault", head)
            return

        # a recorded md5 (x-goog-hash) describes the recorded wire bytes: keep it only with them
        headers = [
            (k, v)
            for k, v in route.headers
            if k.lower() not in HOP_HEADERS and (k.lower() != "x-goog-hash" or route.raw_gzip is not None)
        ]
        payload = route.body
        if route.gzip:
            if route.raw_gzip is not None:
                payload = route.raw_gzip
            else:
                if route.gz_cache is None:
                    route.gz_cache = gzip.compress(route.body, compresslevel=1, mtime=0)
                payload = route.gz_cache
            headers.append(("Content-Encoding", "gzip"))

        h.send_response(route.status)
        for k, v in headers:
            h.send_header(k, v)
        if kind == "drop":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            half = payload[: max(1, len(payload) // 2)]
            h.wfile.write(f"{len(payload):x}\r\n".encode() + half)  # chunk announced whole, cut short
            h.wfile.flush()
            h.close_connection = True
            return
        if kind == "short":
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if kind == "stall":
            import time

            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.flush()
            time.sleep(self.stall)
            with contextlib.suppress(OSError):
                h.wfile.write(payload)
            h.close_connection = True
            return
        if kind == "rows":
            h.send_header("Connection", "close")
            h.end_headers()
            cut = payload[: len(payload) // 2]
            h.wfile.write(cut[: cut.rfind(b"\n") + 1])
            h.close_connection = True
            return
        if kind == "truncated":
            h.send_header("Connection", "close")
            h.end_headers()
            if not head:
                h.wfile.write(payload[: len(payload) // 2])
            h.close_connection = True
            return
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if not head:
            h.wfile.write(payload)

    @staticmethod
    def _send(h, status, headers, body, head):
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)


def forbid_network(monkeypatch) -> None:
    """Make any name lookup other than the loopback interface fail inside a test."""
    import socket

    real = socket.getaddrinfo

    def guard(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test tried to reach {host!r}: only 127.0.0.1 is allowed")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guard)
