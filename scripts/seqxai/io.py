"""File reading and writing at the edges: atomic writes, schema-checked Parquet, FASTA, logs.

Every writer writes to a temporary name beside the target and renames it into place,
so an interrupted job never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .tables import OPTIONAL_COLUMNS, SCHEMAS

log = logging.getLogger("seqxai")


class DataError(ValueError):
    """Bad input data; the message names the file, record and field."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it onto ``path`` only on success, so
    that the folder is complete or absent (an existing ``path`` is replaced)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def write_table(path, df: pd.DataFrame, table: str | None = None) -> None:
    """Write ``df`` as Parquet, cast to the named schema of :mod:`seqxai.tables` when given
    (plus the table's optional columns that ``df`` holds)."""
    if table is not None:
        schema = SCHEMAS[table]
        missing = [n for n in schema.names if n not in df.columns]
        if missing:
            raise DataError(f"{path}: table '{table}' lacks columns {missing}")
        optional = OPTIONAL_COLUMNS.get(table)
        if optional is not None:
            schema = pa.schema(list(schema) + [f for f in optional if f.name in df.columns])
        arrow = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    else:
        arrow = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(arrow, tmp)


def read_table(path, table: str | None = None) -> pd.DataFrame:
    """Read a Parquet table; with ``table`` check it carries that schema's columns."""
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    if table is not None:
        missing = [n for n in SCHEMAS[table].names if n not in df.columns]
        if missing:
            raise DataError(f"{path}: expected a '{table}' table, missing columns {missing}")
    return df


def read_arrow(path) -> pa.Table:
    """Read a Parquet table as Arrow (no pandas copy); a bad file is a DataError naming it."""
    try:
        return pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def open_parquet(path) -> pq.ParquetFile:
    """Open a Parquet file for streaming (``iter_batches``); a bad file is a DataError naming it.

    Read buffered, without pre-buffering: pyarrow's default pre-buffers every selected column
    chunk of the batches' row groups, which held the whole 244 MB file of
    benchmarks/gather_memory.py in memory; this holds about one page per column (+67 MB).
    """
    try:
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def read_fasta(path) -> dict[str, str]:
    """Read a (possibly gzipped) FASTA file into {record id: upper-case sequence}."""
    import gzip
    import zlib

    opener = gzip.open if str(path).endswith(".gz") else open
    records: dict[str, list[str]] = {}
    name = None
    lineno = 0
    try:
        with opener(path, "rt") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    name = line[1:].split()[0]
                    if name in records:
                        raise DataError(f"{path}:{lineno}: duplicate FASTA record '{name}'")
                    records[name] = []
                elif name is None:
                    raise DataError(f"{path}:{lineno}: sequence line before the first '>' header")
                else:
                    records[name].append(line.upper())
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # gzip reads ahead: the last good line is near, not exactly at, the damage.
        raise DataError(f"{path}: truncated or corrupt gzip file (read up to line {lineno} of "
                        f"record '{name}'; {exc}); download it again") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text FASTA file ({exc})") from exc
    if not records:
        raise DataError(f"{path}: no FASTA records (an empty file?)")
    return {k: "".join(v) for k, v in records.items()}


def write_fasta(path, records: dict[str, str], width: int = 80) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        for name, seq in records.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")


def optional_input(named_input, name: str):
    """The path of an optional rule input ``name``, or None: Snakemake hands an input that an
    input function left out as an empty list (or leaves it absent)."""
    value = named_input.get(name)
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def setup_logging(log_path: str | None = None) -> logging.Logger:
    """Route logging and stderr of a rule script to its Snakemake log file."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", buffering=1)
        sys.stderr = stream
    else:
        stream = sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return log


class Progress:
    """Periodic progress lines with counts and rates, for logs (no terminal needed)."""

    def __init__(self, total: int, what: str, every: float = 10.0, logger=None):
        import time

        self.total, self.what, self.every = total, what, every
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.log = logger or log

    def update(self, n: int = 1) -> None:
        import time

        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.log.info(
                "%s: %d/%d (%.1f/s, eta %.0f s)", self.what, self.done, self.total, rate, eta
            )
            self.last = now


def non_finite_values(obj, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key path, value) of every NaN/inf float inside nested dicts and lists: JSON has
    no NaN, so metrics files are checked with this before they are written."""
    if isinstance(obj, dict):
        return [pv for k, v in obj.items() for pv in non_finite_values(v, f"{prefix}{k}.")]
    if isinstance(obj, (list, tuple)):
        return [pv for i, v in enumerate(obj) for pv in non_finite_values(v, f"{prefix}{i}.")]
    if isinstance(obj, (float, np.floating)) and not np.isfinite(obj):
        return [(prefix.rstrip("."), float(obj))]
    return []
