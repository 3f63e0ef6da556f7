import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pandas as pd
import pytest
import torch

from seqxai.dna_model import build_model
from seqxai.io import DataError
from seqxai.tf_site_enrichment import site_intervals, tf_enrichment
from seqxai.tss_probe import attention_rows, head_pfms, positive_control
from seqxai.tss_profiles import probe_window, profile_peaks, top_offsets, tss_profiles
from seqxai.tss_windows import oriented_tokens


def test_profile_mapping_on_hand_built_attention():
    # 3 TSSs, 2 layers, 2 heads, 10 keys with offsets -7..+2
    key_offset = np.arange(-7, 3)
    attn = np.zeros((3, 2, 2, 10))
    attn[:, 0, 0, 2] = 1.0                  # L0H0: always offset -5
    attn[:, 1, 1, [0, 9]] = 0.5             # L1H1: half on -7, half on +2 (outside range below)
    attn[0, 0, 1, 5] = 0.9                  # L0H1: one TSS puts 0.9 on offset -2
    attn[0, 0, 1, 6] = 0.1
    prof, offs = tss_profiles(attn, key_offset, -6, 1)
    assert offs.tolist() == list(range(-6, 2))
    assert prof[0, 0, offs.tolist().index(-5)] == 1.0 and prof[0, 0].sum() == 1.0
    assert np.isclose(prof[0, 1, offs.tolist().index(-2)], 0.3)
    assert prof[1, 1].sum() == 0.0          # both attended keys fall outside -6..1
    peak, mass = profile_peaks(prof, offs, halfwidth=1)
    assert peak[0, 0] == -5 and np.isclose(mass[0, 0], 1.0)
    assert peak[0, 1] == -2 and np.isclose(mass[0, 1], 0.3 + 0.1 / 3)
    top = top_offsets(attn, key_offset, -6, 1, k=1)
    assert top.shape == (3, 2, 2, 1) and (top[:, 0, 0, 0] == -5).all() and top[0, 0, 1, 0] == -2


def test_probe_window_offsets():
    cfg = dict(n_layers=2, context=16, conv_width=7, label_offset=20)
    Wp, off = probe_window(cfg)
    assert Wp == 2 * (16 + 6) + 1
    assert off[-1] == 20 - 3                 # the query's own key is centred 3 nt upstream
    assert np.all(np.diff(off) == 1)


def test_site_intervals_strand_aware():
    L = 100
    tss = pd.DataFrame({"position": [51, 51], "strand": ["+", "-"]})
    # site at genome 1-based 41..44; plus TSS at oriented 50 -> offsets -10..-7;
    # minus TSS oriented index L-51 = 49; site oriented 100-44=56..100-41=59 -> offsets +7..+10
    sites = pd.DataFrame({"tf": ["X"], "start": [41], "end": [44]})
    iv = site_intervals(tss, sites, L, -20, 20)
    assert iv["X"] == [[(-10, -7)], [(7, 10)]]
    assert site_intervals(tss, sites, L, -5, 5)["X"] == [[], []]


def test_tf_enrichment_separates_content_from_position():
    n = 40
    with_site = np.arange(n) < 20
    intervals = {"X": [[(-30, -20)] if w else [] for w in with_site]}
    top = np.zeros((n, 1, 2, 1), dtype=int)
    top[:, 0, 0, 0] = np.where(with_site, -25, -60)   # head 0 seeks the site when present
    top[:, 0, 1, 0] = -25                              # head 1 attends at -25 always (positional)
    df = tf_enrichment(top, intervals, seed=0)
    h0, h1 = df[df["head"] == 0].iloc[0], df[df["head"] == 1].iloc[0]
    assert h0.significant and h0.hits_with_site == 20 and h0.hits_background == 0
    assert not h1.significant and h1.hits_background == 20
    assert h0.odds_ratio > 10 and np.isclose(h1.odds_ratio, 1.0)


def test_head_pfm_reads_the_strand_orientation():
    seq = "A" * 30 + "TATAAT" + "C" * 30            # plus strand: TATAAT at 30..35
    tokens = oriented_tokens(seq)
    L = len(seq)
    # same box seen from a minus-strand TSS: oriented sequence is the revcomp
    t_plus, t_minus = 42, L - 1 - 24                # offsets of -10 etc. relative to those TSSs
    top = np.array([[[[-10]]], [[[0]]]])          # layer 1, head 1, k 1
    # plus: token 42-10 = 32 -> window 29..35 = "ATATAAT"
    # minus: oriented token t_minus; ATTATA on the minus strand is revcomp(TATAAT)
    pfm = head_pfms(tokens, np.array([t_plus, t_minus]), np.array(["+", "-"]), top, flank=3)
    assert pfm.shape == (1, 1, 7, 4)
    assert pfm[0, 0].sum() == 14
    plus_codes = pfm[0, 0].argmax(1)
    assert "".join("ACGT"[i] for i in head_pfms(tokens, np.array([t_plus]), np.array(["+"]), top[:1], 3)[0, 0].argmax(1)) == seq[29:36]
    minus_window = tokens["-"][t_minus - 3 : t_minus + 4]
    got = head_pfms(tokens, np.array([t_minus]), np.array(["-"]), top[1:], 3)[0, 0].argmax(1)
    assert (got == minus_window).all() and plus_codes.shape == (7,)


def test_attention_rows_shape_and_left_padding():
    torch.manual_seed(0)
    model = build_model(dict(n_layers=2, n_heads=2, d_model=8, context=16, attention_sink=False)).eval()
    tokens = oriented_tokens("ACGT" * 50)
    Wp, _ = probe_window(model.config)
    rows = attention_rows(model, tokens, np.array([0, 100]), np.array(["+", "-"]), batch_size=2)
    assert rows.shape == (2, 2, 2, Wp)
    assert np.allclose(rows.sum(-1), 1.0, atol=1e-5)
    # TSS at 0: query 20 - only keys Wp-1-20-16..Wp-1 can be real; pad keys get ~0 attention
    assert rows[0, :, :, : Wp - 1 - 20].sum() < 1e-6


def test_positive_control_selection():
    motifs = pd.DataFrame({"layer": [0, 0, 1], "head": [0, 1, 0], "peak_offset": [-10, -9, -30],
                           "peak_mass": [0.2, 0.3, 0.5],
                           "consensus": ["GGTATAATCC", "GGTATGCTCC", "TTGACAGGGG"]})
    el = {"consensus": "TATAAT", "centre": -9.5}
    pc = positive_control(motifs, el, 3, 1)
    assert pc["found"] and (pc["layer"], pc["head"]) == (0, 0) and pc["mismatches"] == 0
    pc35 = positive_control(motifs, {"consensus": "TTGACA", "centre": -32.5}, 3, 1)
    assert pc35["found"] and (pc35["layer"], pc35["head"]) == (1, 0)
    none = positive_control(motifs.iloc[[1]], el, 3, 1)
    assert not none["found"] and none["mismatches"] == 2


def test_sequence_driven_criterion_and_preference():
    from seqxai.tss_background import sequence_driven

    got = sequence_driven(np.array([0.30, 0.30, 0.30, 0.30]), np.array([0.15, 0.16, np.nan, 0.0]), 2.0)
    assert list(got) == [True, False, False, True]        # 2x exactly passes; no background fails
    p = np.array([0.001, 0.001, 0.001, 0.2])
    assert list(sequence_driven(np.full(4, 0.3), np.array([0.15, 0.16, np.nan, 0.0]), 2.0, p, 0.01)) == \
        [True, False, False, False]                        # not significant: not sequence-driven


def test_peak_vs_background_p_against_scipy():
    from scipy.stats import mannwhitneyu

    from seqxai.tss_background import attention_at_offset, peak_vs_background_p

    rng = np.random.default_rng(0)
    key_offset = np.array([-12, -11, -10, -9])
    rows = rng.random((30, 1, 2, 4))
    bg = rng.random((40, 1, 2, 4)) * 0.8
    peak = np.array([[-10, -12]])
    at = attention_at_offset(rows, key_offset, peak)
    assert np.array_equal(at[:, 0, 0], rows[:, 0, 0, 2]) and np.array_equal(at[:, 0, 1], rows[:, 0, 1, 0])
    p = peak_vs_background_p(at, attention_at_offset(bg, key_offset, peak))
    want = mannwhitneyu(rows[:, 0, 0, 2], bg[:, 0, 0, 2], alternative="greater").pvalue
    assert np.isclose(p[0, 0], want)
    motifs = pd.DataFrame({"layer": [0, 0], "head": [0, 1], "peak_offset": [-10, -9], "peak_mass": [0.9, 0.3],
                           "consensus": ["GGTATAATCC", "GGTATAATCC"], "sequence_driven": [False, True]})
    pc = positive_control(motifs, {"consensus": "TATAAT", "centre": -9.5}, 3, 1)
    assert (pc["head"], pc["sequence_driven"], pc["n_sequence_driven_candidates"]) == (1, True, 1)
    pc = positive_control(motifs.assign(sequence_driven=False), {"consensus": "TATAAT", "centre": -9.5}, 3, 1)
    assert (pc["head"], pc["sequence_driven"]) == (0, False)      # none: the largest peak mass


def test_background_positions_keep_away_from_tss():
    from seqxai.tss_background import background_positions

    t = np.array([100, 500, 300])
    s = np.array(["+", "+", "-"])
    bt, bs = background_positions(t, s, 1000, 41, 50, 20, seed=3)
    assert len(bt) == 41 and (bs == "+").sum() == 21 and (bs == "-").sum() == 20
    for strand in "+-":
        d = np.abs(bt[bs == strand][:, None] - t[s == strand][None, :])
        assert d.min() > 50
    assert (bt + 20 < 1000).all() and len(set(zip(bt, bs))) == 41
    with pytest.raises(DataError, match="n_background = 2000"):
        background_positions(t, s, 1000, 2000, 50, 20)


def test_background_positions_match_the_tss_a_t_share():
    """A genome whose first half is A/T-rich (80 %) and second half G/C-rich (20 % A/T), TSSs only in
    the A/T-rich half: unmatched background positions fall half in each, matched ones follow the
    TSSs' A/T share of -40..0."""
    from seqxai.tss_background import at_share, background_positions
    from seqxai.tss_windows import oriented_tokens, tokenize

    rng = np.random.default_rng(0)
    n = 40000
    g = np.where(np.arange(n) < n // 2, rng.choice(list("ACGT"), n, p=[.4, .1, .1, .4]),
                 rng.choice(list("ACGT"), n, p=[.1, .4, .4, .1]))
    tokens = oriented_tokens("".join(g))
    t = np.arange(1000, n // 2 - 1000, 400)
    s = np.array(["+"] * len(t))
    match = at_share(tokens["+"], t)
    assert np.allclose(at_share(tokenize("AATTGGCC" * 10), np.array([40]), (-3, 4)), [0.5])
    plain_t, plain_s = background_positions(t, s, n, 200, 60, 20, seed=1)
    bt, bs = background_positions(t, s, n, 200, 60, 20, seed=1, tokens=tokens, match_at=match)
    share = np.concatenate([at_share(tokens[x], bt[bs == x]) for x in "+-"])
    plain = np.concatenate([at_share(tokens[x], plain_t[plain_s == x]) for x in "+-"])
    assert abs(np.median(share) - np.median(match)) < 0.05 and np.median(plain) < 0.6
    assert (share > 0.6).mean() > 0.9


def test_background_tells_positional_from_sequence_driven_heads(monkeypatch):
    """Two hand-made heads on a demo genome with exact TATAAT boxes at -12..-7: head 0 always
    attends at offset -10 (positional), head 1 attends to the TATAAT in its window wherever it is
    (sequence-driven). Both peak at -10 around TSSs; only head 0 keeps the peak around random
    non-TSS positions, and the probe's background columns say so."""
    import seqxai.tss_probe as tp
    from seqxai.synth_dna import make_demo_genome

    genome, tss, *_ = make_demo_genome({"genome_length": 60000, "n_promoters": 120, "box_mutation_rate": 0.0,
                                        "tss_jitter": 0, "tfs": []}, seed=4)
    model = build_model(dict(n_layers=1, n_heads=2, d_model=8, d_head=4, context=150)).eval()
    Wp, key_offset = probe_window(model.config)
    box = np.array([3, 0, 3, 0, 0, 3])                                    # TATAAT

    def fake_rows(model_, tokens, t_index, strands, batch_size=32, device="cpu", n_layers=None):  # 1 layer
        rows = np.zeros((len(t_index), 1, 2, Wp), dtype=np.float32)
        rows[:, 0, 0, np.flatnonzero(key_offset == -10)] = 1.0
        for i, (t, s) in enumerate(zip(t_index, strands)):
            win = tokens[s][max(t - 100, 0) : t + 15]
            hits = [o for o in range(len(win) - 5) if (win[o : o + 6] == box).all()]
            if hits:                                                      # the box's 3rd base
                rows[i, 0, 1, np.flatnonzero(key_offset == hits[-1] + max(t - 100, 0) - t + 2)] = 1.0
            else:
                rows[i, 0, 1, :] = 1.0 / Wp
        return rows

    monkeypatch.setattr(tp, "attention_rows", fake_rows)
    sites = pd.DataFrame(columns=["site_id", "tf", "chrom", "start", "end", "strand"])
    res = tp.probe_tss_attention(model, genome, tss, sites, {}, dict(n_background=400), seed=1)
    m = res["head_motifs"].set_index("head")
    assert (m.peak_offset == -10).all() and (m.profile_at_peak > 0.95).all()
    assert m.loc[0, "background_at_peak"] > 0.95                          # positional: peak kept
    assert m.loc[1, "background_at_peak"] < 0.05                          # sequence-driven: peak gone
    assert list(m.background_driven) == [False, True]                     # the background comparison
    # ... and the intervention that decides: destroying head 1's attended box (a TATAAT) moves
    # its attention away from -10 in every held-out TSS; head 0 does not care
    assert list(m.sequence_driven) == [False, True]
    assert m.loc[1, "intervention_q"] < 1e-3 and m.loc[1, "intervention_relative_drop"] > 0.5
    assert m.loc[0, "intervention_relative_drop"] == 0.0 and np.isnan(m.loc[0, "intervention_p"])
    assert (m.peak_offset_train == -10).all() and not m.query_adjacent.any()
    pc = res["summary"]["positive_control"]["minus10"]
    assert {"profile_at_peak", "background_at_peak", "background_max"} <= set(pc)
    # both heads peak at -10 with the same mass; the sequence-driven one is the -10 head
    assert (pc["layer"], pc["head"], pc["sequence_driven"], pc["n_sequence_driven_candidates"]) == (0, 1, True, 1)
    prof = res["profiles"]
    bg = prof[(prof["head"] == 1) & (prof.offset == -10)].background_attention.iloc[0]
    assert np.isclose(bg, m.loc[1, "background_at_peak"])
