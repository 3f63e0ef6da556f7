"""TF-site attention mass (seqxai.tf_probe): keys in a site by hand, a planted attention pattern is
found and a positional one is not, the control's verdict, and the information floor of Tomtom."""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from seqxai.motifs import counts_from_sequences, tomtom_with_decoys
from seqxai.tf_probe import (
    control_intervals,
    masked_mass,
    reported_matches,
    site_key_mask,
    tf_control,
    tf_mass_enrichment,
    total_information,
)

ROOT = Path(__file__).resolve().parents[1]
KEY_OFFSET = np.arange(-100, 21)          # one key per offset, as a layer-0 key of the demo model


def test_site_key_mask_by_hand():
    # key span offset-3..offset+3 overlaps the site -30..-25 for offsets -33..-22
    mask = site_key_mask([[(-30, -25)], [], [(-30, -25), (0, 0)]], KEY_OFFSET, -3, 3)
    assert list(KEY_OFFSET[mask[0]]) == list(range(-33, -21))
    assert not mask[1].any()
    assert list(KEY_OFFSET[mask[2]]) == list(range(-33, -21)) + list(range(-3, 4))
    attn = np.zeros((3, 1, 1, len(KEY_OFFSET)))
    attn[:, 0, 0, KEY_OFFSET == -33] = 0.25
    attn[:, 0, 0, KEY_OFFSET == -34] = 0.5                    # just outside every site span
    assert np.allclose(masked_mass(attn, mask)[:, 0, 0], [0.25, 0.0, 0.25])


def test_control_intervals_use_a_partner_site():
    per = [[(-30, -25)], [], [(-40, -35)], []]
    S, B, ctrl = control_intervals(per, seed=0)
    assert list(S) == [0, 2] and list(B) == [1, 3]
    assert ctrl[0] == per[0] and ctrl[2] == per[2]
    assert all(ctrl[b] in (per[0], per[2]) for b in B)


def _rows(n, seed):
    """Attention rows (n TSSs, 1 layer, 3 heads) over KEY_OFFSET, Dirichlet noise; the first
    half of the TSSs has a site at -30..-25. Head 0 puts 0.3 of its mass on offset -28 when the
    site is there; head 1 puts 0.3 on -28 always (a positional head); head 2 none."""
    rng = np.random.default_rng(seed)
    with_site = np.arange(n) < n // 2
    rows = rng.dirichlet(np.ones(len(KEY_OFFSET)), (n, 1, 3)) * 0.7
    k = np.flatnonzero(KEY_OFFSET == -28)[0]
    rows[with_site, 0, 0, k] += 0.3
    rows[~with_site, 0, 0] += 0.3 / len(KEY_OFFSET)
    rows[:, 0, 1, k] += 0.3
    rows[:, 0, 2] += 0.3 / len(KEY_OFFSET)
    return rows, {"X": [[(-30, -25)] if w else [] for w in with_site]}


def test_mass_in_site_is_found_and_position_is_not():
    for seed in range(5):
        rows, iv = _rows(80, seed)
        df = tf_mass_enrichment(rows, KEY_OFFSET, iv, -3, 3, seed=seed).set_index("head")
        assert df.loc[0, "significant"] and df.loc[0, "auc"] > 0.9
        # the site's 12 keys: 0.3 planted + ~0.7 * 12/121 of noise vs only the noise
        assert 0.25 < df.loc[0, "mass_difference"] < 0.35
        assert np.isclose(df.loc[0, "mass_control"], 0.7 * 12 / 121 + 0.3 * 12 / 121, atol=0.02)
        assert not df.loc[1, "significant"] and abs(df.loc[1, "mass_difference"]) < 0.03
        assert not df.loc[2, "significant"] and abs(df.loc[2, "mass_difference"]) < 0.03
        assert (df.n_with_site == 40).all() and (df.n_site_keys == 12).all()


def test_tf_control_verdict():
    rows, iv = _rows(80, 0)
    df = tf_mass_enrichment(rows, KEY_OFFSET, iv, -3, 3, seed=0)
    v = tf_control(df, min_effect=0.1)
    assert v["pass"] and v["n_heads"] == 3 and v["n_heads_associated"] == 1
    assert np.isclose(v["share_heads_associated"], 1 / 3)
    assert v["best_per_tf"]["X"]["head"] == 0 and v["best_per_tf"]["X"]["above_floor"]
    # a floor above the effect fails the control although the test is significant
    high = tf_control(df, min_effect=0.5)
    assert not high["pass"] and high["n_heads_associated"] == 0 and high["n_tests_significant"] == 1
    # no mass planted: nothing significant, no pass even without a floor
    flat = rows.copy()
    flat[:, 0, 0] = flat[:, 0, 2]
    assert not tf_control(tf_mass_enrichment(flat, KEY_OFFSET, iv, -3, 3, seed=0), 0.0)["pass"]


def _demo_floor() -> float:
    cfg = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    return float(cfg["dna"]["probe"]["motif_match"]["min_information_content"])


def test_information_floor_keeps_the_tataat_match_and_drops_an_empty_matrix():
    rng = np.random.default_rng(0)
    n = 200

    def flanked(core, p_core):
        seqs = []
        for _ in range(n):
            s = "".join(rng.choice(list("ACGT"), 13))
            c = core if rng.random() < p_core else "".join(rng.choice(list("ACGT"), 6))
            seqs.append(s[:4] + c + s[10:])
        return counts_from_sequences(seqs)

    tataat, empty = flanked("TATAAT", 0.9), flanked("TATAAT", 0.0)
    ic = {"tataat": total_information(tataat), "empty": total_information(empty)}
    floor = _demo_floor()
    assert ic["empty"] < floor < ic["tataat"]
    targets = {"sigma70_minus10": counts_from_sequences(["TATAAT"] * 8 + ["TAAAAT", "TATATT"]),
               "sigma70_minus35": counts_from_sequences(["TTGACA"] * 8 + ["TTGAAA", "TTTACA"]),
               "PalR": counts_from_sequences(["ATGTGACGTCACAT"]),
               "RepB": counts_from_sequences(["GCCGATTTAC"])}
    for seed in range(5):                                   # the decoys' seed
        tt = reported_matches(tomtom_with_decoys({"tataat": tataat, "empty": empty}, targets, 20, seed), ic,
                              floor, 0.05)
        rep = tt[tt.reported]
        assert list(zip(rep["query"], rep.target)) == [("tataat", "sigma70_minus10")]
        # the empty matrix is never reported, whatever Tomtom's q says for it
        assert (tt[tt["query"] == "empty"].information_content < floor).all()


def test_uniform_matrix_has_no_information():
    assert np.isclose(total_information(np.full((13, 4), 50.0)), 0.0)
    assert np.isclose(total_information(counts_from_sequences(["TATAAT"])), 12.0)


def test_reported_needs_information_q_and_decoys():
    tt = pd.DataFrame({"query": ["a", "b", "c", "d"], "target": "T", "q": [0.01, 0.01, 0.2, 0.01],
                       "decoy_p": [0.048, 0.048, 0.048, 0.3], "decoy_fdr": 0.0})
    out = reported_matches(tt, {"a": 5.0, "b": 1.0, "c": 5.0, "d": 5.0}, 3.4, 0.05)
    assert list(out.reported) == [True, False, False, False]          # b: empty logo with q = 0.01
    assert list(reported_matches(tt, {"a": 5.0, "b": 1.0, "c": 5.0, "d": 5.0}, 3.4, 0.05,
                                 "decoy_fdr").reported) == [True, False, False, True]


def test_side_by_side_names_only_reported_matches():
    from seqxai.dna_modisco import PATTERN_COLUMNS, side_by_side

    heads = pd.DataFrame({"layer": [0, 1], "head": [0, 0], "consensus": ["TATAAT", "ACGTAC"], "n_sites": 100})
    tt = pd.DataFrame({"layer": [0, 0, 1], "head": [0, 0, 0], "target": ["m10", "m35", "m10"],
                       "p": [1e-4, 1e-3, 1e-5], "q": [1e-3, 1e-2, 1e-4], "orientation": "+", "offset": 0,
                       "reported": [True, False, False]})
    m, _ = side_by_side(heads, tt, pd.DataFrame(columns=PATTERN_COLUMNS), {"m10": np.full((6, 4), 0.25)})
    m = m.set_index("motif")
    assert m.loc["L0H0", "target"] == "m10" and m.loc["L0H0", "significant"]
    # L1H0 has the smallest p of all, but an unreported match: no "best" target
    assert pd.isna(m.loc["L1H0", "target"]) and not m.loc["L1H0", "significant"]
