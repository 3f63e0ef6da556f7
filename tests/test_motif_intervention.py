"""The in-silico intervention behind a 'sequence-driven' head: destroy the attended bases, rerun."""
import numpy as np
import pytest

from seqxai.motif_intervention import intervene, intervention_table, query_adjacent, replace_window
from seqxai.tss_windows import tokenize

W = 7  # receptive field of a key: offset +- 3


def _genome(n_tss=40, seed=0):
    """A random genome with TATAAT at -12..-7 of every TSS (every 300 nt, + strand)."""
    rng = np.random.default_rng(seed)
    g = rng.choice(list("ACGT"), size=300 * n_tss + 400)
    t = np.arange(n_tss) * 300 + 200
    for x in t:
        g[x - 12 : x - 6] = list("TATAAT")
    s = "".join(g)
    rc = s[::-1].translate(str.maketrans("ACGT", "TGCA"))
    return {"+": tokenize(s), "-": tokenize(rc)}, t


def _rows_fn(key_offset, peak_index):
    """A stand-in model with 1 layer and 3 heads, each reading the 7 bases centred at -9 of each
    TSS: head 0 attends there iff they hold TATAAT (a motif reader), head 1 by their A/T share (a
    composition reader), head 2 always 0.5 (positional)."""
    def rows(tokens, t_index, strands, n_layers=None):
        out = np.zeros((len(t_index), 1, 3, len(key_offset)))
        for i, (t, s) in enumerate(zip(t_index, strands)):
            w = tokens[s][t - 12 : t - 5]
            motif = "".join("ACGTN"[c] for c in w).find("TATAAT") >= 0
            out[i, 0, 0, peak_index] = 0.9 if motif else 0.05
            out[i, 0, 1, peak_index] = np.isin(w, [0, 3]).mean()
            out[i, 0, 2, peak_index] = 0.5
        return out
    return rows


@pytest.mark.parametrize("kind", ["shuffle", "random"])
def test_only_the_heads_that_read_the_destroyed_bases_lose_attention(kind):
    tokens, t = _genome()
    strands = np.array(["+"] * len(t))
    key_offset = np.arange(-100, 21)
    peak_index = int(np.flatnonzero(key_offset == -9)[0])
    rows_fn = _rows_fn(key_offset, peak_index)
    before = rows_fn(tokens, t, strands)[:, :, :, peak_index]
    top = np.full((len(t), 1, 3), -9)
    after = intervene(rows_fn, tokens, t, strands, top, np.full((1, 3), peak_index), key_offset,
                      W // 2, draws=4, kind=kind, seed=1, reach=250)
    tab = intervention_table(before, after, np.full((1, 3), -9), np.zeros((1, 3), bool), 0.05)
    motif, comp, pos = tab.iloc[0], tab.iloc[1], tab.iloc[2]
    assert motif.q < 1e-4 and motif.relative_drop > 0.5
    assert np.isnan(pos.p) and pos.relative_drop == 0.0  # no change at all: nothing to test
    if kind == "shuffle":  # the same letters: a composition reader keeps its attention
        assert comp.relative_drop == pytest.approx(0.0)
    else:  # uniform bases lower the A/T share of an A/T-rich window
        assert comp.q < 0.05 and comp.relative_drop > 0.1
    # the genome itself is left unchanged
    fresh, _ = _genome()
    assert all(np.array_equal(tokens[s], fresh[s]) for s in "+-")


def test_intervention_is_seeded_and_tss_windows_do_not_see_each_others_edits():
    tokens, t = _genome(n_tss=12)
    strands = np.array(["+"] * len(t))
    key_offset = np.arange(-100, 21)
    peak_index = int(np.flatnonzero(key_offset == -9)[0])
    rows_fn = _rows_fn(key_offset, peak_index)
    top = np.full((len(t), 1, 3), -9)
    args = (rows_fn, tokens, t, strands, top, np.full((1, 3), peak_index), key_offset, 3)
    a = intervene(*args, draws=2, kind="random", seed=5, reach=250)
    b = intervene(*args, draws=2, kind="random", seed=5, reach=250)
    np.testing.assert_array_equal(a, b)
    # with a reach as large as the genome every TSS runs alone: the same numbers
    c = intervene(*args, draws=2, kind="random", seed=5, reach=10**6)
    np.testing.assert_array_equal(a, c)


def test_replacements_and_the_query_adjacent_flag():
    rng = np.random.default_rng(0)
    w = tokenize("TATAATN")
    sh = replace_window(w, "shuffle", rng)
    assert sorted(sh[:6]) == sorted(w[:6]) and sh[6] == 4
    assert (replace_window(w, "random", rng)[:6] < 4).all()
    with pytest.raises(Exception, match="replacement"):
        replace_window(w, "reverse", rng)
    # label offset 20, causal conv of 7 (key centre shift 3): the query's own field is centred at +17
    adj = query_adjacent(np.array([-10, 10, 11, 17, 20]), 20, 7, 3)
    assert adj.tolist() == [False, False, True, True, True]
