"""Residue flipping in both directions: a model that reads specific positions loses the target
when IG's most relevant residues are flipped (MoRF), far less under random flips, and least when
the least relevant go first (LeRF); per-protein AOPC and paired Wilcoxon tests across proteins."""
import numpy as np
import pandas as pd
import pytest

from seqxai.residue_flipping import (
    aopc,
    candidate_positions,
    flip,
    flip_counts,
    flip_order,
    flipping_tests,
    residue_flipping,
    score,
    top_positions,
)

ALPHABET = "CDEFGHIKLMNPQRSTVY"  # no W (the signal) and no A (the replacement)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _planted(n_proteins=30, length=40, n_w=4, seed=0, informative=True):
    """Each protein carries 4 W; relevance is 1 at the W and small noise elsewhere (or, not
    informative, -1 at the W: the W rank last)."""
    rng = np.random.default_rng(seed)
    seqs, rels = [], []
    for _ in range(n_proteins):
        s = rng.choice(list(ALPHABET), length)
        pos = rng.choice(length, n_w, replace=False)
        s[pos] = "W"
        rel = rng.uniform(-0.3, 0.3, length)
        rel[pos] = (1.0 if informative else -1.0) + rng.uniform(0, 0.1, n_w)
        seqs.append("".join(s))
        rels.append(rel)
    return seqs, rels


def _w_model(task_type="single_label", offset=2.5):
    """Target (label 0) logit = #W - offset, other label 0: probability sigmoid(#W - offset)."""
    def predict(seqs):
        w = np.array([s.count("W") for s in seqs], dtype=float)
        return np.stack([w - offset, np.zeros_like(w)], axis=1)
    return predict


def test_flip_helpers_by_hand():
    assert flip_counts(64, 1000) == [1, 2, 4, 8, 16, 32, 64]
    assert flip_counts(64, 40) == [1, 2, 4, 8, 16, 32]
    assert flip_counts(64, 0) == []
    assert top_positions(np.array([0.1, 3.0, -1.0, 3.0, 2.0]), 3).tolist() == [1, 3, 4]
    assert flip("MKWWL", [2, 4]) == "MKAWA"
    # candidates: the attributed residues (first 5 of 7) that are not already alanine
    cand = candidate_positions("AKAWLAW", 5)
    assert cand.tolist() == [1, 3, 4]
    assert candidate_positions("AKAWLAW", 7, replacement="W").tolist() == [0, 1, 2, 4, 5]
    rel = np.array([9.0, 2.0, 9.0, 2.0, -1.0])  # the alanines' large relevance is never used
    assert flip_order(rel, cand, "most_relevant").tolist() == [1, 3, 4]  # tie 1/3: earlier first
    assert flip_order(rel, cand, "least_relevant").tolist() == [4, 1, 3]  # tie: earlier first too
    perm = flip_order(rel, cand, "random", np.random.default_rng(0))
    assert sorted(perm.tolist()) == [1, 3, 4]
    with pytest.raises(ValueError, match="order must be one of"):
        flip_order(rel, cand, "reverse")
    ok, p = score(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), "single_label")
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-2)), 1 / (1 + np.e)])
    ok, p = score(np.array([[0.0, 0.3], [-1.0, 0.0]]), np.array([1, 0]), "multi_label")
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-0.3)), 1 / (1 + np.e)])


def test_aopc_of_a_three_point_curve_by_hand():
    # p0 = 0.9; drops 0, 0.3, 0.6 at n = 0, 1, 2: mean 0.3 (n = 0 counts, Samek et al.)
    assert aopc([0.9, 0.6, 0.3]) == pytest.approx(0.3)
    assert aopc([0.5, 0.7, 0.6]) == pytest.approx((0 - 0.2 - 0.1) / 3)  # a rise is negative


def test_per_protein_curves_and_aopc_by_hand():
    """'WWKA': candidates are residues 1-3 (the A is skipped although it ranks first);
    probability sigmoid(#W - 1); MoRF flips W, W; LeRF flips K, then W."""
    curves, pp = residue_flipping(_w_model(offset=1.0), ["WWKA"], [np.array([3.0, 2.0, 1.0, 5.0])],
                                  [0], "single_label", n_max=64, n_random=3, seed=0,
                                  ids=pd.DataFrame({"accession": ["P1"], "target": ["1"]}))
    r = pp.iloc[0]
    assert (r["accession"], r["target"], r["n_candidates"]) == ("P1", "1", 3)
    assert list(r["n"]) == [0, 1, 2]  # 4 > 3 candidates is dropped
    s1, s0, sm1 = _sigmoid(1.0), _sigmoid(0.0), _sigmoid(-1.0)
    np.testing.assert_allclose(r["probability_most_relevant"], [s1, s0, sm1])
    np.testing.assert_allclose(r["probability_least_relevant"], [s1, s1, s0])
    assert r["aopc_most_relevant"] == pytest.approx((0 + (s1 - s0) + (s1 - sm1)) / 3)
    assert r["aopc_least_relevant"] == pytest.approx((s1 - s0) / 3)
    # random: the mean over seeds of curves that each lose 0..2 W; between LeRF and MoRF here
    assert r["aopc_least_relevant"] <= r["aopc_random"] <= r["aopc_most_relevant"]
    assert r["aopc_most_minus_random"] == pytest.approx(r["aopc_most_relevant"] - r["aopc_random"])
    assert r["aopc_most_minus_least"] == pytest.approx((s0 - sm1) / 3 + (s1 - s0) / 3)
    mr = curves[curves["order"] == "most_relevant"]
    assert mr["n"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(mr["mean_probability"], [s1, s0, sm1])
    assert curves["seed"][curves["order"] == "random"].tolist() == [0, 1, 2] * 3


def test_residues_already_the_replacement_are_never_flipped_nor_counted():
    """The alanines carry the largest relevance; MoRF must still flip a W first, and every
    flipped sequence differs from the input in exactly min(n, candidates) residues."""
    seqs = ["AAAAWKWL", "AWAAKKKK"]
    rels = [np.array([9, 9, 9, 9, 5, 1, 4, 0.0]), np.array([9, 5, 9, 9, 1, 1, 1, 1.0])]
    seen = []

    def predict(s):
        seen.append(list(s))
        return _w_model(offset=0.5)(s)

    curves, pp = residue_flipping(predict, seqs, rels, [0, 0], "single_label", n_max=8, n_random=2,
                                  seed=3)
    assert pp["n_candidates"].tolist() == [4, 5]
    assert list(pp["n"][0]) == [0, 1, 2, 4] and list(pp["n"][1]) == [0, 1, 2, 4]
    assert sorted(curves["n"].unique()) == [0, 1, 2, 4]  # 8 > 5 candidates of the longest
    # the first prediction is the input; then per n: MoRF, LeRF, random seed 0, seed 1
    ns = [1] * 4 + [2] * 4 + [4] * 4
    assert len(seen) == 1 + len(ns)
    for n, batch in zip(ns, seen[1:]):
        for orig, fl, k in zip(seqs, batch, pp["n_candidates"]):
            changed = [i for i, (a, b) in enumerate(zip(orig, fl)) if a != b]
            assert len(changed) == min(n, k) and all(orig[i] != "A" for i in changed)
    assert seen[1] == ["AAAAAKWL", "AAAAKKKK"]  # MoRF n = 1: the top non-alanine residue, a W
    assert seen[2] == ["AAAAWKWA", "AWAAAKKK"]  # LeRF n = 1: the lowest; ties -> earlier residue
    np.testing.assert_allclose(curves.loc[curves["n"] == 4, "mean_flipped"], 4.0)


@pytest.mark.parametrize("task_type", ["single_label", "multi_label"])
def test_morf_drops_first_lerf_last_random_between(task_type):
    seqs, rels = _planted()
    curves, pp = residue_flipping(_w_model(task_type), seqs, rels, [0] * len(seqs), task_type,
                                  n_max=64, n_random=4, seed=7)
    by = {o: curves[curves["order"] == o].groupby("n")[["accuracy", "mean_probability"]].mean()
          for o in ("most_relevant", "least_relevant", "random")}
    assert by["most_relevant"].index.tolist() == [0, 1, 2, 4, 8, 16, 32]  # 64 > 40 residues dropped
    assert len(curves[(curves["order"] == "random") & (curves["n"] == 4)]) == 4  # one row per seed
    # 4 W; one flip leaves 3 (still right), two flips leave 2 (wrong)
    assert by["most_relevant"]["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # LeRF flips the 36 non-W residues first: nothing changes up to n = 32
    assert by["least_relevant"]["accuracy"].tolist() == [1.0] * 7
    np.testing.assert_allclose(by["least_relevant"]["mean_probability"], _sigmoid(1.5))
    assert by["most_relevant"].loc[2, "mean_probability"] == pytest.approx(_sigmoid(-0.5))
    rnd = by["random"]["accuracy"]
    assert rnd[1] == 1.0 and rnd[2] > 0.9 and rnd[4] > 0.7 and rnd[32] < 0.3
    assert (rnd[[2, 4, 8]] > by["most_relevant"]["accuracy"][[2, 4, 8]] + 0.3).all()
    p = by["random"]["mean_probability"]
    assert (np.diff(p) <= 1e-12).all()  # nested random flips only ever remove W
    assert (pp["aopc_most_relevant"] > pp["aopc_random"]).all()
    assert (pp["aopc_least_relevant"] == 0).all()


def test_wilcoxon_direction_and_exact_p():
    """All 30 MoRF - random differences positive and distinct: the exact one-sided p is 2^-30.
    With anti-informative relevance (the W rank last) MoRF drops less than random: large p."""
    seqs, rels = _planted()
    _, pp = residue_flipping(_w_model(), seqs, rels, [0] * 30, "single_label", n_max=64, n_random=4,
                             seed=7)
    t = flipping_tests(pp).set_index("comparison")
    d = pp["aopc_most_relevant"] - pp["aopc_random"]
    assert (d > 0).all() and d.nunique() == 30
    r = t.loc["most_relevant vs random"]
    assert (r["n_proteins"], r["n_nonzero"], r["alternative"]) == (30, 30, "greater")
    assert r["p"] == pytest.approx(2.0 ** -30)
    assert r["median_difference"] == pytest.approx(np.median(d))
    assert r["mean_aopc_a"] == pytest.approx(pp["aopc_most_relevant"].mean())
    assert t.loc["least_relevant vs random", "alternative"] == "less"
    assert t.loc["least_relevant vs random", "p"] < 1e-6

    seqs, rels = _planted(informative=False)
    _, pp = residue_flipping(_w_model(), seqs, rels, [0] * 30, "single_label", n_max=64, n_random=4,
                             seed=7)
    t = flipping_tests(pp).set_index("comparison")
    assert t.loc["most_relevant vs random", "p"] > 0.5
    assert t.loc["most_relevant vs random", "median_difference"] <= 0
    assert t.loc["least_relevant vs random", "p"] > 0.5  # LeRF now flips the W first
    assert t.loc["most_relevant vs least_relevant", "p"] > 0.5


def test_tests_need_two_nonzero_differences_and_skip_missing_orders():
    pp = pd.DataFrame({"aopc_most_relevant": [0.2, 0.1, 0.3], "aopc_random": [0.2, 0.1, 0.1],
                       "aopc_least_relevant": [np.nan] * 3})
    t = flipping_tests(pp).set_index("comparison")
    assert t.loc["most_relevant vs random", "n_nonzero"] == 1
    assert np.isnan(t.loc["most_relevant vs random", "p"])
    assert t.loc["least_relevant vs random", "n_proteins"] == 0
    seqs, rels = _planted(n_proteins=5, length=12)
    curves, pp = residue_flipping(_w_model(), seqs, rels, [0] * 5, "single_label", n_max=4, n_random=2,
                                  orders=["most_relevant", "random"])
    assert set(curves["order"]) == {"most_relevant", "random"}
    swapped = residue_flipping(_w_model(), seqs, rels, [0] * 5, "single_label", n_max=4, n_random=2,
                               orders=["random", "most_relevant"])
    pd.testing.assert_frame_equal(curves, swapped[0])  # the config's list order changes nothing
    assert pp["aopc_least_relevant"].isna().all() and pp["aopc_most_minus_least"].isna().all()
    with pytest.raises(ValueError, match="orders must be"):
        residue_flipping(_w_model(), seqs, rels, [0] * 5, "single_label", orders=["top"])


def test_random_flips_are_seeded_and_capped_at_the_attributed_residues():
    seqs, rels = _planted(n_proteins=6, length=20)
    rels[0] = rels[0][:5]  # only 5 residues attributed (truncated): flips stay inside them
    seen = []

    def predict(s):
        seen.append(list(s))
        return _w_model()(s)

    a = residue_flipping(predict, seqs, rels, [0] * 6, "single_label", n_max=16, n_random=2, seed=1)
    b = residue_flipping(_w_model(), seqs, rels, [0] * 6, "single_label", n_max=16, n_random=2, seed=1)
    c = residue_flipping(_w_model(), seqs, rels, [0] * 6, "single_label", n_max=16, n_random=2, seed=2)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not np.allclose(a[1]["aopc_random"], c[1]["aopc_random"])  # another seed, other flips
    for batch in seen:
        assert batch[0][5:] == seqs[0][5:]  # never beyond the attributed residues
    assert seen[-1][0][:5] == "AAAAA"       # n = 16 capped at 5 for that protein
    assert [len(s) for s in seen[-1]] == [20] * 6
    assert list(a[1]["n"][0]) == [0, 1, 2, 4] and list(a[1]["n"][1]) == [0, 1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="relevances for"):
        residue_flipping(predict, ["MK"], [np.zeros(3)], [0], "single_label")
    with pytest.raises(ValueError, match="residue 2 is not finite"):
        residue_flipping(predict, ["MKL"], [np.array([0.0, np.nan, 1.0])], [0], "single_label")


def test_figure_draws_three_curves_per_variant_in_n_order(monkeypatch):
    from seqxai import plots

    seqs, rels = _planted(n_proteins=8, length=20)
    curves, tests = {}, {}
    for v, informative in (("finetuned", True), ("shuffled", False)):
        seqs, rels = _planted(n_proteins=8, length=20, informative=informative)
        c, pp = residue_flipping(_w_model(), seqs, rels, [0] * 8, "single_label", n_max=8, n_random=3,
                                 seed=2)
        curves[v], tests[v] = c.sample(frac=1.0, random_state=0), flipping_tests(pp)
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.residue_flipping(curves, tests, "unused.png", "ec")
    axes = np.array(figs[0].axes).reshape(2, 2)
    for col, v in enumerate(curves):
        c = curves[v]
        ax = axes[0, col]
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        for order, label in (("most_relevant", "most relevant first (MoRF)"),
                             ("least_relevant", "least relevant first (LeRF)")):
            want = c[c["order"] == order].sort_values("n")["mean_probability"]
            np.testing.assert_allclose(lines[label].get_ydata(), want)
        rnd = c[c["order"] == "random"].groupby("n")["accuracy"].mean()
        acc = {ln.get_label(): ln for ln in axes[1, col].get_lines()}
        np.testing.assert_allclose(acc["random residues"].get_ydata(), rnd.to_numpy())
        assert [x.get_text() for x in ax.get_xticklabels()] == ["0", "1", "2", "4", "8"]
        p = tests[v].set_index("comparison").loc["most_relevant vs random", "p"]
        assert ax.get_title().startswith(v) and f"MoRF > random p = {p:.2g}" in ax.get_title()


def test_run_residue_flipping_with_a_saved_classifier(tiny_encoder, tmp_path):
    """The rule's wiring: load the model, read the tables, and at n = 0 reproduce its predictions."""
    import torch

    from seqxai import protein_model as pm
    from seqxai.io import DataError, write_table
    from seqxai.residue_flipping import run_residue_flipping

    torch.manual_seed(3)
    model, tok = pm.make_classifier(tiny_encoder, 2, dropout=0.0)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    meta = {"task": {"name": "ec", "type": "single_label", "column": "ec_class"},
            "labels": ["1", "2"], "max_length": 64}
    pm.save_classifier(model, tok, meta, tmp_path / "model")
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "MGLIEVQKWYLLRRTT", "MSTNPKPQRKTKRNTNRRPQDV"]
    proteins = pd.DataFrame({"accession": ["A", "B", "C"], "sequence": seqs,
                             "length": [len(s) for s in seqs], "ec": "", "ec_class": ["1", "2", "1"],
                             "go_terms": [[], [], []], "organism_id": 0})
    write_table(tmp_path / "p.parquet", proteins, "proteins")
    write_table(tmp_path / "s.parquet", pd.DataFrame({"accession": ["A", "B", "C"], "split": "test",
                                                      "cluster": ["A", "B", "C"]}), "splits")
    rng = np.random.default_rng(0)
    emb = pd.DataFrame({"accession": ["A", "B", "C"], "target": ["1", "2", "1"],
                        "relevance": [rng.normal(size=len(s)).tolist() for s in seqs]})
    write_table(tmp_path / "e.parquet", emb)
    params = {"n_max": 4, "n_random": 2, "replacement": "A",
              "orders": ["most_relevant", "least_relevant", "random"]}
    outs = [tmp_path / f"{k}.parquet" for k in ("curves", "per_protein", "tests")]
    c, pp, t = run_residue_flipping(tmp_path / "model", tmp_path / "p.parquet", tmp_path / "s.parquet",
                                    tmp_path / "e.parquet", *outs, params, seed=1, device="cpu",
                                    batch_size=2)
    for path, df in zip(outs, (c, pp, t)):
        pd.testing.assert_frame_equal(pd.read_parquet(path), df, check_dtype=False)
    loaded, _, _ = pm.load_classifier(tmp_path / "model", device="cpu")
    enc = pm.encode(tok, seqs, 64)
    with torch.no_grad():
        logits = loaded(enc["input_ids"], enc["attention_mask"]).numpy()
    base = c[(c["n"] == 0) & (c["order"] == "most_relevant")]["accuracy"].iloc[0]
    assert base == pytest.approx(np.mean(logits.argmax(1) == np.array([0, 1, 0])))
    assert sorted(c["n"].unique()) == [0, 1, 2, 4]
    assert pp["accession"].tolist() == ["A", "B", "C"] and pp["target"].tolist() == ["1", "2", "1"]
    # candidates: the residues that are not already alanine (A has 2, the others none)
    assert pp["n_candidates"].tolist() == [20, 16, 22]
    p0 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose([r[0] for r in pp["probability_most_relevant"]],
                               p0[[0, 1, 2], [0, 1, 0]], rtol=1e-5)
    assert t["comparison"].tolist() == ["most_relevant vs random", "least_relevant vs random",
                                        "most_relevant vs least_relevant"]
    assert (t["n_proteins"] == 3).all()
    emb.loc[1, "target"] = "7"
    write_table(tmp_path / "e.parquet", emb)
    with pytest.raises(DataError, match="record 1: field target '7'"):
        run_residue_flipping(tmp_path / "model", tmp_path / "p.parquet", tmp_path / "s.parquet",
                             tmp_path / "e.parquet", *outs, params, seed=1, device="cpu")
    emb.loc[1, "target"] = "2"
    emb.at[2, "relevance"] = [np.nan] + emb.loc[2, "relevance"][1:]
    write_table(tmp_path / "e.parquet", emb)
    with pytest.raises(DataError, match=r"e.parquet: record 2: field relevance .*1 not finite"):
        run_residue_flipping(tmp_path / "model", tmp_path / "p.parquet", tmp_path / "s.parquet",
                             tmp_path / "e.parquet", *outs, params, seed=1, device="cpu")


def test_summary_holds_the_tests_per_task_and_variant(tmp_path):
    """summary.json's residue_flipping section: task-major paths, NaN p written as None."""
    from seqxai.io import write_table
    from seqxai.summary import residue_flipping_summary

    seqs, rels = _planted()
    _, pp = residue_flipping(_w_model(), seqs, rels, [0] * 30, "single_label", n_max=64, n_random=4,
                             seed=7)
    paths = []
    for t in ("ec", "go"):
        for v in ("finetuned", "shuffled"):
            tests = flipping_tests(pp)
            if (t, v) == ("go", "shuffled"):
                tests["p"] = np.nan
            paths.append(tmp_path / f"{t}_{v}.parquet")
            write_table(paths[-1], tests.assign(n_proteins=len(paths)))
    s = residue_flipping_summary(["ec", "go"], ["finetuned", "shuffled"], paths)
    assert [s["ec"]["finetuned"]["most_relevant vs random"]["n_proteins"],
            s["ec"]["shuffled"]["most_relevant vs random"]["n_proteins"],
            s["go"]["finetuned"]["most_relevant vs random"]["n_proteins"]] == [1, 2, 3]
    r = s["ec"]["finetuned"]["most_relevant vs random"]
    assert r["alternative"] == "greater" and r["p"] == pytest.approx(2.0 ** -30)
    assert s["go"]["shuffled"]["least_relevant vs random"]["p"] is None
    assert residue_flipping_summary(["ec"], ["finetuned"], []) == {}
    with pytest.raises(ValueError, match="4 residue flipping tables for 1 tasks x 1 variants"):
        residue_flipping_summary(["ec"], ["finetuned"], paths)
