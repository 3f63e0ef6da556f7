"""Jaccard of significant-head masks between the fine-tuned model and its controls."""
import math

import numpy as np
import pandas as pd
import pytest

from seqxai.variant_comparison import compare_variants, expected_jaccard, jaccard, permutation_p


def test_jaccard_by_hand():
    a = np.array([[1, 1, 0], [0, 0, 0]], bool)
    b = np.array([[1, 0, 1], [0, 0, 1]], bool)
    assert jaccard(a, b) == pytest.approx(1 / 4)  # both: 1 head; either: 4 heads
    assert jaccard(a, a) == 1.0
    assert jaccard(a, ~a) == 0.0
    assert math.isnan(jaccard(np.zeros(3, bool), np.zeros(3, bool)))
    with pytest.raises(ValueError):
        jaccard(a, b.ravel())


def _heads(sig, overlay=None, annotation="motif"):
    """A head_statistics-like table of 2 layers x 2 heads from a flat mask."""
    rows = [{"annotation": annotation, "group": "all", "layer": l, "head": h, "p_bh": 0.5,
             "significant": bool(sig[2 * l + h])} for l in range(2) for h in range(2)]
    df = pd.DataFrame(rows)
    if overlay is not None:
        df["significant_overlay"] = np.asarray(overlay, bool)
    return df


def test_compare_variants_per_pair_and_mask():
    heads = {"finetuned": _heads([1, 1, 0, 0], [1, 0, 0, 0]),
             "frozen": _heads([1, 0, 1, 0], [0, 0, 0, 0]),
             # rows in another order must not matter
             "shuffled": _heads([0, 0, 0, 0], [0, 0, 0, 0]).iloc[::-1]}
    t = compare_variants(heads).set_index(["mask", "variant_a", "variant_b"])
    assert len(t) == 6  # 3 pairs x 2 masks
    r = t.loc[("significant", "finetuned", "frozen")]
    assert (r["n_a"], r["n_b"], r["n_both"], r["n_heads"]) == (2, 2, 1, 4)
    assert r["jaccard"] == pytest.approx(1 / 3)
    assert t.loc[("significant", "finetuned", "shuffled"), "jaccard"] == 0.0
    assert np.isnan(t.loc[("significant_overlay", "frozen", "shuffled"), "jaccard"])


def test_overlay_compared_only_when_every_variant_has_it():
    t = compare_variants({"finetuned": _heads([1, 0, 0, 0], [1, 0, 0, 0]), "frozen": _heads([1, 0, 0, 0])})
    assert list(t["mask"]) == ["significant"] and t["jaccard"].iloc[0] == 1.0


def test_different_head_sets_are_an_error():
    a = _heads([1, 0, 0, 0])
    with pytest.raises(ValueError, match="cover different heads"):
        compare_variants({"finetuned": a, "frozen": a.iloc[:3]})


def test_expected_jaccard_equals_enumeration_of_all_mask_pairs():
    """Every pair of masks of sizes a and b over N = 6 heads, averaged by hand."""
    from itertools import combinations as comb

    n = 6
    for a, b in [(1, 1), (2, 3), (3, 3), (0, 2), (6, 4), (5, 5)]:
        js = [len(set(x) & set(y)) / len(set(x) | set(y))
              for x in comb(range(n), a) for y in comb(range(n), b)]
        assert expected_jaccard(n, a, b) == pytest.approx(np.mean(js), abs=1e-12)
    assert expected_jaccard(4, 1, 1) == pytest.approx(1 / 4)  # overlap 1 with chance 1/4, else 0
    assert np.isnan(expected_jaccard(5, 0, 0))
    with pytest.raises(ValueError, match="outside"):
        expected_jaccard(5, 6, 1)


def test_permutation_p_small_for_identical_masks_and_large_for_random_ones():
    n, rng = 480, np.random.default_rng(1)
    a = np.zeros(n, bool)
    a[:60] = True
    # identical masks of 60 of 480 heads: no permutation reaches J = 1
    assert permutation_p(a, a, 999, np.random.default_rng(0)) == pytest.approx(1 / 1000)
    # independent random masks: p is uniform, so its mean is near 1/2 and it is rarely small
    ps = np.array([permutation_p(rng.random(n) < 0.1, rng.random(n) < 0.15, 199, rng)
                   for _ in range(200)])
    assert 0.4 < ps.mean() < 0.6
    assert 0.02 < (ps <= 0.05).mean() < 0.1
    # against the exact tail of the hypergeometric overlap (J grows with the overlap)
    from scipy.stats import hypergeom

    b = np.zeros(n, bool)
    b[40:120] = True  # overlap 20
    p = permutation_p(a, b, 20000, np.random.default_rng(2))
    assert p == pytest.approx(hypergeom.sf(19, n, 60, 80), abs=0.01)


def test_comparison_reports_chance_level_and_is_seeded():
    heads = {"finetuned": _heads([1, 1, 0, 0]), "frozen": _heads([1, 0, 1, 0])}
    t = compare_variants(heads, n_permutations=2000, seed=3)
    r = t.iloc[0]
    # 2 of 4 heads each: overlap 0, 1, 2 with chance 1/6, 4/6, 1/6 -> 0/4, 1/3, 2/2
    assert r["expected_jaccard"] == pytest.approx(4 / 6 / 3 + 1 / 6)
    # P(overlap >= 1) = 5/6
    assert r["p_permutation"] == pytest.approx(5 / 6, abs=0.03) and r["n_permutations"] == 2000
    pd.testing.assert_frame_equal(t, compare_variants(heads, n_permutations=2000, seed=3))
