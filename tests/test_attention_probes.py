"""Vig et al. probe: counts on hand-built attention maps where the answer is known."""
import numpy as np
import pandas as pd

from seqxai.attention_probes import HighConfidenceCounter, contact_matrix, layer_trend


def test_contact_matrix_is_symmetric_and_one_based():
    m = contact_matrix(10, [1, 3], [8, 10])
    assert m[0, 7] and m[7, 0] and m[2, 9] and m[9, 2]
    assert m.sum() == 4


def _protein(n=20):
    contacts = contact_matrix(n, [1, 2, 5], [10, 12, 18])  # all |i-j| >= 6
    attn = np.full((1, 2, n, n), 0.01)
    # head 0: queries 0, 1 attend their contacts; query 2 attends residue 3 (|i-j| < 6)
    attn[0, 0, 0, 9] = attn[0, 0, 1, 11] = attn[0, 0, 2, 3] = 0.9
    # head 1: attends residue 7 (a binding site) from every query, 0.5 each
    attn[0, 1, :, 7] = 0.5
    binding = np.zeros(n, dtype=bool)
    binding[7] = True
    return attn, contacts, binding


def test_counts_shares_and_backgrounds():
    attn, contacts, binding = _protein()
    c = HighConfidenceCounter(1, 2, theta=0.3)
    c.add(attn, {"contact": contacts}, {"binding_site": binding})
    t = c.table(min_high_confidence=0).set_index(["property", "layer", "head"])
    # head 0: 3 high-confidence weights, 2 on long-range contacts; the short-range one stays in the denominator
    assert t.loc[("contact", 0, 0), "n_high_confidence"] == 3
    assert t.loc[("contact", 0, 0), "hits"] == 2
    n = 20
    long_pairs = sum(1 for i in range(n) for j in range(n) if abs(i - j) >= 6)
    assert np.isclose(t.loc[("contact", 0, 0), "background"], 6 / long_pairs)
    # head 1: all 20 weights land on the binding site
    assert t.loc[("binding_site", 0, 1), "share"] == 1.0
    assert np.isclose(t.loc[("binding_site", 0, 1), "background"], 1 / n)
    assert t.loc[("contact", 0, 1), "hits"] == 0


def test_unresolved_residues_leave_every_count():
    attn, contacts, binding = _protein()
    resolved = np.ones(20, dtype=bool)
    resolved[0] = False  # query 0 and its contact to residue 9 are unknown
    c = HighConfidenceCounter(1, 2)
    c.add(attn, {"contact": contacts}, {}, resolved)
    t = c.table(min_high_confidence=0).set_index(["property", "layer", "head"])
    assert t.loc[("contact", 0, 0), "n_high_confidence"] == 2
    assert t.loc[("contact", 0, 0), "hits"] == 1


def test_exclusion_significance_and_accumulation():
    attn, contacts, binding = _protein()
    c = HighConfidenceCounter(1, 2)
    for _ in range(50):  # 50 proteins: head 0 has 150 weights, 100 on contacts
        c.add(attn, {"contact": contacts}, {"binding_site": binding})
    t = c.table(min_high_confidence=200).set_index(["property", "layer", "head"])
    assert not t.loc[("contact", 0, 0), "included"]  # 150 < 200
    assert t.loc[("binding_site", 0, 1), "included"]  # 1000 weights
    assert t.loc[("binding_site", 0, 1), "significant"]
    t = c.table(min_high_confidence=100).set_index(["property", "layer", "head"])
    assert t.loc[("contact", 0, 0), "significant"]
    assert t.loc[("contact", 0, 0), "p_bonferroni"] <= 1.0


def test_layer_trend_centre_of_gravity():
    table = pd.DataFrame({"property": "contact", "layer": [0, 1, 2], "head": 0,
                          "share": [0.0, 0.1, 0.3], "included": True})
    trend = layer_trend(table)
    assert np.isclose(trend["centre_of_gravity"].iloc[0], (0.1 * 1 + 0.3 * 2) / 0.4)
