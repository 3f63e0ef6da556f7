"""Sigma-70 reference matrices estimated from promoters, and Tomtom against column-shuffled decoys."""
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqxai.motifs import column_shuffled_decoys, consensus, tomtom_with_decoys
from seqxai.sigma70 import align_boxes, promoter_windows, sigma70_reference
from seqxai.tss_windows import tokenize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ecoli"
UP, DOWN = 60, 20


def _planted(n, minus10="TATAAT", minus35="TTGACA", seed=0, mutate=1):
    """n random A/T-rich windows (TSS at column 60) with both boxes planted at a random -10 start
    in -14..-10 and spacer 16..18, each box with ``mutate`` random substitutions."""
    rng = np.random.default_rng(seed)
    wins, starts, spacers = [], [], []
    for _ in range(n):
        w = rng.choice(list("ACGT"), size=UP + DOWN, p=[0.3, 0.2, 0.2, 0.3])
        s10, sp = int(rng.integers(-14, -9)), int(rng.integers(16, 19))
        for box, start in ((minus10, UP + s10), (minus35, UP + s10 - sp - 6)):
            b = list(box)
            for j in rng.choice(6, size=mutate, replace=False):
                b[j] = rng.choice([c for c in "ACGT" if c != b[j]])
            w[start : start + 6] = b
        wins.append("".join(w))
        starts.append(s10)
        spacers.append(sp)
    return wins, np.array(starts), np.array(spacers)


def test_planted_boxes_are_found_where_planted():
    wins, s10, sp = _planted(300)
    res = align_boxes(np.stack([tokenize(w) for w in wins]), UP)
    assert res["converged"] and res["n_promoters"] == 300
    assert (res["minus10_start"] == s10).mean() > 0.95
    assert (res["spacer"] == sp).mean() > 0.9
    assert consensus(res["minus10"]) == "TATAAT" and consensus(res["minus35"]) == "TTGACA"
    assert res["minus10"].sum(1).tolist() == [300.0] * 6


def test_the_matrices_come_from_the_data_not_from_the_seed_consensus():
    """Boxes planted as TACGAT (2 substitutions from the seed TATAAT) and TTTACA: the EM moves to
    them, so the reference reflects the promoters given."""
    wins, s10, _ = _planted(300, minus10="TACGAT", minus35="TTTACA", seed=3, mutate=0)
    res = align_boxes(np.stack([tokenize(w) for w in wins]), UP)
    assert consensus(res["minus10"]) == "TACGAT" and consensus(res["minus35"]) == "TTTACA"
    assert (res["minus10_start"] == s10).mean() > 0.95


def test_windows_read_each_strand_five_to_three_prime():
    wins, _, _ = _planted(2, seed=4)
    rc = {"A": "T", "C": "G", "G": "C", "T": "A"}
    pad = "C" * 5
    genome = pad + wins[0] + pad + "".join(rc[c] for c in reversed(wins[1])) + pad
    tss = pd.DataFrame({"position": [len(pad) + UP + 1, len(genome) - len(pad) - UP],
                        "strand": ["+", "-"], "sigma": ["Sigma70", "Sigma70"]})
    got = promoter_windows(genome, tss, UP, DOWN)
    assert got.tolist() == [tokenize(wins[0]).tolist(), tokenize(wins[1]).tolist()]
    # a TSS too near the end has no complete window and is left out
    near = pd.DataFrame({"position": [3], "strand": ["+"], "sigma": ["Sigma70"]})
    assert promoter_windows(genome, near, UP, DOWN).shape == (0, UP + DOWN)


def test_only_sigma70_promoters_feed_the_reference():
    wins70, _, _ = _planted(60, seed=5)
    other, _, _ = _planted(60, minus10="GGCCGG", minus35="CCGGCC", seed=6, mutate=0)
    genome = "".join(wins70 + other)
    n = UP + DOWN
    tss = pd.DataFrame({"position": [k * n + UP + 1 for k in range(120)], "strand": "+",
                        "sigma": ["Sigma70"] * 60 + ["Sigma38"] * 60})
    ref, info = sigma70_reference(genome, tss)
    assert info["n_promoters"] == 60 and info["source"].startswith("sigma70")
    assert consensus(ref["sigma70_minus10"]) == "TATAAT"


@pytest.mark.skipif(not (SHARED / "PromoterSet_RegulonDB_10.9.txt").exists(),
                    reason="../shared/data/ecoli (real RegulonDB promoters and genome) not available")
def test_real_regulondb_sigma70_promoters_give_the_textbook_boxes_and_spacer():
    from seqxai.sources.regulondb import read_promoters

    with gzip.open(SHARED / "GCF_000005845.2_ASM584v2_genomic.fna.gz", "rt") as fh:
        seq = "".join(line.strip() for line in fh if not line.startswith(">"))
    tss, _, _ = read_promoters(SHARED / "PromoterSet_RegulonDB_10.9.txt", genome_length=len(seq),
                               evidence="strong")
    ref, info = sigma70_reference(seq, tss)
    assert info["n_promoters"] == 917 and info["converged"]  # Sigma70, Confirmed + Strong
    assert consensus(ref["sigma70_minus10"]) == "TATAAT"
    assert consensus(ref["sigma70_minus35"]) == "TTGACA"
    assert max(info["spacer_counts"], key=info["spacer_counts"].get) == 17
    assert max(info["minus10_start_counts"], key=info["minus10_start_counts"].get) == -12


def test_decoys_permute_positions_only_and_are_seeded():
    pfm = np.arange(24, dtype=float).reshape(6, 4)
    d1 = column_shuffled_decoys({"X": pfm}, 5, seed=2)
    d2 = column_shuffled_decoys({"X": pfm}, 5, seed=2)
    assert list(d1) == [f"X~decoy{k}" for k in range(5)]
    for k, m in d1.items():
        assert sorted(map(tuple, m)) == sorted(map(tuple, pfm)) and np.array_equal(m, d2[k])
    assert any(not np.array_equal(m, pfm) for m in d1.values())


def test_no_decoy_of_tataat_is_tataat_on_either_strand():
    """One row permutation in ten of TATAAT spells TATAAT or its reverse complement ATTATA; such a
    decoy matches every real -10 hit as well as the target (decoy_p of the demo's -10 heads then
    depended on the seed: 64 % of 20-decoy draws hold one). They are drawn again."""
    pfm = np.eye(4)[["ACGT".index(c) for c in "TATAAT"]] * 8 + 0.5
    for seed in range(20):
        cons = {consensus(m) for m in column_shuffled_decoys({"X": pfm}, 20, seed).values()}
        assert not cons & {"TATAAT", "ATTATA"}


def test_a_query_equal_to_a_target_beats_its_decoys_and_a_featureless_one_does_not():
    rng = np.random.default_rng(0)
    targets = {f"T{k}": rng.dirichlet(np.full(4, 0.3), size=10) for k in range(30)}
    queries = {"copy": targets["T3"].copy(), "flat": np.full((8, 4), 0.25)}
    res = tomtom_with_decoys(queries, targets, n_decoys=19, seed=1).set_index(["query", "target"])
    assert len(res) == 60  # real pairs only
    assert res.loc[("copy", "T3"), "decoy_p"] == pytest.approx(1 / 20)
    assert res.loc[("copy", "T3"), "decoy_fdr"] == 0.0
    assert res.loc[("copy", "T3"), "q"] < 0.01
    assert res.xs("flat")["decoy_fdr"].min() > 0.2
    with pytest.raises(ValueError, match="decoy"):
        tomtom_with_decoys(queries, {"A~decoy1": targets["T0"]})
