"""Wenzel et al. statistics: point-biserial r, Wilcoxon, BH, rank accuracy."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from seqxai.annotation_scores import annotation_masks, point_biserial, rank_accuracy
from seqxai.head_statistics import wenzel_statistics
from seqxai.significance import bh, wilcoxon_greater


def test_point_biserial_matches_scipy_and_is_vectorised():
    rng = np.random.default_rng(0)
    mask = rng.random(40) < 0.3
    rel = rng.normal(size=(3, 5, 40))
    r = point_biserial(mask, rel)
    assert r.shape == (3, 5)
    for idx in [(0, 0), (2, 4)]:
        assert np.isclose(r[idx], stats.pointbiserialr(mask, rel[idx]).statistic)
    assert np.isnan(point_biserial(np.zeros(40, bool), rel)).all()
    assert np.isnan(point_biserial(mask, np.ones(40)))


def test_annotation_masks_one_based_inclusive():
    ann = pd.DataFrame({"accession": ["A", "A", "B"], "type": ["motif", "active_site", "motif"],
                        "start": [2, 5, 1], "end": [4, 5, 3], "description": ""})
    m = annotation_masks(ann, "A", 8, ["motif", "active_site"])
    assert m["motif"].tolist() == [False, True, True, True, False, False, False, False]
    assert np.flatnonzero(m["active_site"]).tolist() == [4]


def test_rank_accuracy_by_hand():
    mask = np.array([0, 1, 1, 0, 0], dtype=bool)
    assert rank_accuracy(mask, np.array([0.0, 5, 1, 4, 0])) == 0.5
    assert rank_accuracy(mask, np.array([0.0, 5, 6, 1, 0])) == 1.0


def test_wilcoxon_greater_and_bh():
    x = np.array([[0.5, -0.1], [0.4, 0.2], [0.6, -0.3], [0.3, 0.1], [0.7, -0.2], [0.2, 0.05]])
    n, p = wilcoxon_greater(x)
    assert n.tolist() == [6, 6]
    assert p[0] == pytest.approx(stats.wilcoxon(x[:, 0], alternative="greater").pvalue)
    assert p[0] < 0.05 < p[1]
    q, rej = bh(np.array([0.01, 0.04, np.nan, 0.03]))
    assert np.isnan(q[2]) and q[0] == pytest.approx(0.03) and rej[[0, 1, 3]].all()


def _attributions(n_proteins, signal, seed=0):
    rng = np.random.default_rng(seed)
    emb, heads, ann = [], [], []
    for k in range(n_proteins):
        acc, L = f"P{k}", 50
        start = int(rng.integers(1, 40))
        ann.append((acc, "motif", start, start + 5, ""))
        inside = np.zeros(L, bool)
        inside[start - 1 : start + 5] = True
        e = rng.normal(size=L) + signal * inside
        emb.append({"accession": acc, "target": "1" if k % 2 else "2", "relevance": e.tolist()})
        for l in range(2):
            for h in range(2):
                boost = signal if (l, h) == (1, 0) else 0.0
                heads.append({"accession": acc, "target": "1" if k % 2 else "2", "layer": l,
                              "head": h, "relevance": (rng.normal(size=L) + boost * inside).tolist()})
    return (pd.DataFrame(emb), pd.DataFrame(heads),
            pd.DataFrame(ann, columns=["accession", "type", "start", "end", "description"]))


def test_planted_signal_is_found_only_where_planted():
    emb, heads, ann = _attributions(30, signal=2.0)
    res = wenzel_statistics(emb, heads, ann, ["motif", "transmembrane"], per_target=True)
    e = res["embedding"].set_index(["annotation", "group"])
    assert e.loc[("motif", "all"), "p"] < 1e-5
    assert e.loc[("motif", "all"), "n_proteins"] == 30
    assert e.loc[("motif", "1"), "n_proteins"] == 15
    assert e.loc[("transmembrane", "all"), "n_proteins"] == 0
    h = res["heads"]
    sig = h[(h["annotation"] == "motif") & (h["group"] == "all") & h["significant"]]
    assert sig[["layer", "head"]].values.tolist() == [[1, 0]]
    assert set(res["per_protein"]["annotation"]) == {"motif"}


def test_null_data_false_positive_rate_is_controlled():
    """Without signal, BH at 0.05 over 4 heads flags any head in about 5% of data sets at most."""
    any_sig, emb_p = [], []
    for seed in range(40):
        emb, heads, ann = _attributions(30, signal=0.0, seed=seed)
        res = wenzel_statistics(emb, heads, ann, ["motif"])
        any_sig.append(res["heads"]["significant"].any())
        emb_p.append(res["embedding"]["p"].iloc[0])
    assert np.mean(any_sig) <= 0.1
    assert 0.2 < np.median(emb_p) < 0.8  # null p values are spread, not piled near 0


def test_vectorised_wilcoxon_matches_scipy_column_by_column():
    """Columns with different NaN patterns, zeros, ties and too few values, against scipy per column."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1, size=(14, 3, 4))
    x[:4, 0, 1] = np.nan          # a second NaN pattern
    x[5, 1, 2] = 0.0              # a zero (dropped by zero_method="wilcox")
    x[:, 2, 0] = np.round(x[:, 2, 0])  # ties and zeros
    x[:, 2, 3] = 0.0
    x[0, 2, 3] = 1.0              # one non-zero value: untestable
    x[:, 1, 3] = np.nan           # no data
    n, p = wilcoxon_greater(x)
    for i in range(3):
        for j in range(4):
            col = x[:, i, j][np.isfinite(x[:, i, j])]
            assert n[i, j] == len(col)
            if np.count_nonzero(col) >= 2:
                ref = stats.wilcoxon(col, alternative="greater", zero_method="wilcox").pvalue
                assert p[i, j] == pytest.approx(ref, rel=1e-12)
            else:
                assert np.isnan(p[i, j])


def test_bh_matches_statsmodels():
    p = np.random.default_rng(4).uniform(0, 0.2, size=(5, 6))
    q, rej = bh(p)
    r_ref, q_ref, _, _ = multipletests(p.ravel(), alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(q.ravel(), q_ref)
    assert (rej.ravel() == r_ref).all()


def _table(records, n_layers, n_heads):
    """Embedding and head tables from {accession: (mask range 1-based, emb, heads[l][h])}."""
    emb, heads, ann = [], [], []
    for acc, (start, end, e, h) in records.items():
        ann.append((acc, "motif", start, end, ""))
        emb.append({"accession": acc, "target": "1", "relevance": list(e),
                    "relevance_start": 0.0, "relevance_end": 0.0})
        for l in range(n_layers):
            for k in range(n_heads):
                heads.append({"accession": acc, "target": "1", "layer": l, "head": k,
                              "relevance": list(h[l][k]), "relevance_start": 0.0,
                              "relevance_end": 0.0})
    return (pd.DataFrame(emb), pd.DataFrame(heads),
            pd.DataFrame(ann, columns=["accession", "type", "start", "end", "description"]))


def test_rank_accuracy_per_head_and_embedding_by_hand():
    # A: mask residues 2-3; head relevance top-2 = residues 2 and 4 -> 1/2. B: mask 1-2, top-2 = 1, 2 -> 1.
    # Embedding: A top-2 = residues 2, 3 -> 1; B top-2 = residues 4, 5 -> 0. Chance: 2/5 both.
    recs = {"A": (2, 3, [0, 5, 4, 1, 0], [[[0, 5, 1, 4, 0]]]),
            "B": (1, 2, [0, 0, 1, 6, 5], [[[6, 5, 0, 0, 0]]])}
    emb, heads, ann = _table(recs, 1, 1)
    res = wenzel_statistics(emb, heads, ann, ["motif"])
    h = res["heads"].iloc[0]
    assert h["rank_accuracy"] == pytest.approx(0.75)
    assert h["random_rank_accuracy"] == pytest.approx(0.4)
    e = res["embedding"].iloc[0]
    assert e["rank_accuracy"] == pytest.approx(0.5) and e["random_rank_accuracy"] == pytest.approx(0.4)
    assert res["per_protein"]["rank_accuracy_embedding"].tolist() == [1.0, 0.0]


def test_overlay_is_annotation_and_positive_relevance():
    """Head (1, 0): relevance on the motif and positive overall -> overlay. Head (0, 1): positive
    everywhere but not concentrated on the motif -> positive only. Head (1, 1): on the motif but
    negative overall -> annotation only."""
    rng = np.random.default_rng(5)
    recs = {}
    for k in range(25):
        L, start = 40, int(rng.integers(1, 30))
        inside = np.zeros(L)
        inside[start - 1 : start + 5] = 1
        h = [[rng.normal(size=L) * 0.3 for _ in range(2)] for _ in range(2)]
        h[1][0] = h[1][0] + 2 * inside + 0.5
        h[0][1] = h[0][1] + 1.0
        h[1][1] = h[1][1] + 2 * inside - 2.0
        recs[f"P{k:02d}"] = (start, start + 5, rng.normal(size=L), h)
    emb, heads, ann = _table(recs, 2, 2)
    res = wenzel_statistics(emb, heads, ann, ["motif"])
    h = res["heads"].set_index(["layer", "head"])
    pos_all = res["positive_relevance"]
    assert sorted(set(pos_all["annotation"])) == ["all_proteins", "motif"]
    pos = pos_all[pos_all["annotation"] == "motif"].set_index(["layer", "head"])
    assert h.loc[(1, 0), "significant_overlay"]
    assert pos.loc[(0, 1), "significant"] and not h.loc[(0, 1), "significant"]
    assert h.loc[(1, 1), "significant"] and not pos.loc[(1, 1), "significant"]
    assert h["significant_overlay"].tolist() == [False, False, True, False]
    # independent recomputation by joining the two tables
    joined = res["heads"].merge(res["positive_relevance"], on=["annotation", "group", "layer", "head"],
                                suffixes=("", "_pos"))
    assert len(joined) == len(res["heads"])
    assert (joined["significant_overlay"] == (joined["significant"] & joined["significant_pos"])).all()
    assert res["heads"]["significant_overlay"].dtype == bool


def test_overlay_tests_positive_relevance_on_the_proteins_carrying_the_annotation():
    """As the original code: the positive-relevance half of the overlay is tested per annotation
    type on only the proteins that carry it. Head (0, 0) has a positive relevance sum on the 12
    proteins with a motif and a negative one (twice as large) on the 12 without: over all 24
    proteins its median sum is negative, over the carriers it is positive. Head (0, 1) is the
    mirror image. The motif itself draws relevance in both heads."""
    rng = np.random.default_rng(11)
    recs, carriers = {}, []
    for k in range(24):
        L, start = 30, int(rng.integers(1, 20))
        inside = np.zeros(L)
        inside[start - 1 : start + 5] = 1
        has = k % 2 == 0
        shift = 0.5 if has else -1.0
        h = [[rng.normal(size=L) * 0.2 + 2 * inside * has + shift,
              rng.normal(size=L) * 0.2 + 2 * inside * has - shift]]
        recs[f"P{k:02d}"] = (start, start + 5, rng.normal(size=L), h)
        if has:
            carriers.append(f"P{k:02d}")
    emb, heads, ann = _table(recs, 1, 2)
    ann = ann[ann["accession"].isin(carriers)]
    res = wenzel_statistics(emb, heads, ann, ["motif"])
    pos = res["positive_relevance"].set_index(["annotation", "layer", "head"])
    assert pos.loc[("motif", 0, 0), "n_proteins"] == 12
    assert pos.loc[("all_proteins", 0, 0), "n_proteins"] == 24
    # independent reference: scipy on the carriers' sums of head (0, 0)
    sums = [np.sum(recs[a][3][0][0]) for a in carriers]
    assert pos.loc[("motif", 0, 0), "p"] == pytest.approx(stats.wilcoxon(sums, alternative="greater").pvalue)
    assert pos.loc[("motif", 0, 0), "significant"] and not pos.loc[("all_proteins", 0, 0), "significant"]
    assert not pos.loc[("motif", 0, 1), "significant"] and pos.loc[("all_proteins", 0, 1), "significant"]
    h = res["heads"].set_index(["layer", "head"])
    assert h["significant"].all()
    assert h["significant_overlay"].tolist() == [True, False]


def test_keep_special_tokens_adds_two_unannotated_positions():
    emb, heads, ann = _table({"A": (2, 2, [1.0, 2.0, 3.0], [[[1.0, 2.0, 3.0]]]),
                              "B": (1, 1, [4.0, 0.0, 1.0], [[[4.0, 0.0, 1.0]]])}, 1, 1)
    heads["relevance_start"] = [0.5, -2.0]
    heads["relevance_end"] = [-1.0, 3.0]
    off = wenzel_statistics(emb, heads, ann, ["motif"])
    on = wenzel_statistics(emb, heads, ann, ["motif"], keep_special_tokens=True)
    r_off = stats.pointbiserialr([0, 1, 0], [1.0, 2.0, 3.0]).statistic
    r_on = stats.pointbiserialr([0, 0, 1, 0, 0], [0.5, 1.0, 2.0, 3.0, -1.0]).statistic
    r_b_on = stats.pointbiserialr([0, 1, 0, 0, 0], [-2.0, 4.0, 0.0, 1.0, 3.0]).statistic
    assert r_off != pytest.approx(r_on)
    assert on["heads"]["median_r"].iloc[0] == pytest.approx(np.median([r_on, r_b_on]))
    assert off["embedding"]["median_r"].iloc[0] == pytest.approx(
        np.median([r_off, stats.pointbiserialr([1, 0, 0], [4.0, 0.0, 1.0]).statistic]))
    # chance level of the rank accuracy: K / n = 1/3 on residues, 1/5 with the two special tokens
    assert off["heads"]["random_rank_accuracy"].iloc[0] == pytest.approx(1 / 3)
    assert on["heads"]["random_rank_accuracy"].iloc[0] == pytest.approx(1 / 5)
    # B's heads with special tokens: top-1 of [-2, 4, 0, 1, 3] is the annotated residue; A's is not
    assert on["heads"]["rank_accuracy"].iloc[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="relevance_start"):
        wenzel_statistics(emb, heads.drop(columns=["relevance_start"]), ann, ["motif"],
                          keep_special_tokens=True)


def test_twelve_layers_come_out_in_numeric_order_in_tables_and_heatmap(monkeypatch):
    """With 12 layers a string sort would give 0, 1, 10, 11, 2, ...; the signal sits in layer 10."""
    from seqxai import plots

    rng = np.random.default_rng(6)
    n_layers, n_heads = 12, 2
    recs = {}
    for k in range(20):
        L, start = 30, int(rng.integers(1, 20))
        inside = np.zeros(L)
        inside[start - 1 : start + 5] = 1
        h = [[rng.normal(size=L) + (3 * inside if (l, j) == (10, 1) else 0) for j in range(n_heads)]
             for l in range(n_layers)]
        recs[f"P{k:02d}"] = (start, start + 5, rng.normal(size=L), h)
    emb, heads, ann = _table(recs, n_layers, n_heads)
    heads = heads.sample(frac=1.0, random_state=1).reset_index(drop=True)  # rows in any order
    res = wenzel_statistics(emb, heads, ann, ["motif"])
    for t in (res["heads"], *(g for _, g in res["positive_relevance"].groupby("annotation"))):
        assert t["layer"].tolist() == [l for l in range(n_layers) for _ in range(n_heads)]
        assert t["head"].tolist() == list(range(n_heads)) * n_layers
    sig = res["heads"][res["heads"]["significant"]]
    assert sig[["layer", "head"]].values.tolist() == [[10, 1]]

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.head_significance(res["heads"], "unused.png", "t")
    ax = figs[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(l) for l in range(n_layers)]
    img = ax.get_images()[0].get_array()
    assert img.shape == (n_layers, n_heads)
    shown = ~np.ma.getmaskarray(img)
    assert np.argwhere(shown).tolist() == [[10, 1]]
    assert img[10, 1] == pytest.approx(-np.log10(sig["p_bh"].iloc[0]))


def _shard_order_tables(keep_special: bool):
    """13 layers x 3 heads (numeric order matters past layer 9), 10 proteins, two of them with
    two targets, lengths 9-20; the signal sits in layer 11 head 1. Without the special tokens
    only P0 has a row for layer 12 head 2: the others count as zero relevance there, as the
    in-memory grid fills them (a rank accuracy, but NaN r and a zero relevance sum)."""
    rng = np.random.default_rng(11)
    n_layers, n_heads = 13, 3
    emb, heads, ann = [], [], []
    for k in range(10):
        acc, L = f"P{k}", int(rng.integers(9, 21))
        start = int(rng.integers(1, L - 3))
        if k != 7:  # P7 carries no motif: NaN r, left out of the tests
            ann.append((acc, "motif", start, start + 2, ""))
        if k % 3 == 0:
            ann.append((acc, "binding_site", 1, 1, ""))
        inside = np.zeros(L)
        inside[start - 1 : start + 2] = 1
        for target in (["1", "2"] if k in (2, 5) else [str(1 + k % 2)]):
            emb.append({"accession": acc, "target": target,
                        "relevance": (rng.normal(size=L) + inside).astype(np.float32),
                        "relevance_start": 0.0, "relevance_end": 0.0})
            for l in range(n_layers):
                for h in range(n_heads):
                    if (l, h) == (12, 2) and k != 0 and not keep_special:
                        continue
                    boost = 2.0 if (l, h) == (11, 1) else 0.0
                    heads.append({"accession": acc, "target": target, "layer": l, "head": h,
                                  "relevance": (rng.normal(size=L) + boost * inside).astype(np.float32),
                                  "relevance_start": float(rng.normal()),
                                  "relevance_end": float(rng.normal())})
    return (pd.DataFrame(emb), pd.DataFrame(heads),
            pd.DataFrame(ann, columns=["accession", "type", "start", "end", "description"]))


@pytest.mark.parametrize("keep_special", [False, True])
def test_streaming_statistics_equal_the_in_memory_ones(tmp_path, keep_special):
    """The head table written in shard order (3 shards, proteins out of accession order) and
    read back 5 rows at a time, so that every protein's 38-39 rows span several batches (and
    row groups of 7 rows): the four tables equal wenzel_statistics on the whole table."""
    from seqxai.attribution_tables import gather_heads
    from seqxai.head_statistics import wenzel_statistics_streaming
    from seqxai.io import read_table

    emb, heads, ann = _shard_order_tables(keep_special)
    shards = [["P5", "P1", "P8"], ["P0", "P9", "P3", "P7"], ["P2", "P6", "P4"]]
    paths = []
    for s, accs in enumerate(shards):
        rows = heads[heads["accession"].isin(accs)].sample(frac=1.0, random_state=s)  # any order
        paths.append(tmp_path / f"heads{s}.parquet")
        rows.to_parquet(paths[-1])
    gather_heads(paths, tmp_path / "heads.parquet", row_group_rows=7)
    order = pd.read_parquet(tmp_path / "heads.parquet", columns=["accession"])["accession"]
    assert order.drop_duplicates().tolist() == ["P1", "P5", "P8", "P0", "P3", "P7", "P9", "P2",
                                                "P4", "P6"]
    types = ["motif", "binding_site", "transmembrane"]
    streamed = wenzel_statistics_streaming(emb, tmp_path / "heads.parquet", ann, types,
                                           per_target=True, keep_special_tokens=keep_special,
                                           batch_rows=5)
    in_memory = wenzel_statistics(emb, read_table(tmp_path / "heads.parquet"), ann, types,
                                  per_target=True, keep_special_tokens=keep_special)
    shuffled = wenzel_statistics(emb, heads.sample(frac=1.0, random_state=9), ann, types,
                                 per_target=True, keep_special_tokens=keep_special)
    for key in ("heads", "embedding", "positive_relevance", "per_protein"):
        pd.testing.assert_frame_equal(streamed[key], in_memory[key], check_exact=True)
        pd.testing.assert_frame_equal(streamed[key], shuffled[key], check_exact=True)
    h = streamed["heads"]
    assert h["layer"].tolist()[:6] == [0, 0, 0, 1, 1, 1] and h["layer"].max() == 12
    sig = h[(h["annotation"] == "motif") & (h["group"] == "all") & h["significant"]]
    assert [11, 1] in sig[["layer", "head"]].values.tolist()  # not a comparison of NaN with NaN
    assert h["median_r"].notna().sum() > 100
    # layer 12 head 2 is zero-filled for all but P0 (without special tokens): r only for P0,
    # but a rank accuracy for every protein with the motif
    last = h[(h["annotation"] == "motif") & (h["group"] == "all") & (h["layer"] == 12)
             & (h["head"] == 2)].iloc[0]
    assert last["n_proteins"] == (11 if keep_special else 1) and np.isfinite(last["rank_accuracy"])
    assert h[(h["annotation"] == "motif") & (h["group"] == "all")]["n_proteins"].iloc[0] == 11  # 12 - P7


def test_streaming_statistics_refuse_a_table_out_of_gather_order(tmp_path):
    from seqxai.head_statistics import wenzel_statistics_streaming
    from seqxai.io import DataError

    emb, heads, ann = _shard_order_tables(False)
    heads = heads[heads["accession"].isin(["P0", "P1"])]
    p0 = heads[heads["accession"] == "P0"]
    mixed = pd.concat([p0.iloc[:20], heads[heads["accession"] == "P1"], p0.iloc[20:]])
    mixed.to_parquet(tmp_path / "heads.parquet")
    with pytest.raises(DataError, match=r"heads\.parquet: rows of accession 'P0' target '1' are "
                                        r"not contiguous .*not in the gather order"):
        wenzel_statistics_streaming(emb[emb["accession"].isin(["P0", "P1"])],
                                    tmp_path / "heads.parquet", ann, ["motif"], batch_rows=8)


def test_point_biserial_of_many_masks_equals_one_by_one():
    from seqxai.annotation_scores import point_biserial_masks

    rng = np.random.default_rng(2)
    rel = rng.normal(size=(2, 3, 25))
    masks = np.stack([rng.permutation(np.arange(25) < 7) for _ in range(4)])
    r = point_biserial_masks(masks, rel)
    assert r.shape == (4, 2, 3)
    for k in range(4):
        np.testing.assert_allclose(r[k], point_biserial(masks[k], rel))


def test_composition_permutations_keep_each_amino_acids_count():
    from seqxai.annotation_scores import composition_permutations

    aa = np.frombuffer(b"LLAKLLAKSSHL", dtype="S1")
    mask = np.array([1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0], bool)  # L, L, A, S, H annotated
    perms = composition_permutations(mask, aa, 50, np.random.default_rng(0))
    for c in (b"L", b"A", b"K", b"S", b"H"):
        assert (perms[:, aa == c].sum(1) == mask[aa == c].sum()).all()
    assert (perms[:, aa == b"H"]).all() and not perms[:, aa == b"K"].any()  # nothing to move
    assert len({tuple(p) for p in perms}) > 5  # L and S do move


def _composition_tables(signal_on_motif: bool, seed: int = 0):
    """30 proteins; the motif (8 residues) is rich in W, and every W gets relevance 1, other
    residues noise. With ``signal_on_motif`` the motif residues get +1 more: relevance that
    knows the annotation beyond its composition."""
    rng = np.random.default_rng(seed)
    recs, seqs = {}, {}
    for k in range(30):
        L, start = 60, int(rng.integers(1, 50))
        seq = rng.choice(list("ACDEFGHIKLMNPQRSTVY"), size=L)
        seq[rng.choice(L, 6, replace=False)] = "W"
        seq[start - 1 : start + 7] = rng.choice(["W", "L"], size=8, p=[0.7, 0.3])
        inside = np.zeros(L)
        inside[start - 1 : start + 7] = 1
        rel = rng.normal(size=L) * 0.3 + (seq == "W")
        if signal_on_motif:
            rel = rel + inside
        recs[f"P{k:02d}"] = (start, start + 7, rel, [[rel + rng.normal(size=L) * 0.1]])
        seqs[f"P{k:02d}"] = "".join(seq)
    return recs, seqs


@pytest.mark.parametrize("signal_on_motif", [False, True])
def test_composition_null_separates_identity_from_annotation(signal_on_motif):
    recs, seqs = _composition_tables(signal_on_motif)
    emb, heads, ann = _table(recs, 1, 1)
    res = wenzel_statistics(emb, heads, ann, ["motif"], sequences=seqs, n_permutations=199, seed=4)
    e, h = res["embedding"].iloc[0], res["heads"].iloc[0]
    assert e["p"] < 1e-4  # the bare Wilcoxon passes either way: the motif is W-rich
    assert e["mean_r"] == pytest.approx(np.mean([stats.pointbiserialr(
        np.isin(np.arange(60), np.arange(s - 1, t)), r).statistic for s, t, r, _ in recs.values()]))
    if signal_on_motif:
        assert e["p_composition"] == pytest.approx(1 / 200) and h["p_composition"] == pytest.approx(1 / 200)
        assert h["significant_composition"]
    else:
        assert e["p_composition"] > 0.05 and h["p_composition"] > 0.05 and not h["significant_composition"]
        assert abs(e["mean_r"] - e["null_mean_r"]) < 3 * e["null_sd_r"]
    # seeded: the same seed gives the same null, another seed another one
    again = wenzel_statistics(emb, heads, ann, ["motif"], sequences=seqs, n_permutations=199, seed=4)
    assert again["embedding"]["null_mean_r"].iloc[0] == e["null_mean_r"]
    other = wenzel_statistics(emb, heads, ann, ["motif"], sequences=seqs, n_permutations=199, seed=5)
    assert other["embedding"]["null_mean_r"].iloc[0] != e["null_mean_r"]
    # without sequences the columns are there and NaN
    plain = wenzel_statistics(emb, heads, ann, ["motif"])
    assert np.isnan(plain["embedding"]["p_composition"].iloc[0])


def test_composition_null_names_a_sequence_that_does_not_fit():
    from seqxai.io import DataError

    recs, seqs = _composition_tables(True)
    emb, heads, ann = _table(recs, 1, 1)
    short = {**seqs, "P03": seqs["P03"][:-1]}
    with pytest.raises(DataError, match="P03.*59 residues.*60"):
        wenzel_statistics(emb, heads, ann, ["motif"], sequences=short, n_permutations=9)
    # a longer sequence was truncated to the model's length: the attributed prefix is used
    longer = {a: s + "WWWW" for a, s in seqs.items()}
    a = wenzel_statistics(emb, heads, ann, ["motif"], sequences=longer, n_permutations=9, seed=1)
    b = wenzel_statistics(emb, heads, ann, ["motif"], sequences=seqs, n_permutations=9, seed=1)
    pd.testing.assert_frame_equal(a["embedding"], b["embedding"])


def test_composition_null_is_untestable_when_no_mask_can_move():
    """Every annotated residue is the only W of its protein: permuting among residues of the same
    amino acid leaves each mask in place, so p_composition is NaN, not 1."""
    rng = np.random.default_rng(3)
    recs, seqs = {}, {}
    for k in range(12):
        L, start = 30, int(rng.integers(1, 25))
        seq = rng.choice(list("ACDEFGHIKLMNPQRSTVY"), size=L)
        seq[start - 1] = "W"
        rel = rng.normal(size=L)
        rel[start - 1] += 3
        recs[f"P{k:02d}"] = (start, start, rel, [[rel]])
        seqs[f"P{k:02d}"] = "".join(seq)
    emb, heads, ann = _table(recs, 1, 1)
    res = wenzel_statistics(emb, heads, ann, ["motif"], sequences=seqs, n_permutations=49)
    e = res["embedding"].iloc[0]
    assert e["p"] < 1e-3 and np.isnan(e["p_composition"]) and e["null_sd_r"] < 1e-12
    assert np.isnan(res["heads"]["p_composition"].iloc[0])
    assert not res["heads"]["significant_composition"].iloc[0]
