"""Demo genome: a random chromosome with planted sigma-70 promoters and TF binding sites.

Everything is deterministic from one integer seed (``numpy.random.default_rng(seed)``).

Coordinates
-----------
- Inside this module sequences are ``uint8`` code arrays (A=0, C=1, G=2, T=3), 0-based.
- "Oriented" coordinates read a strand 5'->3': on "+" the oriented index of genome index
  ``g`` is ``g``; on "-" it is ``L - 1 - g`` and the base is the complement.
- Promoter element offsets are relative to the TSS in oriented coordinates:
  ``offset = oriented index - oriented index of the TSS`` (TSS = 0, -1 = first base
  upstream; for upstream positions this equals biological numbering, which has no 0).
- Output tables follow :mod:`seqxai.tables`: 1-based inclusive genome coordinates.

Promoter model (per TSS, in oriented coordinates)
-------------------------------------------------
    [-35 box] -- spacer (15..19 nt, uniform) -- [-10 box] -- gap -- TSS(+1)
The -10 box ends at offset ``minus10_end + j`` with TSS jitter ``j`` uniform in
``-tss_jitter..tss_jitter``; each box base is mutated with probability
``box_mutation_rate`` to one of the three other bases (0.2 -> 1.2 mismatches per 6-mer on
average). TFs are planted with probability ``fraction`` per promoter, centred at their
``centre`` offset, in a random orientation unless palindromic, with per-base mutation
rate ``mutation_rate``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .io import DataError, write_fasta, write_table

ALPHABET = "ACGT"
_CODE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(ALPHABET):
    _CODE[ord(_c)] = _i
    _CODE[ord(_c.lower())] = _i

DEFAULT_DEMO = {
    "chrom": "demo_chr",
    "genome_length": 160_000,
    "gc": 0.5,
    "n_promoters": 500,
    "minus35": "TTGACA",
    "minus10": "TATAAT",
    "spacer": [15, 19],
    "minus10_end": -7,
    "tss_jitter": 1,
    "box_mutation_rate": 0.2,
    "tfs": [
        {"name": "PalR", "consensus": "ATGTGACGTCACAT", "centre": -65, "fraction": 0.4,
         "mutation_rate": 0.1},
        {"name": "RepB", "consensus": "GCCGATTTAC", "centre": -48, "fraction": 0.4,
         "mutation_rate": 0.1},
    ],
}


def encode(seq: str) -> np.ndarray:
    """Nucleotide string -> uint8 codes A=0,C=1,G=2,T=3 (any other letter -> 4)."""
    codes = _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
    codes[codes == 255] = 4
    return codes


def decode(codes: np.ndarray) -> str:
    """uint8 codes -> string ("N" for codes >= 4)."""
    lut = np.frombuffer(b"ACGTN", dtype=np.uint8)
    return lut[np.minimum(codes, 4)].tobytes().decode()


def revcomp_codes(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of a code array (N stays N)."""
    out = codes[::-1].copy()
    acgt = out < 4
    out[acgt] = 3 - out[acgt]
    return out


def revcomp(seq: str) -> str:
    return decode(revcomp_codes(encode(seq)))


def is_palindrome(seq: str) -> bool:
    return revcomp(seq) == seq.upper()


def mutate(codes: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Replace each base with probability ``rate`` by one of the 3 other bases (uniform)."""
    out = codes.copy()
    hit = rng.random(len(out)) < rate
    out[hit] = (out[hit] + rng.integers(1, 4, hit.sum())) % 4
    return out


def motif_frequencies(consensus: str, mutation_rate: float) -> np.ndarray:
    """Generating distribution of a planted motif: pfm[position, ACGT] with
    P(consensus base) = 1 - rate and P(each other base) = rate / 3."""
    codes = encode(consensus)
    pfm = np.full((len(codes), 4), mutation_rate / 3.0)
    pfm[np.arange(len(codes)), codes] = 1.0 - mutation_rate
    return pfm


def _check_demo(demo: dict) -> dict:
    cfg = {**DEFAULT_DEMO, **(demo or {})}
    for key in ("minus35", "minus10"):
        if not set(cfg[key].upper()) <= set(ALPHABET):
            raise DataError(f"dna.demo.{key}: '{cfg[key]}' is not an ACGT string")
    lo, hi = cfg["spacer"]
    if not 0 < lo <= hi:
        raise DataError(f"dna.demo.spacer: need 0 < min <= max, got {cfg['spacer']}")
    if not 0.0 < cfg["gc"] < 1.0:
        raise DataError(f"dna.demo.gc: must lie in (0, 1), got {cfg['gc']}")
    for tf in cfg["tfs"]:
        if not set(tf["consensus"].upper()) <= set(ALPHABET):
            raise DataError(f"dna.demo.tfs[{tf['name']}].consensus is not an ACGT string")
    return cfg


def promoter_footprint(cfg: dict) -> tuple[int, int]:
    """Smallest/largest TSS-relative offset any planted element can occupy (inclusive)."""
    j = cfg["tss_jitter"]
    lo = cfg["minus10_end"] - j - len(cfg["minus10"]) - cfg["spacer"][1] - len(cfg["minus35"]) + 1
    hi = 0
    for tf in cfg["tfs"]:
        w = len(tf["consensus"])
        start = tf["centre"] - (w - 1) // 2
        lo, hi = min(lo, start), max(hi, start + w - 1)
    return lo - 5, hi + 25  # margin; +20 room for the label offset downstream


def make_demo_genome(demo: dict | None = None, seed: int = 1):
    """Generate the demo chromosome and its annotations.

    Returns ``(genome, tss, tf_sites, tf_pfms, planted)``: ``genome`` {chrom: sequence},
    ``tss``/``tf_sites`` DataFrames in the :mod:`seqxai.tables` schemas (1-based inclusive),
    ``tf_pfms`` {tf name: pfm[position, ACGT] generating frequencies} and ``planted``, a
    DataFrame with one row per promoter (oriented 0-based TSS index, spacer, box offsets,
    box sequences as planted) used by tests and as provenance.
    """
    cfg = _check_demo(demo)
    rng = np.random.default_rng(seed)
    L, n = int(cfg["genome_length"]), int(cfg["n_promoters"])
    gc = float(cfg["gc"])
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    g = rng.choice(4, size=L, p=p).astype(np.uint8)

    lo, hi = promoter_footprint(cfg)
    span = hi - lo + 1
    slot = L // max(n, 1)
    if slot < span + 10:
        raise DataError(
            f"dna.demo: {n} promoters of footprint {span} nt do not fit in {L} nt "
            f"(need genome_length >= {n * (span + 10)})"
        )
    m10, m35 = encode(cfg["minus10"].upper()), encode(cfg["minus35"].upper())
    tf_codes = [encode(tf["consensus"].upper()) for tf in cfg["tfs"]]
    tss_rows, site_rows, planted = [], [], []
    for i in range(n):
        strand = "+" if rng.random() < 0.5 else "-"
        # oriented TSS index within slot i, far enough from both slot edges
        s0 = i * slot
        pos = int(rng.integers(s0 - lo + 5, s0 + slot - hi - 5))  # genome-frame slot position
        # the slot is defined on genome coordinates; convert to oriented for "-"
        t = pos if strand == "+" else L - 1 - (2 * s0 + slot - 1 - pos)
        # (for "-" the mirrored position inside the same slot keeps the footprint in the slot)
        jitter = int(rng.integers(-cfg["tss_jitter"], cfg["tss_jitter"] + 1))
        spacer = int(rng.integers(cfg["spacer"][0], cfg["spacer"][1] + 1))
        m10_end = cfg["minus10_end"] + jitter            # offset of the last -10 base
        m10_start = m10_end - len(m10) + 1
        m35_end = m10_start - spacer - 1
        m35_start = m35_end - len(m35) + 1
        box10, box35 = mutate(m10, cfg["box_mutation_rate"], rng), mutate(m35, cfg["box_mutation_rate"], rng)
        _plant(g, strand, t + m10_start, box10)
        _plant(g, strand, t + m35_start, box35)
        gpos = t if strand == "+" else L - 1 - t
        tss_id = f"demo_tss_{i:05d}"
        tss_rows.append((tss_id, cfg["chrom"], gpos + 1, strand, "Sigma70"))
        row = dict(tss_id=tss_id, strand=strand, oriented_tss=t, jitter=jitter, spacer=spacer,
                   minus10_start=m10_start, minus35_start=m35_start,
                   minus10_seq=decode(box10), minus35_seq=decode(box35))
        for _k, (tf, codes) in enumerate(zip(cfg["tfs"], tf_codes)):
            if rng.random() >= tf["fraction"]:
                continue
            site = mutate(codes, tf["mutation_rate"], rng)
            forward = is_palindrome(tf["consensus"]) or rng.random() < 0.5
            if not forward:
                site = revcomp_codes(site)
            start = tf["centre"] - (len(codes) - 1) // 2
            _plant(g, strand, t + start, site)
            o0, o1 = t + start, t + start + len(codes) - 1          # oriented, inclusive
            g0, g1 = (o0, o1) if strand == "+" else (L - 1 - o1, L - 1 - o0)
            site_strand = strand if forward else ("-" if strand == "+" else "+")
            site_rows.append((f"demo_site_{len(site_rows):05d}", tf["name"], cfg["chrom"],
                              g0 + 1, g1 + 1, site_strand))
            row[f"{tf['name']}_start"] = start
        planted.append(row)

    genome = {cfg["chrom"]: decode(g)}
    tss = pd.DataFrame(tss_rows, columns=["tss_id", "chrom", "position", "strand", "sigma"])
    sites = pd.DataFrame(site_rows, columns=["site_id", "tf", "chrom", "start", "end", "strand"])
    pfms = {tf["name"]: motif_frequencies(tf["consensus"].upper(), tf["mutation_rate"])
            for tf in cfg["tfs"]}
    return genome, tss, sites, pfms, pd.DataFrame(planted)


def _plant(g: np.ndarray, strand: str, oriented_start: int, codes: np.ndarray) -> None:
    """Write ``codes`` (read 5'->3' on ``strand``) at oriented index ``oriented_start``."""
    L = len(g)
    if strand == "+":
        g[oriented_start : oriented_start + len(codes)] = codes
    else:
        gs = L - oriented_start - len(codes)  # genome index of the element's last base
        g[gs : gs + len(codes)] = revcomp_codes(codes)


def write_demo_genome(demo: dict | None, seed: int, genome_path, tss_path, tf_sites_path,
                      tf_motifs_path, n_sites: int = 100) -> dict:
    """Generate the demo data and write genome FASTA, tss/tf_sites Parquet, TF MEME file.

    TF matrices are written as letter-probability matrices (their generating frequencies)
    with ``nsites=n_sites``. Returns a small summary dict (counts) for logging.
    """
    from .motifs import write_meme

    genome, tss, sites, pfms, planted = make_demo_genome(demo, seed)
    write_fasta(genome_path, genome)
    write_table(tss_path, tss, "tss")
    write_table(tf_sites_path, sites, "tf_sites")
    write_meme(tf_motifs_path, pfms, nsites=n_sites)
    return {
        "genome_length": sum(len(s) for s in genome.values()),
        "n_tss": len(tss),
        "n_tss_minus": int((tss.strand == "-").sum()),
        "n_tf_sites": {k: int(v) for k, v in sites.tf.value_counts().items()},
        "mean_spacer": float(planted.spacer.mean()),
    }
