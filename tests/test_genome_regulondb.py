"""Genome, RegulonDB promoters / TF sites / matrices on the real files; efetch over loopback."""
import collections
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from replay_server import ReplayServer, forbid_network  # noqa: E402

from seqxai.io import DataError, read_fasta  # noqa: E402
from seqxai.sources.genome import check_genome, efetch_params, fetch_genome, load_genome  # noqa: E402
from seqxai.sources.http import DownloadError, Fetcher, RetryPolicy  # noqa: E402
from seqxai.sources.regulondb import read_layout, read_promoters, read_sites, read_transfac, to_meme  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (real E. coli data) is absent")
ECOLI = SHARED / "data" / "ecoli"
RFIX = SHARED / "fixtures" / "regulondb"
GENOME = ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz"
COMP = str.maketrans("ACGTacgt", "TGCAtgca")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    forbid_network(monkeypatch)


@pytest.fixture(scope="module")
def genome():
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return load_genome(GENOME, {"NC_000913.3": 4_641_652})["NC_000913.3"]


def revcomp(s):
    return s.translate(COMP)[::-1]


# ------------------------------------------------------------------ genome
def test_check_genome_by_hand():
    assert check_genome({"gi|1|ref|NC_1.1|": "ACGTN"}, {"NC_1.1": 5}, "x") == {"NC_1.1": "ACGTN"}
    with pytest.raises(DataError, match="record NC_1.1 has 5 bp, expected 6"):
        check_genome({"NC_1.1": "ACGTN"}, {"NC_1.1": 6}, "x")
    with pytest.raises(DataError, match="non-nucleotide letter 'J' at 3"):
        check_genome({"NC_1.1": "ACJT"}, None, "x")


@needs_shared
def test_genome_real(genome):
    assert len(genome) == 4_641_652 and genome[:10] == "AGCTTTTCAT"
    legacy = load_genome(SHARED / "fixtures" / "ncbi" / "NC_005816.fna")
    assert list(legacy) == ["NC_005816.1"] and len(legacy["NC_005816.1"]) == 9609


@needs_shared
def test_efetch_over_loopback(tmp_path, genome):
    fasta = ">NC_000913.3 Escherichia coli str. K-12 substr. MG1655, complete genome\n" + \
        "\n".join(genome[i:i + 70] for i in range(0, len(genome), 70)) + "\n"  # efetch wraps at 70
    params = efetch_params("NC_000913.3")
    with ReplayServer() as srv:
        srv.add("/entrez/eutils/efetch.fcgi", fasta, query=params,
                headers=[("Content-Type", "text/plain; charset=UTF-8"), ("Content-Encoding", "gzip"),
                         ("X-RateLimit-Limit", "3")])
        srv.fault("/entrez/eutils/efetch.fcgi", "short", query=params)
        f = Fetcher(cache_dir=tmp_path, retry=RetryPolicy(attempts=3, backoff=0.01), sleep=lambda s: None, timeout=(2, 10))
        url = srv.url("/entrez/eutils/efetch.fcgi")
        path = fetch_genome(f, "NC_000913.3", tmp_path, url=url, expected_length=4_641_652)
        assert read_fasta(path)["NC_000913.3"] == genome and f.requests_made == 2
        with pytest.raises(DownloadError, match="4641652 bp received, 4641653 expected"):
            fetch_genome(f, "NC_000913.3", tmp_path / "other", url=url, expected_length=4_641_653)


# ------------------------------------------------------------------ promoters
@needs_shared
def test_promoters_10_9_real(genome):
    tss, seqs, rep = read_promoters(ECOLI / "PromoterSet_RegulonDB_10.9.txt", release="10.9", genome_length=len(genome))
    r = rep.to_frame().set_index(["item", "reason"])["count"]
    assert r[("promoter", "kept")] == 8699 and r[("promoter", "no TSS coordinate")] == 92  # 8,791 rows
    assert tss.tss_id.is_unique and set(tss.strand) == {"+", "-"}
    assert (tss.sigma == "Sigma70").sum() == 1995 and (tss.sigma == "").sum() == 5389
    first = tss.set_index("tss_id").loc["ECK125230824"]
    assert (first.position, first.strand, first.sigma) == (38, "+", "")
    # the sequence column is -60..+20 around the TSS (+1 in upper case at index 60)
    m = tss.merge(seqs, on="tss_id")
    assert (m.sequence.str.len() == 81).all() and m.sequence.str[60].str.isupper().all()
    fwd = m[m.strand == "+"]
    ok = sum(s.upper() == genome[p - 61:p + 20] for p, s in zip(fwd.position, fwd.sequence))
    assert ok == len(fwd) - 1  # 4,181 of 4,182 forward promoters match the genome exactly
    rev = m[m.strand == "-"]
    shift = collections.Counter()
    for p, s, name in zip(rev.position, rev.sequence, rev.name):
        off = 0 if revcomp(genome[p - 21:p + 60]) == s.upper() else (1 if revcomp(genome[p - 20:p + 61]) == s.upper() else None)
        shift[(off, name.startswith("TSS_"))] += 1
    # a real quirk of 10.9: reverse-strand high-throughput TSSs (TSS_*) have their sequence one base
    # off the stated position; curated promoters match exactly. Positions are kept as published.
    assert shift == {(0, False): 2052, (1, True): 2465}


@needs_shared
def test_minus10_box_sits_at_minus10(genome):
    tss, seqs, _ = read_promoters(ECOLI / "PromoterSet_RegulonDB_10.9.txt")
    m = tss.merge(seqs, on="tss_id")
    sig70 = m[(m.sigma == "Sigma70") & (m.sequence.str.len() == 81)]
    starts = collections.Counter()
    for s in sig70.sequence.str.upper():
        score, i = max((sum(a == b for a, b in zip(s[i:i + 6], "TATAAT")), i) for i in range(40, 60))
        if score >= 5:
            starts[i - 60] += 1  # hexamer start relative to the TSS (+1 at index 60)
    total = sum(starts.values())
    mode = starts.most_common(1)[0][0]
    assert mode in (-12, -11)  # TATAAT spans -12..-7 / -11..-6: centred near -10
    in_box = sum(v for k, v in starts.items() if -14 <= k <= -9)
    assert in_box / total > 0.6  # vs 6/20 = 0.3 for a uniform position


# ------------------------------------------------------------------ sites
@needs_shared
def test_binding_sites_10_8_real(genome):
    sites, rep = read_sites(ECOLI / "BindingSiteSet_RegulonDB_10.8.txt", release="10.8", genome_length=len(genome))
    r = rep.to_frame().set_index(["item", "reason"])["count"]
    assert r[("site", "kept")] + r[("site row", "repeated for another interaction")] == 3243  # rows with coordinates
    assert r[("site row", "no coordinates")] == 460 and len(sites) == 2542 and sites.tf.nunique() == 186
    assert sites.site_id.is_unique and (sites.start <= sites.end).all()
    acr = sites.set_index("site_id").loc["ECK125202663"]
    assert (acr.tf, acr.start, acr.end, acr.strand) == ("AcrR", 1619048, 1619058, "+")
    # the upper-case part of RegulonDB's site sequence is the genome between left and right
    pf = read_layout(ECOLI / "BindingSiteSet_RegulonDB_10.8.txt", "sites")
    ok = n = 0
    for row in pf.rows:
        if row[4].isdigit() and row[13]:
            core = "".join(c for c in row[13] if c.isupper())
            ref = genome[int(row[4]) - 1:int(row[5])]
            ok += core == (ref if row[6] == "forward" else revcomp(ref))
            n += 1
    assert n > 3000 and ok / n > 0.99


@needs_shared
def test_binding_site_evidence_filter_10_8_real(genome):
    """Column 17 of BindingSiteSet 10.8 among the 3,243 rows with coordinates (awk on the file):
    1,645 Confirmed, 1,333 Strong, 264 Weak, 1 without a level; the Confirmed + Strong rows hold
    2,301 distinct (site, TF) pairs of 183 TFs."""
    path = ECOLI / "BindingSiteSet_RegulonDB_10.8.txt"
    strong, rep = read_sites(path, release="10.8", genome_length=len(genome), evidence="strong")
    r = rep.to_frame().set_index(["item", "reason"])["count"]
    assert r[("site row", "evidence below strong")] == 264 + 1
    assert len(strong) == 2301 and strong.tf.nunique() == 183
    weak, _ = read_sites(path, release="10.8", genome_length=len(genome), evidence="weak")
    everything, _ = read_sites(path, release="10.8", genome_length=len(genome))
    assert len(strong) < len(weak) <= len(everything) == 2542
    assert set(strong.tf) <= set(weak.tf) <= set(everything.tf)
    # 13.0 spells the levels C / S / W (column 20): 9 C, 3 S, 3 W in the fixture
    s13, rep13 = read_sites(RFIX / "RegulonDB13.0_TF-RISet.tsv.head60", release="13.0", evidence="strong")
    assert rep13.n("site row", "evidence below strong") == 3
    with pytest.raises(DataError, match="regulondb.site_evidence: 'high'"):
        read_sites(path, evidence="high")


@needs_shared
def test_newer_layouts_and_unknown_layout(tmp_path):
    tss, _, _ = read_promoters(RFIX / "RegulonDB13.0_PromoterSet.tsv.head60", release="13.0")
    assert len(tss) == 30 and tss.iloc[0].tolist() == ["RDBECOLIPMC00001", "NC_000913.3", 1825688, "-", "Sigma70"]
    s13, _ = read_sites(RFIX / "RegulonDB13.0_TF-RISet.tsv.head60", release="13.0")
    assert s13.iloc[0][["site_id", "tf", "start", "end", "strand"]].tolist() == ["RDBECOLIBSC01689", "GadW", 3653866, 3653885, "+"]
    s11, _ = read_sites(RFIX / "RegulonDB11.1_RISet_RIdata.txt.head66")
    assert read_layout(RFIX / "RegulonDB11.1_RISet_RIdata.txt.head66").layout.name == "riset_11" and len(s11) == 5
    assert read_layout(RFIX / "RegulonDB10.8_BindingSiteSet.txt.head60").layout.name == "sites_10"
    # a renamed column is an unknown layout, reported with the file and the known layouts
    text = (RFIX / "RegulonDB13.0_TF-RISet.tsv.head60").read_text().replace("7)tfrsLeft", "7)siteLeft")
    bad = tmp_path / "TF-RISet.tsv"
    bad.write_text(text)
    with pytest.raises(DataError, match=r"TF-RISet.tsv: unknown RegulonDB layout \(release 13.0\).*siteLeft.*tfriset_13"):
        read_sites(bad)
    with pytest.raises(DataError, match="release 10.9 in the file, but the config pins 13.0"):
        read_promoters(ECOLI / "PromoterSet_RegulonDB_10.9.txt", release="13.0")
    with pytest.raises(DataError, match="unknown RegulonDB layout"):
        read_sites(ECOLI / "PromoterSet_RegulonDB_10.9.txt")  # a promoter file where sites are expected


# ------------------------------------------------------------------ matrices
@needs_shared
def test_matrices_to_meme_real(tmp_path):
    motifs = read_transfac(ECOLI / "regulonDB_2012-05_matrices.tf")
    assert len(motifs) == 93 and motifs[0].name == "AcrR" and motifs[0].counts.shape == (10, 4)
    assert motifs[0].counts[0].tolist() == [1, 3, 0, 0] and motifs[0].nsites == 4
    meme = to_meme(motifs)
    assert meme.count("\nMOTIF ") == 93
    rows = [list(map(float, x.split())) for x in meme.splitlines() if re.match(r"^ \d", x)]
    assert np.allclose(np.sum(rows, axis=1), 1.0) and len(rows) == sum(len(m.counts) for m in motifs)
    memelite = pytest.importorskip("memelite.io")  # an independent MEME reader
    p = tmp_path / "m.meme"
    p.write_text(meme)
    read = memelite.read_meme(str(p))
    assert len(read) == 93
    first = next(iter(read.values()))
    assert np.allclose(np.asarray(first).reshape(4, -1) if np.asarray(first).shape[0] == 4 else np.asarray(first).T,
                       (motifs[0].counts / motifs[0].counts.sum(1, keepdims=True)).T)


@needs_shared
def test_promoter_evidence_filter_10_9_real():
    """Column 8 of PromoterSet 10.9 (Confirmed / Strong / Weak) among the 8,699 rows with a TSS:
    38 Confirmed, 6,599 Strong, 2,062 Weak (counted with awk on the file)."""
    path = ECOLI / "PromoterSet_RegulonDB_10.9.txt"
    n = {}
    for level in ("strong", "weak", "all"):
        tss, _, rep = read_promoters(path, release="10.9", evidence=level)
        r = rep.to_frame().set_index(["item", "reason"])["count"]
        assert r[("promoter", "kept")] == len(tss) and tss.tss_id.is_unique
        n[level] = (len(tss), int(r.get(("promoter", f"evidence below {level}"), 0)), int((tss.sigma == "Sigma70").sum()))
    assert n["strong"] == (38 + 6599, 2062, 22 + 895)
    assert n["weak"] == n["all"] == (8699, 0, 1995)
    strong, _, _ = read_promoters(path, evidence="strong")
    assert "ECK125230824" in set(strong.tss_id)             # first row: Strong
    with pytest.raises(DataError, match="regulondb.evidence: 'high'"):
        read_promoters(path, evidence="high")


def test_promoter_evidence_filter_13_letters():
    if not RFIX.is_dir():
        pytest.skip("../shared is absent")
    # 13.0 spells the levels S / W: 21 S and 9 W in the fixture
    strong, _, rep = read_promoters(RFIX / "RegulonDB13.0_PromoterSet.tsv.head60", release="13.0", evidence="strong")
    assert len(strong) == 21 and rep.n("promoter", "evidence below strong") == 9
