"""TSS data for the DNA model: tokens, labels, the genome split into blocks, and the windows
cut inside them.

Conventions
-----------
- Tokens: A=0, C=1, G=2, T=3, N=4, PAD=5. Both strands are read 5'->3': the "-" strand is
  the reverse complement, so oriented index ``i`` on "-" is genome index ``L - 1 - i``.
- Labels: a TSS at oriented 0-based index ``t`` labels position ``t + label_offset``
  (default 20), so the predicting position has seen the whole promoter upstream.
- Split by genome position (0-based half-open genome intervals): train ``[0, a)``,
  valid ``[a, b)``, test ``[b, L)`` with ``L - b = test_fraction * L`` and
  ``b - a = valid_fraction * L``. On "-" the same genome blocks are used; windows are cut
  inside a block and never cross its boundary.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .io import DataError

PAD = 5
N_TOKENS = 6
_LUT = np.full(256, 4, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = _i


def tokenize(seq: str) -> np.ndarray:
    """Genome string -> token codes (A,C,G,T = 0..3, anything else = N = 4)."""
    return _LUT[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def oriented_tokens(seq: str) -> dict[str, np.ndarray]:
    """Both strands read 5'->3': ``{"+": tokens, "-": reverse complement tokens}``."""
    fwd = tokenize(seq)
    rev = fwd[::-1].copy()
    acgt = rev < 4
    rev[acgt] = 3 - rev[acgt]
    return {"+": fwd, "-": rev}


def check_tss(tss: pd.DataFrame, genome: dict[str, str], source: str = "tss") -> pd.DataFrame:
    """Validate TSS rows against the genome; raise DataError naming file, record, field."""
    for i, row in enumerate(tss.itertuples(index=False)):
        rid = getattr(row, "tss_id", i)
        if row.chrom not in genome:
            raise DataError(f"{source}: record {rid}: field 'chrom' = '{row.chrom}' is not in the genome "
                            f"(records: {sorted(genome)[:5]})")
        if row.strand not in ("+", "-"):
            raise DataError(f"{source}: record {rid}: field 'strand' = '{row.strand}' (expected '+' or '-')")
        if not 1 <= int(row.position) <= len(genome[row.chrom]):
            raise DataError(f"{source}: record {rid}: field 'position' = {row.position} lies outside "
                            f"{row.chrom} (1..{len(genome[row.chrom])})")
    return tss


def single_chromosome(genome: dict[str, str], tss: pd.DataFrame, source: str = "tss") -> tuple[str, str]:
    """The one chromosome of ``genome`` (name, sequence) after checking the TSS rows against it;
    the DNA model, its probe and its attribution read one circular bacterial chromosome."""
    if len(genome) != 1:
        raise DataError(f"genome: expected exactly one chromosome record, got {len(genome)}: {list(genome)[:5]}")
    check_tss(tss, genome, source)
    return next(iter(genome.items()))


def oriented_tss_index(tss: pd.DataFrame, length: int) -> dict[str, np.ndarray]:
    """0-based oriented index of each TSS per strand: ``+``: position-1; ``-``: L - position."""
    pos = tss.position.to_numpy(np.int64)
    plus = tss.strand.to_numpy() == "+"
    return {"+": pos[plus] - 1, "-": length - pos[~plus]}


def tss_subset(tss: pd.DataFrame, tss_set: str, split: dict | None, key: str) -> pd.DataFrame:
    """The TSSs of ``tss_set``: ``all``, or ``heldout`` = those inside the valid and test genome
    blocks of ``split`` (0-based half-open, as stored in model.pt). ``key`` names the config
    entry in errors."""
    tss = tss.reset_index(drop=True)
    if tss_set == "all":
        return tss
    if tss_set != "heldout":
        raise DataError(f"{key}: '{tss_set}' (expected 'all' or 'heldout')")
    if split is None:
        raise DataError(f"{key} = 'heldout' needs the split blocks stored in model.pt")
    p0 = tss.position.to_numpy() - 1
    keep = np.zeros(len(tss), bool)
    for name in ("valid", "test"):
        a, b = split[name]
        keep |= (p0 >= a) & (p0 < b)
    return tss[keep].reset_index(drop=True)


def make_labels(tss: pd.DataFrame, length: int, label_offset: int) -> dict[str, np.ndarray]:
    """Per-strand binary labels ``y[i] = 1`` iff a TSS sits at oriented ``i - label_offset``."""
    out = {}
    for strand, idx in oriented_tss_index(tss, length).items():
        y = np.zeros(length, dtype=np.float32)
        j = idx + label_offset
        y[j[(j >= 0) & (j < length)]] = 1.0
        out[strand] = y
    return out


def split_blocks(length: int, test_fraction: float, valid_fraction: float) -> dict[str, tuple[int, int]]:
    """Contiguous genome blocks ``{split: (start, end)}`` (0-based, half-open):
    train ``[0, a)``, valid ``[a, b)``, test ``[b, L)``."""
    if not (0 < test_fraction < 1 and 0 < valid_fraction < 1 and test_fraction + valid_fraction < 1):
        raise DataError(f"dna.split: fractions test={test_fraction} valid={valid_fraction} must be in "
                        "(0, 1) and sum below 1")
    b = length - int(round(test_fraction * length))
    a = b - int(round(valid_fraction * length))
    blocks = {"train": (0, a), "valid": (a, b), "test": (b, length)}
    for name, (s, e) in blocks.items():
        if e <= s:
            raise DataError(f"dna.split: the {name} block [{s}, {e}) of a {length}-nt genome is empty "
                            f"(test_fraction={test_fraction}, valid_fraction={valid_fraction})")
    return blocks


def check_split_labels(data: dict, blocks: dict, source: str = "tss") -> None:
    """Fail before training when a split has no scored position or no TSS label: its ROC/PR
    AUC would be undefined (the validation split also picks the best epoch)."""
    for name, (_x, y, m) in data.items():
        s, e = blocks[name]
        if not m.any():
            raise DataError(f"dna.split: the {name} block [{s}, {e}) has no scored position")
        if not y[m].any():
            raise DataError(f"{source}: no TSS label falls in the {name} block [{s}, {e}) (0-based genome "
                            f"positions, both strands): change dna.split fractions or the TSS set")


def oriented_block(block: tuple[int, int], length: int, strand: str) -> tuple[int, int]:
    """Genome block ``[s, e)`` in oriented coordinates of ``strand`` (half-open)."""
    s, e = block
    return (s, e) if strand == "+" else (length - e, length - s)


def window_spans(start: int, end: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over an oriented block ``[start, end)``: ``(input_start, score_start, score_end)``.

    The first window reads ``[start, start + context + stride)`` and scores all of it (the
    first positions of a block have only the context the block offers); each later window
    scores the next ``stride`` positions and reads the ``context`` positions before them.
    Every position of the block is scored exactly once; no window leaves the block.
    """
    W = context + stride
    spans = [(start, start, min(start + W, end))]
    for p in range(start + W, end, stride):
        spans.append((p - context, p, min(p + stride, end)))
    return [sp for sp in spans if sp[2] > sp[1]]


def make_windows(tokens: dict[str, np.ndarray], labels: dict[str, np.ndarray], block: tuple[int, int],
                 context: int, stride: int):
    """Cut one genome split block (both strands) into windows of length ``W = context + stride``
    (see :func:`window_spans`); short windows are right-padded with PAD (never scored).
    Returns ``x[window, W]`` (int64), ``y[window, W]`` (float32), ``scored[window, W]`` (bool).
    """
    W = context + stride
    L = len(next(iter(tokens.values())))
    xs, ys, ms = [], [], []
    for strand in ("+", "-"):
        s, e = oriented_block(block, L, strand)
        for i0, k0, k1 in window_spans(s, e, context, stride):
            x = np.full(W, PAD, dtype=np.int64)
            y = np.zeros(W, dtype=np.float32)
            m = np.zeros(W, dtype=bool)
            x[: k1 - i0] = tokens[strand][i0:k1]
            y[: k1 - i0] = labels[strand][i0:k1]
            m[k0 - i0 : k1 - i0] = True
            xs.append(x), ys.append(y), ms.append(m)
    return np.stack(xs), np.stack(ys), np.stack(ms)
