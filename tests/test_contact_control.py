"""The demo's contact-attention control (seqxai.summary): the best head and its verdict."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from seqxai.high_confidence_attention import HighConfidenceCounter
from seqxai.summary import best_heads, contact_control_passes


def _probe(n_weights: int):
    """Two heads on a 20-residue protein with contacts (0, 10) and (3, 15): head 0 puts its
    high-confidence weights on both contacts, head 1 on the diagonal (never a contact)."""
    n = 20
    contact = np.zeros((n, n), bool)
    for i, j in ((0, 10), (3, 15)):
        contact[i, j] = contact[j, i] = True
    attn = np.zeros((1, 2, n, n))
    attn[0, 0, [0, 3, 10, 15], [10, 15, 0, 3]] = 0.9
    attn[0, 1, np.arange(n), np.arange(n)] = 0.9
    c = HighConfidenceCounter(1, 2, theta=0.3)
    for _ in range(n_weights):
        c.add(attn, {"contact": contact})
    return c.table(min_high_confidence=20, n_bootstrap=0)


def test_best_contact_head_share_background_enrichment():
    best = best_heads(_probe(10))["contact"]
    # head 0: 4 weights per protein, all on contacts; background: 4 contact entries (both
    # directions) of the 2 x 105 ordered pairs with |i-j| >= 6
    assert (best["layer"], best["head"]) == (0, 0)
    assert best["share"] == 1.0 and best["n_high_confidence"] == 40
    assert np.isclose(best["background"], 4 / 210) and np.isclose(best["enrichment"], 210 / 4)
    assert contact_control_passes(best, share=0.5, enrichment=50)
    assert not contact_control_passes(best, share=0.5, enrichment=60)  # 52.5x < 60x


def test_no_head_with_enough_weights_fails_the_control():
    # 4 proteins: head 0 has 16 high-confidence weights (< 20), head 1 80 but no contact hit
    best = best_heads(_probe(4))["contact"]
    assert (best["head"], best["share"]) == (1, 0.0)
    assert not contact_control_passes(best, share=0.01, enrichment=1.0)
    assert not contact_control_passes(None, share=0.0, enrichment=0.0)
