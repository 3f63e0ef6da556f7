"""Wenzel et al. statistics: point-biserial r, Wilcoxon, BH, rank accuracy."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqxai.head_statistics import (annotation_masks, bh, point_biserial, rank_accuracy,
                                    wenzel_statistics, wilcoxon_greater)


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
