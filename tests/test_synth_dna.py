import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pytest

from seqxai.io import DataError, read_fasta, read_table
from seqxai.motifs import read_meme
from seqxai.synth_dna import make_demo_genome, revcomp, write_demo_genome

SMALL = {"genome_length": 40000, "n_promoters": 120}


def oriented(seq, strand):
    return seq if strand == "+" else revcomp(seq)


@pytest.fixture(scope="module")
def demo():
    return make_demo_genome(SMALL, seed=7)


def test_boxes_sit_where_tss_says_both_strands(demo):
    genome, tss, sites, pfms, planted = demo
    seq = genome["demo_chr"]
    L = len(seq)
    ori = {"+": seq, "-": revcomp(seq)}
    assert set(tss.strand) == {"+", "-"}
    for row, p in zip(tss.itertuples(), planted.itertuples()):
        t = row.position - 1 if row.strand == "+" else L - row.position  # oriented 0-based TSS
        assert t == p.oriented_tss
        s = ori[row.strand]
        assert s[t + p.minus10_start : t + p.minus10_start + 6] == p.minus10_seq
        assert s[t + p.minus35_start : t + p.minus35_start + 6] == p.minus35_seq
        # -10 box ends 7 nt upstream of the TSS, +-1 jitter
        assert -8 <= p.minus10_start + 5 <= -6
        spacer = p.minus10_start - (p.minus35_start + 6)
        assert 15 <= spacer <= 19 and spacer == p.spacer


def test_box_mismatches_are_realistic(demo):
    planted = demo[4]
    mm10 = np.array([sum(a != b for a, b in zip(s, "TATAAT")) for s in planted.minus10_seq])
    mm35 = np.array([sum(a != b for a, b in zip(s, "TTGACA")) for s in planted.minus35_seq])
    for mm in (mm10, mm35):
        assert 0.8 < mm.mean() < 1.8           # rate 0.2 x 6 = 1.2 expected
        assert (mm == 0).mean() < 0.5          # not all perfect boxes


def test_tf_sites_table_and_sequences(demo):
    genome, tss, sites, pfms, planted = demo
    seq = genome["demo_chr"]
    assert set(sites.tf) == set(pfms) and len(pfms) >= 2
    assert (sites.start <= sites.end).all() and (sites.start >= 1).all() and (sites.end <= len(seq)).all()
    cons = {"PalR": "ATGTGACGTCACAT", "RepB": "GCCGATTTAC"}
    for row in sites.itertuples():
        site = seq[row.start - 1 : row.end]
        site = site if row.strand in "+." else revcomp(site)
        assert len(site) == len(cons[row.tf])
        assert sum(a != b for a, b in zip(site, cons[row.tf])) <= 5
    assert consensus_distinct(cons)


def consensus_distinct(cons):
    a, b = cons.values()
    return a[: len(b)] != b


def test_deterministic_and_seed_dependent():
    a = make_demo_genome(SMALL, seed=3)
    b = make_demo_genome(SMALL, seed=3)
    c = make_demo_genome(SMALL, seed=4)
    assert a[0] == b[0] and a[1].equals(b[1]) and a[2].equals(b[2])
    assert a[0] != c[0]


def test_gc_content():
    g = make_demo_genome({**SMALL, "gc": 0.65}, seed=1)[0]["demo_chr"]
    gc = (g.count("G") + g.count("C")) / len(g)
    assert abs(gc - 0.65) < 0.02


def test_writer_outputs_are_readable(tmp_path):
    info = write_demo_genome(SMALL, 2, tmp_path / "g.fasta", tmp_path / "tss.parquet",
                             tmp_path / "sites.parquet", tmp_path / "tf.meme")
    assert list(read_fasta(tmp_path / "g.fasta")) == ["demo_chr"]
    assert len(read_table(tmp_path / "tss.parquet", "tss")) == info["n_tss"] == 120
    read_table(tmp_path / "sites.parquet", "tf_sites")
    from memelite.io import read_meme as mreads

    raw = mreads(str(tmp_path / "tf.meme"))
    assert {k.split()[0] for k in raw} == {"PalR", "RepB"}
    m = read_meme(tmp_path / "tf.meme")
    assert m["PalR"].shape == (14, 4) and np.allclose(m["PalR"].sum(1), 1)


def test_bad_config_raises():
    with pytest.raises(DataError, match="do not fit"):
        make_demo_genome({"genome_length": 10000, "n_promoters": 500}, 1)
    with pytest.raises(DataError, match="minus10"):
        make_demo_genome({**SMALL, "minus10": "TAXAAT"}, 1)
