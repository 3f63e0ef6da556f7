"""The Gene Ontology, ``go-basic.obo`` of a pinned release, from the GO release archive or a local file.

``data.go.url`` is a template with ``{release}`` (default
``https://release.geneontology.org/{release}/ontology/go-basic.obo``). The download is cached under
``<cache_dir>/go/<release>/go-basic.obo`` like every download (temporary name, verified, renamed;
a ``.meta.json`` sidecar records URL, time and headers) and is checked before it is renamed into
place: an OBO header, and ``data-version: releases/<release>`` when the file states one (the
release archive's files do). A local file (``data.go.local``) of another release is used as
given, with a warning naming both releases.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..io import DataError, atomic_path
from . import validate as formats
from .http import Fetcher

log = logging.getLogger("seqxai")

GO_BASIC_URL = "https://release.geneontology.org/{release}/ontology/go-basic.obo"


def obo_header(path: str | Path, max_lines: int = 200) -> dict[str, str]:
    """The header tags of an OBO file (the lines before the first stanza)."""
    header: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh):
            line = line.strip()
            if line.startswith("[") or i >= max_lines:
                break
            tag, sep, value = line.partition(":")
            if sep:
                header.setdefault(tag.strip(), value.strip())
    return header


def release_of(header: dict[str, str]) -> str | None:
    """The release date in ``data-version: releases/2024-06-17`` (or the bare value), or None."""
    v = header.get("data-version")
    if not v:
        return None
    return v.split("/", 1)[1] if v.startswith("releases/") else v


def check_obo_release(path: str | Path, release: str | None) -> None:
    """ValueError unless ``path`` is an OBO file whose stated release (if any) is ``release``."""
    header = obo_header(path)
    if "format-version" not in header:
        with open(path, encoding="utf-8", errors="replace") as fh:
            start = fh.read(80)
        raise ValueError(f"not an OBO file (no 'format-version' header line): {start!r}")
    stated = release_of(header)
    if release and stated and stated != str(release):
        raise ValueError(f"data-version '{header['data-version']}' is not the pinned release '{release}'")


def fetch_go_basic(fetcher: Fetcher, release: str, cache_dir: str | Path, url: str = GO_BASIC_URL) -> Path:
    """Download go-basic.obo of ``release`` (cached; verified before it is renamed into place)."""
    if "{release}" not in url:
        raise DataError(f"data.go.url must contain '{{release}}', got {url!r}")
    dest = Path(cache_dir) / "go" / str(release) / "go-basic.obo"
    return fetcher.download(url.format(release=release), dest,
                            validate=lambda p: (formats.obo(p), check_obo_release(p, release)))


def run_go(cfg: dict, http_cfg: dict | None, cache_dir, out_obo) -> None:
    """Rule entry point: the ``data.go`` config section -> the ontology file of the run."""
    from .http import local_hint, make_fetcher

    cfg = dict(cfg or {})
    release = str(cfg.get("release") or "")
    if cfg.get("local"):
        path = Path(cfg["local"])
        if not path.is_file():
            raise DataError(f"data.go.local: file not found: {path}")
        try:
            check_obo_release(path, None)
        except ValueError as exc:
            raise DataError(f"data.go.local: {path}: {exc}") from exc
        stated = release_of(obo_header(path))
        if release and stated and stated != release:
            log.warning("GO: local file %s is release %s, not the configured release %s", path, stated, release)
    else:
        if not release:
            raise DataError("data.go.release: a release date (e.g. '2024-06-17') is needed to download "
                            "go-basic.obo, or set data.go.local")
        with local_hint("data.go.local", f"go-basic.obo of release {release}"):
            path = fetch_go_basic(make_fetcher(http_cfg, cache_dir), release, cache_dir,
                                  cfg.get("url") or GO_BASIC_URL)
    with atomic_path(out_obo, suffix=".obo") as tmp:
        shutil.copyfile(path, tmp)
    log.info("GO: %s (release %s) -> %s", path, release_of(obo_header(path)) or "not stated", out_obo)
