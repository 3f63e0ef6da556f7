"""Jaccard of significant-head masks between the fine-tuned model and its controls."""
import math

import numpy as np
import pandas as pd
import pytest

from seqxai.variant_comparison import compare_variants, jaccard


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
