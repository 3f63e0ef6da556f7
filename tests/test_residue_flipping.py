"""Residue flipping: a model that reads specific positions loses accuracy when IG's top residues
are flipped, and far less under random flips of the same number."""
import numpy as np
import pandas as pd
import pytest

from seqxai.residue_flipping import flip, flip_counts, residue_flipping, score, top_positions

ALPHABET = "CDEFGHIKLMNPQRSTVY"  # no W (the signal) and no A (the replacement)


def _planted(n_proteins=30, length=40, n_w=4, seed=0):
    """Each protein carries 4 W; relevance is 1 at the W and small noise elsewhere."""
    rng = np.random.default_rng(seed)
    seqs, rels = [], []
    for _ in range(n_proteins):
        s = rng.choice(list(ALPHABET), length)
        pos = rng.choice(length, n_w, replace=False)
        s[pos] = "W"
        rel = rng.uniform(-0.3, 0.3, length)
        rel[pos] = 1.0 + rng.uniform(0, 0.1, n_w)
        seqs.append("".join(s))
        rels.append(rel)
    return seqs, rels


def _w_model(task_type):
    """Target (label 0) logit = #W - 2.5, other label 0: right iff at least 3 W are left."""
    def predict(seqs):
        w = np.array([s.count("W") for s in seqs], dtype=float)
        return np.stack([w - 2.5, np.zeros_like(w)], axis=1)
    return predict


def test_flip_helpers_by_hand():
    assert flip_counts(64, 1000) == [1, 2, 4, 8, 16, 32, 64]
    assert flip_counts(64, 40) == [1, 2, 4, 8, 16, 32]
    assert top_positions(np.array([0.1, 3.0, -1.0, 3.0, 2.0]), 3).tolist() == [1, 3, 4]
    assert top_positions(np.array([0.1, 3.0]), 5).tolist() == [1, 0]  # capped at the length
    assert flip("MKWWL", [2, 4]) == "MKAWA"
    ok, p = score(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), "single_label")
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-2)), 1 / (1 + np.e)])
    ok, p = score(np.array([[0.0, 0.3], [-1.0, 0.0]]), np.array([1, 0]), "multi_label")
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(p, [1 / (1 + np.exp(-0.3)), 1 / (1 + np.e)])


@pytest.mark.parametrize("task_type", ["single_label", "multi_label"])
def test_flipping_the_relevant_residues_hurts_more_than_random(task_type):
    seqs, rels = _planted()
    t = residue_flipping(_w_model(task_type), seqs, rels, [0] * len(seqs), task_type,
                         n_max=64, n_random=4, seed=7)
    rel = t[t["order"] == "relevance"].set_index("n")
    rnd = t[t["order"] == "random"].groupby("n")["accuracy"].mean()
    assert rel.index.tolist() == [0, 1, 2, 4, 8, 16, 32]  # 64 > 40 residues is dropped
    assert len(t[(t["order"] == "random") & (t["n"] == 4)]) == 4  # one row per seed
    # predictable: 4 W; one flip leaves 3 (still right), two flips leave 2 (wrong)
    assert rel["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert rnd[0] == 1.0 and rnd[1] == 1.0  # one random flip removes at most one W
    assert rnd[2] > 0.9 and rnd[4] > 0.7    # random pairs/quads rarely hit two of 4 W in 40
    assert (rnd >= rel["accuracy"]).all() and (rnd[[2, 4, 8]] > rel["accuracy"][[2, 4, 8]] + 0.3).all()
    # the target probability falls with the relevant flips: logit -0.5 from n = 2
    assert rel.loc[2, "mean_probability"] == pytest.approx(1 / (1 + np.exp(0.5)))


def test_random_flips_are_seeded_and_capped_at_length():
    seqs, rels = _planted(n_proteins=6, length=20)
    rels[0] = rels[0][:5]  # only 5 residues attributed (truncated): flips stay inside them
    seen = []

    def predict(s):
        seen.append(list(s))
        return _w_model("single_label")(s)

    a = residue_flipping(predict, seqs, rels, [0] * 6, "single_label", n_max=16, n_random=2, seed=1)
    b = residue_flipping(_w_model("single_label"), seqs, rels, [0] * 6, "single_label", n_max=16,
                         n_random=2, seed=1)
    pd.testing.assert_frame_equal(a, b)
    for batch in seen:
        assert batch[0][5:] == seqs[0][5:]  # never beyond the attributed residues
    assert seen[-1][0][:5] == "AAAAA"       # n = 16 capped at 5 for that protein
    assert [len(s) for s in seen[-1]] == [20] * 6
    with pytest.raises(ValueError, match="relevances for"):
        residue_flipping(predict, ["MK"], [np.zeros(3)], [0], "single_label")


def test_figure_draws_both_curves_in_n_order(monkeypatch):
    from seqxai import plots

    seqs, rels = _planted(n_proteins=8, length=20)
    t = residue_flipping(_w_model("single_label"), seqs, rels, [0] * 8, "single_label", n_max=8,
                         n_random=3, seed=2)
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.residue_flipping(t.sample(frac=1.0, random_state=0), "unused.png", "ec")
    ax = figs[0].axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    rel = t[t["order"] == "relevance"].sort_values("n")
    np.testing.assert_allclose(lines["top relevance"].get_ydata(), rel["accuracy"])
    rnd = t[t["order"] == "random"].groupby("n")["accuracy"].mean()
    np.testing.assert_allclose(lines["random residues"].get_ydata(), rnd.to_numpy())
    assert [x.get_text() for x in ax.get_xticklabels()] == ["0", "1", "2", "4", "8"]


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
    t = run_residue_flipping(tmp_path / "model", tmp_path / "p.parquet", tmp_path / "s.parquet",
                             tmp_path / "e.parquet", tmp_path / "out.parquet",
                             {"n_max": 4, "n_random": 2, "replacement": "A"}, seed=1,
                             device="cpu", batch_size=2)
    assert pd.read_parquet(tmp_path / "out.parquet").equals(t)
    loaded, _, _ = pm.load_classifier(tmp_path / "model", device="cpu")
    enc = pm.encode(tok, seqs, 64)
    with torch.no_grad():
        pred = loaded(enc["input_ids"], enc["attention_mask"]).argmax(1).numpy()
    base = t[(t["n"] == 0) & (t["order"] == "relevance")]["accuracy"].iloc[0]
    assert base == pytest.approx(np.mean(pred == np.array([0, 1, 0])))
    assert sorted(t["n"].unique()) == [0, 1, 2, 4]
    emb.loc[1, "target"] = "7"
    write_table(tmp_path / "e.parquet", emb)
    with pytest.raises(DataError, match="record 1: field target '7'"):
        run_residue_flipping(tmp_path / "model", tmp_path / "p.parquet", tmp_path / "s.parquet",
                             tmp_path / "e.parquet", tmp_path / "out.parquet",
                             {"n_max": 4, "n_random": 2, "replacement": "A"}, seed=1, device="cpu")
