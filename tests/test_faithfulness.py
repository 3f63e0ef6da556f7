"""The faithfulness benchmark of attribution methods: a relevance on the true feature beats a
random one in residue flipping and in the paired test between methods; identical methods
agree perfectly; head overlap and cost ratios on cases known by hand."""
import numpy as np
import pandas as pd
import pytest
import torch

from seqxai import faithfulness as fa
from seqxai.method_cost import COST_COLUMNS, method_calls, method_cost, plain_forward_backward

ALPHABET = "CDEFGHIKLMNPQRSTVY"  # no W (the feature) and no A (the replacement)
FLIP = {"n_max": 16, "n_random": 3, "replacement": "A"}


def _planted(n_proteins=30, length=40, n_w=4, seed=0):
    """Proteins with 4 W each; the model's target logit is #W - 2.5. Relevance of the method
    "true": 1 at the W, noise elsewhere; of "noise": noise everywhere; of "inverted": -true."""
    rng = np.random.default_rng(seed)
    seqs, true, noise = [], [], []
    for _ in range(n_proteins):
        s = rng.choice(list(ALPHABET), length)
        pos = rng.choice(length, n_w, replace=False)
        s[pos] = "W"
        rel = rng.uniform(-0.3, 0.3, length)
        rel[pos] = 1.0 + rng.uniform(0, 0.1, n_w)
        seqs.append("".join(s))
        true.append(rel)
        noise.append(rng.normal(size=length))
    keys = pd.DataFrame({"accession": [f"P{k}" for k in range(n_proteins)], "target": "t"})
    return seqs, {"true": true, "noise": noise, "inverted": [-r for r in true]}, keys


def _predict(seqs):
    w = np.array([s.count("W") for s in seqs], dtype=float)
    return np.stack([w - 2.5, np.zeros_like(w)], axis=1)


@pytest.fixture(scope="module")
def flipped():
    seqs, rel, keys = _planted()
    per, tests = fa.flipping_by_method(_predict, seqs, rel, [0] * len(seqs), "single_label", keys, FLIP, 7)
    return seqs, rel, keys, per, tests


def test_the_true_feature_beats_noise_and_its_inverse(flipped):
    _, _, _, per, tests = flipped
    table = fa.method_table(per, tests, None, n_bootstrap=500, seed=0).set_index("method")
    assert table.loc["true", "rank"] == 1 and table.loc["inverted", "rank"] == 3
    # the true relevance's MoRF - LeRF area: its interval lies above noise's and above 0
    assert table.loc["true", "morf_minus_lerf_low"] > table.loc["noise", "morf_minus_lerf_high"]
    assert table.loc["true", "morf_minus_lerf_low"] > 0
    assert table.loc["inverted", "morf_minus_lerf_high"] < 0
    assert table.loc["true", "p_most_vs_random"] < 1e-4
    assert table.loc["noise", "p_most_vs_random"] > 0.01
    assert np.isnan(table.loc["true", "time_ratio"])  # no cost measured
    # the random order is drawn from the same seeds for every method: identical AOPC
    rnd = per.pivot(index="accession", columns="method", values="aopc_random")
    assert np.allclose(rnd["true"], rnd["noise"]) and np.allclose(rnd["true"], rnd["inverted"])


def test_paired_test_between_methods(flipped):
    _, _, _, per, _ = flipped
    pairs = fa.method_pair_tests(per, alpha=0.05)
    assert len(pairs) == 2 * 3  # two areas x three pairs
    row = pairs[(pairs["area"] == "morf_minus_lerf") & (pairs["method_a"] == "true")
                & (pairs["method_b"] == "noise")].iloc[0]
    assert row["n_proteins"] == 30 and row["median_difference"] > 0 and row["p"] < 1e-4
    assert (pairs["q"] >= pairs["p"] - 1e-15).all()
    # a method against a copy of itself: every difference is zero, no test
    same = pd.concat([per[per["method"] == "true"], per[per["method"] == "true"].assign(method="copy")])
    t = fa.method_pair_tests(same)
    assert (t["n_nonzero"] == 0).all() and t["p"].isna().all()


def test_identical_methods_agree_perfectly_and_inverse_ones_not(flipped):
    _, rel, keys, _, _ = flipped
    rho = fa.spearman_per_protein({"a": rel["true"], "b": [r.copy() for r in rel["true"]],
                                   "c": rel["inverted"]}, keys)
    summ = fa.agreement_summary(rho).set_index(["method_a", "method_b"])
    assert summ.loc[("a", "b"), "spearman_median"] == pytest.approx(1.0)
    assert summ.loc[("a", "c"), "spearman_median"] == pytest.approx(-1.0)
    assert summ.loc[("a", "b"), "n_proteins"] == 30


def test_spearman_matches_scipy_with_ties_and_constant_relevance():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    a = [rng.integers(0, 4, 25).astype(float), np.ones(10)]
    b = [rng.normal(size=25), rng.normal(size=10)]
    keys = pd.DataFrame({"accession": ["X", "Y"], "target": "t"})
    rho = fa.spearman_per_protein({"a": a, "b": b}, keys)["spearman"].to_numpy()
    assert rho[0] == pytest.approx(spearmanr(a[0], b[0]).statistic)
    assert np.isnan(rho[1])  # a constant relevance ranks nothing


def test_common_targets_and_length_check():
    e1 = pd.DataFrame({"accession": ["P1", "P2", "P3"], "target": "t",
                       "relevance": [np.zeros(5), np.zeros(6), np.zeros(7)]})
    e2 = pd.DataFrame({"accession": ["P3", "P1"], "target": "t", "relevance": [np.zeros(7), np.zeros(5)]})
    keys = fa.common_targets({"ig": e1, "attnlrp": e2})
    assert keys["accession"].tolist() == ["P1", "P3"]  # the first method's order
    assert [len(r) for r in fa.relevances(e2, keys)] == [5, 7]
    e2.loc[1, "relevance"] = np.zeros(4)
    with pytest.raises(ValueError, match="P1.*lengths differ"):
        fa.common_targets({"ig": e1, "attnlrp": e2})
    with pytest.raises(ValueError, match="no .accession, target."):
        fa.common_targets({"ig": e1, "x": e1.assign(target="u")})


def test_mean_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 200)
    mean, lo, hi = fa.mean_interval(x, 2000, np.random.default_rng(1))
    assert mean == pytest.approx(x.mean()) and lo < mean < hi
    # the bootstrap interval is about the normal one, mean +- 1.96 sd / sqrt(n)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert fa.mean_interval([2.0, 2.0, np.nan], 100, rng) == (2.0, 2.0, 2.0)
    assert all(np.isnan(fa.mean_interval([np.nan], 100, rng)))


def _heads(sig):
    rows = [{"annotation": "motif", "group": "all", "layer": l, "head": h, "significant": s,
             "significant_overlay": s} for (l, h), s in zip([(0, 0), (0, 1), (1, 0), (1, 1)], sig)]
    return pd.DataFrame(rows)


def test_head_overlap_reuses_the_variant_jaccard_and_skips_methods_without_heads():
    tabs = {"ig": _heads([1, 1, 0, 0]), "attnlrp": _heads([1, 1, 0, 0]), "grad_x_input": _heads([0, 1, 1, 0]),
            "attention_rollout": _heads([])[:0]}
    ov = fa.head_overlap(tabs, n_permutations=99, seed=0)
    sig = ov[ov["mask"] == "significant"].set_index(["method_a", "method_b"])
    assert set(sig.index) == {("ig", "attnlrp"), ("ig", "grad_x_input"), ("attnlrp", "grad_x_input")}
    assert sig.loc[("ig", "attnlrp"), "jaccard"] == 1.0
    assert sig.loc[("ig", "grad_x_input"), "jaccard"] == pytest.approx(1 / 3)
    # two masks of 2 of 4 heads: E[J] = sum_k P(k) k / (4 - k) = 1/6*0 + 4/6*1/3 + 1/6*1
    assert sig.loc[("ig", "attnlrp"), "expected_jaccard"] == pytest.approx(4 / 18 + 1 / 6)
    assert len(fa.head_overlap({"ig": tabs["ig"]}, 9, 0)) == 0


def test_pair_table_and_enrichment():
    agreement = pd.DataFrame({"method_a": ["ig"], "method_b": ["attnlrp"], "n_proteins": [3],
                              "spearman_median": [0.5], "spearman_q25": [0.4], "spearman_q75": [0.6]})
    tests = pd.DataFrame([{"area": a, "method_a": "ig", "method_b": "attnlrp", "median_difference": 0.1,
                           "p": 0.01, "q": 0.02} for a in fa.AREAS])
    ov = fa.head_overlap({"ig": _heads([1, 1, 0, 0]), "attnlrp": _heads([1, 0, 0, 0])}, 9, 0)
    pairs = fa.pair_table(tests, agreement, ov).iloc[0]
    assert pairs["morf_minus_lerf_q"] == 0.02 and pairs["heads_jaccard"] == 0.5
    stats = pd.DataFrame({"annotation": ["motif"], "group": ["all"], "n_proteins": [4], "median_r": [0.3],
                          "p": [0.01], "significant": [True], "rank_accuracy": [0.8],
                          "random_rank_accuracy": [0.5], "p_composition": [0.005], "mean_r": [0.2]})
    enr = fa.enrichment_by_method({"ig": stats, "attnlrp": stats.assign(median_r=0.1)})
    assert enr["method"].tolist() == ["ig", "attnlrp"] and enr["median_r"].tolist() == [0.3, 0.1]
    assert "mean_r" not in enr.columns


def test_method_cost_counts_matmul_flops_against_the_plain_pass():
    a = torch.randn(32, 32)

    def calls():
        return {"plain": lambda: a @ a, "fourfold": lambda: [a @ a for _ in range(4)]}

    cost = method_cost([calls(), calls()], repeats=1)
    assert list(cost.columns) == COST_COLUMNS and cost["method"].tolist() == ["fourfold"]
    r = cost.iloc[0]
    assert r["flops"] == 2 * 4 * 2 * 32**3 and r["flop_ratio"] == 4.0
    assert r["n_proteins"] == 2 and r["time_ratio"] > 0
    with pytest.raises(ValueError, match="plain"):
        method_cost([{"x": lambda: None}])


def test_method_calls_on_an_encoder(tmp_path):
    """AttnLRP costs one forward+backward in matmul FLOPs; IG at 4 nodes more; rollout less."""
    from seqxai import protein_model as pm

    torch.manual_seed(0)
    path = pm.build_demo_encoder({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                  "intermediate_size": 64, "max_position_embeddings": 128,
                                  "position_embedding_type": "rotary"}, tmp_path / "enc")
    model, tok = pm.make_classifier(path, 3, dropout=0.0)
    model.eval()
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
    calls = method_calls(model, tok, seq, 1, ["ig", "attnlrp", "grad_x_input", "attention_rollout"], 64,
                         n_steps=4, batch_size=4)
    assert plain_forward_backward(model, *[pm.encode(tok, [seq], 64)[k][0] for k in
                                           ("input_ids", "attention_mask")], 1).shape[-1] == 32
    cost = method_cost([calls], repeats=1).set_index("method")
    assert cost.loc["attnlrp", "flop_ratio"] == pytest.approx(1.0, abs=0.01)
    assert cost.loc["ig", "flop_ratio"] > 4 * cost.loc["attnlrp", "flop_ratio"]
    assert cost.loc["attention_rollout", "flop_ratio"] < 1.0


def test_summary_and_figure_read_the_tables(flipped, tmp_path):
    from seqxai.faithfulness_plots import agreement_matrix, faithfulness_figure
    from seqxai.summary import faithfulness_summary

    _, rel, keys, per, tests = flipped
    cost = pd.DataFrame({"method": ["true", "noise", "inverted"], "time_ratio": [2.0, 1.0, 1.0],
                         "flop_ratio": [1.0, 1.0, np.nan]})
    methods = fa.method_table(per, tests, cost, 200, 0)
    pairs = fa.pair_table(fa.method_pair_tests(per), fa.agreement_summary(fa.spearman_per_protein(rel, keys)),
                          fa.head_overlap({}, 9, 0))
    mat = agreement_matrix(pairs, ["true", "noise", "inverted"])
    assert np.allclose(mat, mat.T) and mat[0, 2] == pytest.approx(-1.0) and mat[1, 1] == 1.0
    folder = tmp_path / "ec" / "faithfulness"
    folder.mkdir(parents=True)
    enr = fa.enrichment_by_method({"true": pd.DataFrame({"annotation": ["motif", "motif"], "group": ["all", "1"],
                                                         "median_r": [0.5, 0.4]})})
    for name, tab in (("methods", methods), ("pairs", pairs), ("enrichment", enr)):
        tab.to_parquet(folder / f"{name}.parquet")
    summ = faithfulness_summary(["ec", "go"], sorted(str(p) for p in folder.iterdir()))
    assert list(summ) == ["ec"]  # go has no benchmark tables
    rec = {r["method"]: r for r in summ["ec"]["methods"]}
    assert rec["true"]["rank"] == 1 and rec["true"]["time_ratio"] == 2.0 and rec["inverted"]["flop_ratio"] is None
    assert len(summ["ec"]["pairs"]) == 3 and len(summ["ec"]["enrichment"]) == 1  # group "all" only
    faithfulness_figure(methods, pairs, tmp_path / "f.png", "ec")
    assert (tmp_path / "f.png").stat().st_size > 10000


def test_bad_input_names_the_file_and_record(tmp_path):
    from seqxai.io import DataError

    emb = pd.DataFrame({"accession": ["P1", "P9"], "target": "t", "relevance": [np.zeros(3), np.zeros(4)]})
    paths = {}
    for m in ("ig", "attnlrp"):
        paths[m] = tmp_path / f"{m}.parquet"
        emb.to_parquet(paths[m])
    pd.DataFrame({"accession": ["P1"], "sequence": ["MKW"], "length": [3], "ec": [""], "ec_class": [""],
                  "go_terms": [[]], "organism_id": [0]}).to_parquet(tmp_path / "proteins.parquet")
    with pytest.raises(DataError, match=r"ig\.parquet: record of accession P9, target t: field accession"):
        fa.run_faithfulness(tmp_path / "no_model", tmp_path / "proteins.parquet", paths, {}, {}, None, FLIP,
                            {}, {}, 0.05, 9, 0)
    emb.loc[1, "relevance"] = np.zeros(5)
    emb.to_parquet(paths["attnlrp"])
    with pytest.raises(DataError, match=r"P9, target t: relevance lengths differ"):
        fa.run_faithfulness(tmp_path / "no_model", tmp_path / "proteins.parquet", paths, {}, {}, None, FLIP,
                            {}, {}, 0.05, 9, 0)

