"""Integrated gradients: agrees with Captum, zero on special tokens, exact latent conductance."""
import numpy as np
import pytest
import torch
from conftest import tiny_bert

from seqxai import attribution as at
from seqxai import protein_model as pm
from seqxai.io import DataError

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"


@pytest.fixture(scope="module")
def clf(tiny_encoder):
    torch.manual_seed(1)
    model, tok = pm.make_classifier(tiny_encoder, 3, dropout=0.0)
    # Non-trivial head so the logits depend on the input.
    torch.nn.init.normal_(model.head.weight, std=0.5)
    model.eval()
    enc = pm.encode(tok, [SEQ], 64)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    base = at.baseline_ids(ids, set(tok.all_special_ids), tok.pad_token_id)
    return model, tok, ids, att, base


@pytest.fixture(scope="module", params=["esm", "bert"])
def family_clf(request, clf, tmp_path_factory):
    """(family, model, tok, ids, att, base) for a tiny ESM (the ``clf`` fixture) and a tiny BERT."""
    if request.param == "esm":
        return ("esm", *clf)
    torch.manual_seed(1)
    model, tok = pm.make_classifier(tiny_bert(tmp_path_factory.mktemp("bert") / "enc"), 3,
                                    dropout=0.0)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    model.eval()
    enc = pm.encode(tok, [SEQ], 64)
    ids, att = enc["input_ids"][0], enc["attention_mask"][0]
    return "bert", model, tok, ids, att, at.baseline_ids(ids, set(tok.all_special_ids),
                                                          tok.pad_token_id)


def _fwd_kwargs(model, ids, att):
    fwd = {"residue_mask": model.residue_mask(ids[None], att[None]),
           "position_ids": model.position_ids(ids[None])}
    return {k: v for k, v in fwd.items() if v is not None}


def test_baseline_keeps_special_tokens_and_pads_residues(clf):
    model, tok, ids, att, base = clf
    assert base[0] == tok.cls_token_id and base[-1] == tok.eos_token_id
    assert (base[1:-1] == tok.pad_token_id).all()
    assert len(base) == len(SEQ) + 2


def test_embedding_ig_matches_captum(family_clf):
    from captum.attr import LayerIntegratedGradients

    family, model, tok, ids, att, base = family_clf
    res = at.integrated_gradients(model, ids, att, 2, base, n_steps=24, batch_size=7)
    fwd = _fwd_kwargs(model, ids, att)
    lig = LayerIntegratedGradients(lambda i, a: model(i, a, **fwd)[:, 2], model.encoder.embeddings)
    ref = lig.attribute(ids[None], baselines=base[None], additional_forward_args=(att[None],),
                        n_steps=24, method="gausslegendre").sum(-1)[0].detach().numpy()
    np.testing.assert_allclose(res["embedding"], ref, atol=1e-5, rtol=1e-4)
    assert np.abs(ref).max() > 1e-3  # the comparison is not between two zero vectors


def test_special_tokens_get_exactly_zero_and_completeness(clf):
    model, tok, ids, att, base = clf
    res = at.integrated_gradients(model, ids, att, 0, base, n_steps=128, batch_size=64)
    assert res["embedding"][0] == 0.0 and res["embedding"][-1] == 0.0
    gap = res["f_input"] - res["f_baseline"]
    assert abs(gap) > 1e-3
    assert abs(res["delta"]) < 0.05 * abs(gap)


def _naive_head_conductance(model, ids, att, base, target, n_steps, eps=1e-3):
    """Reference: sum_k w_k g(alpha_k) * central finite difference of h along the path."""
    alphas, weights = at.gauss_legendre(n_steps)
    fwd = {"residue_mask": model.residue_mask(ids[None], att[None]),
           "position_ids": model.position_ids(ids[None])}
    mods = at.attention_modules(model.encoder)
    emb = {}
    h = model.encoder.embeddings.register_forward_hook(lambda m, i, o: emb.__setitem__("e", o.detach()))
    with torch.no_grad():
        model(ids[None], att[None], **fwd)
        e = emb["e"]
        model(base[None], att[None], **fwd)
        e0 = emb["e"]
    h.remove()

    def run(path, grad):
        ctx = {}
        hs = [model.encoder.embeddings.register_forward_hook(lambda m, i, o: path)]
        for l, mod in enumerate(mods):
            def keep(m, i, o, l=l):
                c = o[0]
                if grad:
                    c.retain_grad()
                ctx[l] = c
            hs.append(mod.register_forward_hook(keep))
        out = model(ids[None], att[None], **fwd)[0, target]
        for x in hs:
            x.remove()
        return out, ctx

    total = None
    for a, w in zip(alphas, weights):
        path = (e0 + a * (e - e0)).requires_grad_(True)
        out, ctx = run(path, True)
        out.backward()
        with torch.no_grad():
            _, up = run(e0 + (a + eps) * (e - e0), False)
            _, dn = run(e0 + (a - eps) * (e - e0), False)
        contrib = torch.stack([w * ctx[l].grad[0] * (up[l][0] - dn[l][0]) / (2 * eps)
                               for l in range(len(mods))])
        total = contrib if total is None else total + contrib
    n_heads = model.encoder.config.num_attention_heads
    L, T, H = total.shape
    return total.view(L, T, n_heads, H // n_heads).sum(-1).permute(0, 2, 1).detach().numpy()


def test_head_conductance_matches_finite_differences(clf):
    model, tok, ids, att, base = clf
    res = at.integrated_gradients(model, ids, att, 1, base, n_steps=8, batch_size=3)
    ref = _naive_head_conductance(model, ids, att, base, 1, 8)
    assert res["heads"].shape == (2, 4, len(SEQ) + 2)
    scale = np.abs(ref).max()
    assert scale > 1e-4
    np.testing.assert_allclose(res["heads"], ref, atol=2e-3 * scale)


def test_batching_does_not_change_results(clf):
    model, tok, ids, att, base = clf
    a = at.integrated_gradients(model, ids, att, 1, base, n_steps=10, batch_size=10)
    b = at.integrated_gradients(model, ids, att, 1, base, n_steps=10, batch_size=3)
    np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-6)
    np.testing.assert_allclose(a["heads"], b["heads"], atol=1e-6)


def test_attribution_targets_by_task():
    import pandas as pd

    proteins = pd.DataFrame({"accession": ["A", "B", "C"], "sequence": ["MK", "MR", "MQ"],
                             "ec_class": ["1", "2", ""],
                             "go_terms": [["GO:1"], ["GO:1", "GO:2"], []]})
    splits = pd.DataFrame({"accession": ["A", "B", "C"], "split": ["test", "test", "train"]})
    ec = at.attribution_targets(proteins, splits, {"task": {"type": "single_label", "column": "ec_class"},
                                                   "labels": ["1", "2"]})
    assert ec[["accession", "target_index", "target_label"]].values.tolist() == [["A", 0, "1"], ["B", 1, "2"]]
    go = at.attribution_targets(proteins, splits, {"task": {"type": "multi_label", "column": "go_terms",
                                                            "attribute_terms": ["GO:2"]},
                                                   "labels": ["GO:1", "GO:2"]})
    assert go[["accession", "target_index"]].values.tolist() == [["B", 1]]


def test_gauss_legendre_integrates_by_hand():
    # int_0^1 a^5 da = 1/6 is exact with 3 nodes (degree <= 2n-1); int_0^1 e^a da = e - 1.
    alphas, weights = at.gauss_legendre(3)
    assert np.all((alphas > 0) & (alphas < 1)) and weights.sum() == pytest.approx(1.0)
    assert np.sum(weights * alphas**5) == pytest.approx(1 / 6, abs=1e-14)
    assert np.sum(weights * alphas**6) != pytest.approx(1 / 7, abs=1e-6)  # degree 6 is not exact
    a, w = at.gauss_legendre(8)
    assert np.sum(w * np.exp(a)) == pytest.approx(np.e - 1, abs=1e-13)
    # 2-point rule by hand: nodes (1 -+ 1/sqrt(3)) / 2, weights 1/2.
    a2, w2 = at.gauss_legendre(2)
    np.testing.assert_allclose(a2, [(1 - 3**-0.5) / 2, (1 + 3**-0.5) / 2])
    np.testing.assert_allclose(w2, [0.5, 0.5])


def test_layer_output_conductance_is_complete(clf):
    """Every layer output is a cut: at each node sum_u g_u dh_u/dalpha = dF/dalpha (chain rule), so
    its conductance sums to the same quadrature of F along the path as the embedding IG; the
    residual delta is quadrature error only (max pooling has kinks) and shrinks with more nodes."""
    model, tok, ids, att, base = clf
    coarse = at.integrated_gradients(model, ids, att, 0, base, n_steps=4, batch_size=4)
    fine = at.integrated_gradients(model, ids, att, 0, base, n_steps=64, batch_size=32)
    gap = fine["f_input"] - fine["f_baseline"]
    assert fine["layer_delta"].shape == (2,)
    for res in (coarse, fine):
        np.testing.assert_allclose(res["layer_delta"], res["delta"], atol=1e-5)
    assert abs(coarse["delta"]) > 0.1 * abs(gap)  # the check is not between two zeros
    assert abs(fine["delta"]) < 0.02 * abs(gap)


def test_gather_module_imports_without_torch(tmp_path):
    """gather_attributions runs in the analysis env (no torch): import and run it with torch blocked."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    emb = pd.DataFrame({"accession": ["B", "A"], "target": ["1", "1"], "n_residues": [2, 2],
                        "relevance": [[0.5, 0.5], [1.0, 0.9]], "relevance_start": 0.0,
                        "relevance_end": 0.0, "f_input": [2.0, 3.0], "f_baseline": [1.0, 1.0],
                        "delta": [0.0, -0.1], "layer_delta": [[0.01, 0.2], [0.0, 0.0]]})
    emb.to_parquet(tmp_path / "s1.parquet")
    heads = pd.DataFrame({"accession": ["A"] * 3, "target": "1", "layer": [10, 2, 0], "head": 0,
                          "relevance": [[1.0, 2.0]] * 3, "relevance_start": 0.0,
                          "relevance_end": 0.0})
    heads.to_parquet(tmp_path / "h1.parquet")
    # A finder that refuses torch, as in an env without it (sys.modules['torch'] = None would
    # also block it, but scipy then trips over the None entry when it probes for torch arrays).
    code = f"""
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, NoTorch())
sys.path.insert(0, {str(scripts)!r})
try:
    import seqxai.attribution
    raise SystemExit('the blocker does not block torch')
except ImportError:
    pass
from seqxai.attribution_tables import gather_attributions
import seqxai.head_statistics  # the statistics rule runs in the same torch-free env
d = {str(tmp_path)!r}
gather_attributions([d + '/s1.parquet'], [d + '/h1.parquet'], d + '/e.parquet', d + '/h.parquet',
                    d + '/c.parquet', 0.05)
assert 'torch' not in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = pd.read_parquet(tmp_path / "e.parquet")
    assert out["accession"].tolist() == ["A", "B"]
    # A: embedding 0.1/2 = 0.05 (not above); B: layer 1 output 0.2/1 = 0.2 > 0.05
    assert out["delta_flagged"].tolist() == [False, True]
    assert pd.read_parquet(tmp_path / "h.parquet")["layer"].tolist() == [0, 2, 10]


def _head_rows(proteins, n_layers=12, n_heads=2, seed=0):
    """Head rows of {accession: (targets, length)} as a shard writes them: per protein and
    target, then layer and head; float32 relevance lists."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = [{"accession": acc, "target": t, "layer": l, "head": h,
             "relevance": rng.normal(size=L).astype(np.float32),
             "relevance_start": float(rng.normal()), "relevance_end": float(rng.normal())}
            for acc, (targets, L) in proteins.items() for t in targets
            for l in range(n_layers) for h in range(n_heads)]
    return pd.DataFrame(rows, columns=["accession", "target", "layer", "head", "relevance",
                                       "relevance_start", "relevance_end"])


def test_gather_streams_heads_shard_by_shard_in_the_documented_order(tmp_path):
    """Shards of 12 layers (numeric order past 9) with rows out of order, an empty shard as
    attribute_shard writes it (untyped columns) and a protein with two targets: the streamed
    head table holds the rows of the old in-memory concat, each shard sorted by accession,
    target, layer and head, the shards in their order; float32 lists stay float32."""
    import pandas as pd
    import pyarrow.parquet as pq

    from seqxai.attribution_tables import HEAD_COLUMNS, concat_shards, gather_attributions
    from seqxai.io import read_table, write_table

    shards = [{"Q9": (["2"], 5), "A1": (["1", "3"], 4)}, {}, {"C3": (["1"], 6), "B2": (["2"], 3)}]
    emb_paths, head_paths = [], []
    for s, proteins in enumerate(shards):
        heads = (_head_rows(proteins, seed=s).sample(frac=1.0, random_state=s) if proteins
                 else pd.DataFrame([], columns=HEAD_COLUMNS))
        emb = pd.DataFrame([{"accession": a, "target": t, "n_residues": L,
                             "relevance": np.ones(L, np.float32), "relevance_start": 0.0,
                             "relevance_end": 0.0, "f_input": 1.0, "f_baseline": 0.0, "delta": 0.0,
                             "layer_delta": [0.0]} for a, (ts, L) in proteins.items() for t in ts])
        emb_paths.append(tmp_path / f"e{s}.parquet")
        head_paths.append(tmp_path / f"h{s}.parquet")
        write_table(emb_paths[-1], emb)
        write_table(head_paths[-1], heads)
    outs = [tmp_path / "out" / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
    gather_attributions(emb_paths, head_paths, *outs, 0.05)
    got = read_table(outs[1])
    old = concat_shards([read_table(p) for p in head_paths])  # the in-memory gather, all sorted
    keys = ["accession", "target", "layer", "head"]

    def same(a, b):
        a, b = a.reset_index(drop=True), b.reset_index(drop=True)
        pd.testing.assert_frame_equal(a.drop(columns="relevance"), b.drop(columns="relevance"),
                                      check_dtype=False)
        np.testing.assert_array_equal(np.concatenate(a["relevance"].to_list()),
                                      np.concatenate(b["relevance"].to_list()))

    same(got.sort_values(keys, kind="stable"), old)  # the same rows
    blocks = got[["accession", "target"]].drop_duplicates()
    assert list(blocks.itertuples(index=False, name=None)) == [
        ("A1", "1"), ("A1", "3"), ("Q9", "2"), ("B2", "2"), ("C3", "1")]  # shard order
    for (_acc, _t), rows in got.groupby(["accession", "target"], sort=False):
        assert rows.index.tolist() == list(range(rows.index[0], rows.index[0] + 24))  # contiguous
        assert rows["layer"].tolist() == [l for l in range(12) for _ in range(2)]
        assert rows["head"].tolist() == [0, 1] * 12
    same(got, pd.concat([read_table(p).sort_values(keys, kind="stable") for p in head_paths[::2]]))
    schema = pq.read_schema(outs[1])
    assert str(schema.field("relevance").type) == "list<element: float>"
    assert str(schema.field("layer").type) == "int64"
    assert read_table(outs[0])["accession"].tolist() == ["A1", "A1", "B2", "C3", "Q9"]  # sorted
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_gather_of_empty_shards_writes_a_typed_empty_head_table(tmp_path):
    """attribution.layers false (or no targets): every head shard is empty and untyped."""
    import pandas as pd
    import pyarrow.parquet as pq

    from seqxai.attribution_tables import HEAD_COLUMNS, HEADS_SCHEMA, gather_heads
    from seqxai.io import write_table

    paths = [tmp_path / f"h{s}.parquet" for s in range(2)]
    for p in paths:
        write_table(p, pd.DataFrame([], columns=HEAD_COLUMNS))
    assert gather_heads(paths, tmp_path / "heads.parquet") == 0
    assert pq.read_schema(tmp_path / "heads.parquet").equals(HEADS_SCHEMA)


def test_convergence_summary_by_hand():
    import pandas as pd

    from seqxai.attribution_tables import convergence_summary, flag_convergence

    emb = pd.DataFrame({"f_input": [2.0, 5.0, 1.0], "f_baseline": [0.0, 1.0, 1.0],
                        "delta": [0.1, -0.8, 0.0], "layer_delta": [[0.0], [0.04], [0.0]]})
    s = convergence_summary(emb, 0.1).set_index("layer")
    # relative deltas at the embedding: 0.05, 0.2, 0 / 1e-12 = 0 (gap 0, delta 0)
    assert s.loc[-1, "n_flagged"] == 1 and s.loc[-1, "median_abs_delta"] == pytest.approx(0.1)
    assert s.loc[-1, "max_abs_delta"] == pytest.approx(0.8)
    assert s.loc[-1, "max_relative_delta"] == pytest.approx(0.2)
    assert s.loc[0, "level"] == "layer_output" and s.loc[0, "n_flagged"] == 0
    assert s.loc[0, "max_relative_delta"] == pytest.approx(0.01)
    f = flag_convergence(emb, 0.1)
    assert f["delta_flagged"].tolist() == [False, True, False]
    np.testing.assert_allclose(f["relative_delta"], [0.05, 0.2, 0.0])


def test_one_pass_over_all_layers_equals_one_run_per_layer(clf):
    """The original ran the whole path once per layer; hooking all layers at once gives the same."""
    model, tok, ids, att, base = clf
    every = at.integrated_gradients(model, ids, att, 2, base, n_steps=6, batch_size=6)
    for l in range(2):
        one = at.integrated_gradients(model, ids, att, 2, base, n_steps=6, batch_size=6, layer_ids=[l])
        assert one["heads"].shape == (1, 4, len(SEQ) + 2)
        np.testing.assert_allclose(one["heads"][0], every["heads"][l], atol=1e-6)
        np.testing.assert_allclose(one["layer_delta"][0], every["layer_delta"][l], atol=1e-6)


# --- sharding by estimated cost ------------------------------------------------------------


def _loads(cost, shard, n_shards):
    return np.bincount(shard, weights=cost, minlength=n_shards)


def test_balanced_shards_by_hand():
    # LPT on 2 shards: 5->A, 4->B, 3->B (7), 3->A (8), 3->B (10); the optimum is 9 (5+4 | 3+3+3),
    # within LPT's 4/3 - 1/(3m) = 7/6 bound. Ties go to the lowest shard, equal costs in input order.
    shard = at.balanced_shards(np.array([3, 5, 3, 4, 3]), 2)
    assert shard.tolist() == [1, 0, 0, 1, 1]
    assert sorted(_loads(np.array([3, 5, 3, 4, 3]), shard, 2)) == [8, 10]
    assert at.balanced_shards(np.array([2, 2, 2]), 5).tolist() == [0, 1, 2]  # empty shards stay empty
    with pytest.raises(ValueError, match="n_shards"):
        at.balanced_shards(np.array([1]), 0)


def test_balanced_shards_within_lpt_bound_of_brute_force_optimum():
    import itertools

    rng = np.random.default_rng(3)
    for _ in range(30):
        n, m = int(rng.integers(3, 9)), int(rng.integers(2, 4))
        cost = rng.integers(1, 50, n)
        best = min(_loads(cost, np.array(a), m).max() for a in itertools.product(range(m), repeat=n))
        got = _loads(cost, at.balanced_shards(cost, m), m).max()
        assert best <= got <= (4 / 3 - 1 / (3 * m)) * best + 1e-9


def _check_balance(cost, n_shards):
    """Every item in exactly one shard; max/mean <= 1.2 wherever the list-scheduling bound
    max <= mean + (1 - 1/m) max(cost) guarantees it; returns max/mean."""
    shard = at.balanced_shards(cost, n_shards)
    assert shard.shape == cost.shape and shard.min() >= 0 and shard.max() < n_shards
    loads = _loads(cost, shard, n_shards)
    assert loads.sum() == cost.sum()  # each item counted once
    mean = cost.sum() / n_shards
    assert loads.max() <= mean + (1 - 1 / n_shards) * cost.max() + 1e-9
    if (1 - 1 / n_shards) * cost.max() <= 0.2 * mean:
        assert loads.max() <= 1.2 * mean
    np.testing.assert_array_equal(shard, at.balanced_shards(cost.copy(), n_shards))  # deterministic
    return loads.max() / mean


def test_balanced_shards_on_log_normal_lengths():
    """Protein lengths are roughly log-normal (median ~350, long tail); cut at 998 residues
    like the paper preset. With >= 8 proteins per shard LPT stays within 1.2x of the mean."""
    rng = np.random.default_rng(0)
    for n, m in [(200, 8), (400, 50), (1000, 100), (2700, 400), (60, 2)]:
        lengths = np.minimum(np.round(rng.lognormal(np.log(350), 0.6, n)).astype(int), 998)
        cost = at.estimated_cost(["A" * x for x in lengths], 1000, 500)
        assert _check_balance(cost, m) <= 1.2, (n, m)


def test_balanced_shards_on_real_enzyme_lengths(shared_dir):
    """Real Swiss-Prot enzymes (CLEAN); round robin, the previous assignment, is worse than 1.2x."""
    import pandas as pd

    seqs = pd.read_csv(shared_dir / "data/protein/clean_split10_ec.csv", sep="\t")["Sequence"]
    cost = at.estimated_cost(seqs.iloc[:800], 1000, 500)
    assert cost.max() == 1000 * 500  # long enzymes are cut at max_length
    assert _check_balance(cost, 40) <= 1.01
    round_robin = _loads(cost, np.arange(len(cost)) % 40, 40)
    assert round_robin.max() / round_robin.mean() > 1.2


def test_shard_targets_on_the_demo_every_protein_once():
    """Demo proteins (config/demo.yaml, both tasks; GO proteins carry several targets): each
    protein with all its targets lands in exactly one shard, shards within 1.2x of the mean."""
    from pathlib import Path

    import pandas as pd
    import yaml

    from seqxai.splits import random_split
    from seqxai.synth_protein import generate_proteins

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/demo.yaml").read_text())
    proteins = generate_proteins(**cfg["data"]["demo"]["protein"], seed=cfg["seed"])["proteins"]
    splits = random_split(proteins["accession"], cfg["split"]["fractions"], seed=cfg["seed"])
    ec = at.attribution_targets(proteins, splits, {
        "task": {"type": "single_label", "column": "ec_class"},
        "labels": sorted(set(proteins["ec_class"]) - {""})})
    terms = sorted({t for ts in proteins["go_terms"] for t in ts})
    go = at.attribution_targets(proteins, splits, {"task": {"type": "multi_label",
                                                            "column": "go_terms"}, "labels": terms})
    assert go["accession"].duplicated().any()  # some proteins have several targets
    for targets in (ec, go):
        for n_shards in (2, 3, 7):
            parts = [at.shard_targets(targets, s, n_shards, 256, 32) for s in range(n_shards)]
            both = pd.concat(parts)
            assert sorted(both.index) == list(targets.index)  # every row exactly once
            owners = [set(p["accession"]) for p in parts]
            assert sum(len(o) for o in owners) == targets["accession"].nunique()
            cost = [at.estimated_cost(p["sequence"], 256, 32).sum() for p in parts]
            assert max(cost) <= 1.2 * np.mean(cost)


@pytest.fixture
def shard_inputs(clf, tmp_path):
    """A saved classifier and a proteins/splits table pair of five test proteins."""
    import pandas as pd

    model, tok, *_ = clf
    meta = {"task": {"type": "single_label", "column": "ec_class"}, "labels": ["1", "2", "3"],
            "max_length": 64}
    pm.save_classifier(model, tok, meta, tmp_path / "model")
    seqs = [SEQ, SEQ[:9], SEQ[:20] * 2, SEQ[5:], "MKV"]
    proteins = pd.DataFrame({"accession": [f"P{i}" for i in range(5)], "sequence": seqs,
                             "length": [len(s) for s in seqs], "ec": "1.1.1.1",
                             "ec_class": ["1", "2", "3", "1", "2"], "go_terms": [[]] * 5,
                             "organism_id": 9606})
    proteins.to_parquet(tmp_path / "proteins.parquet")
    pd.DataFrame({"accession": proteins["accession"], "split": "test",
                  "cluster": proteins["accession"]}).to_parquet(tmp_path / "splits.parquet")
    params = {"n_steps": 4, "split": "test", "max_proteins": None, "layers": True}
    return tmp_path, params


def test_shards_attribute_every_protein_once(shard_inputs):
    import pandas as pd

    d, params = shard_inputs
    for s in range(3):  # a plain model folder stands for the variant "finetuned"
        at.run_attribution_shard(d / "model", d / "proteins.parquet", d / "splits.parquet", params,
                                 s, 3, d / f"shard{s}", device="cpu", batch_size=4)
    # one folder per shard with one folder per variant holding exactly the two tables, no
    # temporary leftovers beside it
    assert [p.name for p in (d / "shard0").iterdir()] == ["finetuned"]
    assert sorted(p.name for p in (d / "shard0" / "finetuned").iterdir()) == ["embedding.parquet",
                                                                               "heads.parquet"]
    assert not list(d.glob(".shard*"))
    emb = pd.concat([pd.read_parquet(d / f"shard{s}" / "finetuned" / "embedding.parquet") for s in range(3)])
    heads = pd.concat([pd.read_parquet(d / f"shard{s}" / "finetuned" / "heads.parquet") for s in range(3)])
    assert sorted(emb["accession"]) == [f"P{i}" for i in range(5)]
    import pyarrow.parquet as pq

    for table in ("embedding", "heads"):  # relevance stored as float32 lists of one value per residue
        assert str(pq.read_schema(d / "shard0" / "finetuned" / f"{table}.parquet").field("relevance").type) == \
            "list<element: float>"
    assert (emb["relevance"].map(len) == emb["n_residues"]).all()
    assert len(heads) == 5 * 2 * 4 and not heads.duplicated(["accession", "layer", "head"]).any()
    # the longest protein (P2, 40 residues) sits in a shard of its own
    owner = {s: set(pd.read_parquet(d / f"shard{s}" / "finetuned" / "embedding.parquet")["accession"])
             for s in range(3)}
    assert {"P2"} in owner.values()
    # the real shards through the streaming gather and statistics: the same as in memory
    from seqxai.attribution_tables import gather_attributions, shard_tables
    from seqxai.head_statistics import wenzel_statistics, wenzel_statistics_streaming
    from seqxai.io import read_table

    folders = [d / f"shard{s}" for s in range(3)]
    out = [d / "gathered" / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
    gather_attributions(shard_tables(folders, "embedding", "finetuned"),
                        shard_tables(folders, "heads", "finetuned"), *out, 1.0)
    ann = pd.DataFrame({"accession": [f"P{i}" for i in range(5)], "type": "motif",
                        "start": 2, "end": 3, "description": ""})
    gathered = read_table(out[0])
    streamed = wenzel_statistics_streaming(gathered, out[1], ann, ["motif"], per_target=True,
                                           keep_special_tokens=True, batch_rows=3)
    in_memory = wenzel_statistics(gathered, heads, ann, ["motif"], per_target=True,
                                  keep_special_tokens=True)
    for key in ("heads", "embedding", "positive_relevance", "per_protein"):
        pd.testing.assert_frame_equal(streamed[key], in_memory[key], check_exact=True)
    assert streamed["heads"]["median_r"].notna().all()


def test_one_shard_attributes_every_variant_on_the_same_proteins(shard_inputs):
    """A shard job attributes its proteins under each model variant of the task, into one
    folder per variant: a second model (here the same weights with the labels in another order,
    so other logits) gives its own tables over the same proteins and targets, and equals a shard
    of that model alone. A variant that would select other targets is refused by name."""
    import json
    import shutil

    import pandas as pd

    d, params = shard_inputs
    other = d / "other_model"
    shutil.copytree(d / "model", other)
    meta = json.loads((other / "seqxai_model.json").read_text())
    meta["labels"] = meta["labels"][::-1]
    (other / "seqxai_model.json").write_text(json.dumps(meta))
    at.run_attribution_shard({"finetuned": d / "model", "shuffled": other}, d / "proteins.parquet",
                             d / "splits.parquet", params, 0, 2, d / "both", device="cpu", batch_size=4)
    at.run_attribution_shard({"shuffled": other}, d / "proteins.parquet", d / "splits.parquet", params,
                             0, 2, d / "alone", device="cpu", batch_size=4)
    assert sorted(p.name for p in (d / "both").iterdir()) == ["finetuned", "shuffled"]
    a = pd.read_parquet(d / "both" / "finetuned" / "embedding.parquet")
    b = pd.read_parquet(d / "both" / "shuffled" / "embedding.parquet")
    assert list(zip(a.accession, a.target)) == list(zip(b.accession, b.target)) and len(a)
    assert not np.allclose(a.f_input, b.f_input)  # another logit of the same protein
    for table in ("embedding", "heads"):
        pd.testing.assert_frame_equal(pd.read_parquet(d / "both" / "shuffled" / f"{table}.parquet"),
                                      pd.read_parquet(d / "alone" / "shuffled" / f"{table}.parquet"))
    meta["labels"] = meta["labels"][:2]  # one class fewer: its proteins would drop out
    (other / "seqxai_model.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="variant shuffled selects other attribution targets"):
        at.run_attribution_shard({"finetuned": d / "model", "shuffled": other}, d / "proteins.parquet",
                                 d / "splits.parquet", params, 0, 1, d / "bad", device="cpu", batch_size=4)
    assert not (d / "bad").exists()


@pytest.mark.parametrize("fail_at", ["attribution", "heads_write"])
def test_shard_outputs_complete_or_absent(shard_inputs, monkeypatch, fail_at):
    """A shard that fails while attributing or while writing its second table leaves neither
    table nor any temporary file behind."""
    from seqxai import io

    d, params = shard_inputs
    if fail_at == "attribution":
        real, calls = at.integrated_gradients, []

        def flaky(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("killed mid-shard")
            return real(*a, **k)
        monkeypatch.setattr(at, "integrated_gradients", flaky)
    else:
        real_write = io.write_table

        def failing_write(path, df, *a, **k):
            if "heads" in str(path):
                raise OSError("disk full")
            return real_write(path, df, *a, **k)
        monkeypatch.setattr(io, "write_table", failing_write)
    out = d / "out"
    with pytest.raises((RuntimeError, OSError)):
        at.run_attribution_shard(d / "model", d / "proteins.parquet", d / "splits.parquet", params,
                                 0, 1, out / "1-of-1", device="cpu", batch_size=4)
    assert not out.exists() or list(out.iterdir()) == []     # no shard folder, no temporary one


# --- per-family attention modules and Captum's LayerConductance, layer by layer ---------------


def test_attention_modules_located_per_family(family_clf):
    """BERT and ESM each get their own self-attention class, one per layer, and the hooked
    tensor is the context: exactly what enters the output projection (attention.output.dense)."""
    from transformers.models.bert.modeling_bert import BertSelfAttention
    from transformers.models.esm.modeling_esm import EsmSelfAttention

    family, model, tok, ids, att, base = family_clf
    blocks, attn = at.encoder_layers(model.encoder)
    n_layers = model.encoder.config.num_hidden_layers
    assert len(blocks) == len(attn) == n_layers == {"esm": 2, "bert": 3}[family]
    cls = {"esm": EsmSelfAttention, "bert": BertSelfAttention}[family]
    assert all(type(a) is cls for a in attn)
    seen, fed = {}, {}
    hooks = [a.register_forward_hook(lambda m, i, o, l=l: seen.__setitem__(l, o[0]))
             for l, a in enumerate(attn)]
    hooks += [b.attention.output.dense.register_forward_hook(
        lambda m, i, o, l=l: fed.__setitem__(l, i[0])) for l, b in enumerate(blocks)]
    with torch.no_grad():
        model(ids[None], att[None], **_fwd_kwargs(model, ids, att))
    for h in hooks:
        h.remove()
    for l in range(n_layers):
        assert seen[l].shape == (1, len(ids), model.encoder.config.hidden_size)
        torch.testing.assert_close(seen[l], fed[l], rtol=0, atol=0)


def test_unknown_encoder_family_is_refused():
    class Other(torch.nn.Module):
        config = type("Config", (), {"model_type": "gpt2"})()

    with pytest.raises(TypeError, match=r"model_type 'gpt2'.*known families \['bert', 'esm'\]"):
        at.attention_modules(Other())


def _captum_head_conductance(model, ids, att, base, target, layer, n_steps):
    """Captum's LayerConductance of one layer's attention context alone, along the same
    straight path in embedding space, summed over each head's dims: conductance[head, token].

    Captum sums g(alpha_k) (h(alpha_k+1) - h(alpha_k)) over n_steps + 1 points; with
    riemann_trapezoid these are evenly spaced on [0, 1] (first-order accurate)."""
    from captum.attr import LayerConductance

    fwd = _fwd_kwargs(model, ids, att)
    store = {}
    emb = model.encoder.embeddings
    h = emb.register_forward_hook(lambda m, i, o: store.__setitem__("e", o.detach()))
    with torch.no_grad():
        model(ids[None], att[None], **fwd)
        e = store["e"]
        model(base[None], att[None], **fwd)
        e0 = store["e"]
    h.remove()

    def forward(path):  # F along the path: the embedding output replaced by `path`
        m = path.shape[0]
        hook = emb.register_forward_hook(lambda mod, i, o: path)
        try:
            return model(ids[None].expand(m, -1), att[None].expand(m, -1),
                         **{k: v.expand(m, -1) for k, v in fwd.items()})[:, target]
        finally:
            hook.remove()

    lc = LayerConductance(forward, model.encoder.encoder.layer[layer].attention.self)
    attr = lc.attribute(e, baselines=e0, n_steps=n_steps, method="riemann_trapezoid")
    attr = attr[0] if isinstance(attr, tuple) else attr  # (context, attention weights)
    n_heads = model.encoder.config.num_attention_heads
    return attr[0].view(len(ids), n_heads, -1).sum(-1).T.detach().numpy()


def test_head_conductance_matches_captum_layer_conductance_every_layer(family_clf):
    """All layers in one pass == Captum's LayerConductance run on each layer alone, for BERT
    and ESM. The two quadratures differ (ours Gauss-Legendre, Captum's a left Riemann-Stieltjes
    sum) and the max pooling puts kinks in the path, so both are run fine enough to agree
    within 1% of the largest head relevance (measured: 0.15-0.46% at 128 vs 400 steps)."""
    family, model, tok, ids, att, base = family_clf
    res = at.integrated_gradients(model, ids, att, 1, base, n_steps=128, batch_size=64)
    n_layers = model.encoder.config.num_hidden_layers
    refs = [_captum_head_conductance(model, ids, att, base, 1, l, 400) for l in range(n_layers)]
    for l, ref in enumerate(refs):
        assert res["heads"][l].shape == ref.shape == (4, len(ids))
        scale = np.abs(ref).max()
        assert scale > 1e-4
        np.testing.assert_allclose(res["heads"][l], ref, atol=0.01 * scale, rtol=0)
        # the comparison tells layers apart: another layer's heads are far off
        other = res["heads"][(l + 1) % n_layers]
        assert np.abs(other - ref).max() > 0.1 * scale


def test_attribution_leaves_no_weight_gradients(clf):
    """Only activation gradients are computed: the model's parameters get no .grad."""
    model, tok, ids, att, base = clf
    model.zero_grad(set_to_none=True)
    at.integrated_gradients(model, ids, att, 0, base, n_steps=4, batch_size=4)
    assert all(p.grad is None for p in model.parameters())


def test_difference_conductance_equals_captum_riemann_trapezoid_every_layer(family_clf):
    """conductance="difference" is Captum's LayerConductance scheme (riemann_trapezoid, the
    same n_steps): equal for every layer of a BERT and an ESM encoder up to float rounding."""
    family, model, tok, ids, att, base = family_clf
    res = at.integrated_gradients(model, ids, att, 1, base, n_steps=24, batch_size=7, conductance="difference")
    n_layers = model.encoder.config.num_hidden_layers
    for l in range(n_layers):
        ref = _captum_head_conductance(model, ids, att, base, 1, l, 24)
        scale = np.abs(ref).max()
        assert scale > 1e-4
        np.testing.assert_allclose(res["heads"][l], ref, atol=1e-4 * scale, rtol=0)


def test_difference_conductance_converges_to_the_exact_one(clf):
    """The first-order difference scheme approaches the exact (JVP) conductance as steps grow,
    and its layer-output conductance approaches completeness."""
    model, tok, ids, att, base = clf
    exact = at.integrated_gradients(model, ids, att, 1, base, n_steps=64, batch_size=32)
    scale = np.abs(exact["heads"]).max()
    errs, deltas = [], []
    for n in (8, 64, 256):
        d = at.integrated_gradients(model, ids, att, 1, base, n_steps=n, batch_size=64, conductance="difference")
        errs.append(np.abs(d["heads"] - exact["heads"]).max() / scale)
        deltas.append(np.abs(d["layer_delta"]).max() / abs(d["f_input"] - d["f_baseline"]))
    assert errs[2] < errs[0] and errs[2] < 0.02, errs
    assert deltas[2] < deltas[0] and deltas[2] < 0.02, deltas
    with pytest.raises(ValueError, match="attribution.conductance"):
        at.integrated_gradients(model, ids, att, 1, base, n_steps=4, conductance="finite")


def test_memory_budget_sizes_the_path_batches_not_the_result(shard_inputs, caplog):
    """attribution.max_memory_gb: a budget that fits 3 path nodes of the longest protein gives
    batches of 3 (logged) and the same relevances as a fixed batch size."""
    import logging

    import pandas as pd

    from seqxai import micro_batches as mb

    d, params = shard_inputs
    params = {**params, "n_steps": 8}
    model, _tok, _meta = pm.load_classifier(d / "model", device="cpu")
    tokens = 42  # P2: 40 residues + 2 special tokens
    fixed = 4 * sum(p.numel() for p in model.parameters())
    budget_gb = (fixed + 3.5 * mb.attribution_row_bytes(model.encoder.config, tokens)) / 0.9 / mb.GIB
    tables = {}
    for name, kw in {"fixed": {"batch_size": 8}, "budget": {"batch_size": 8, "max_memory_gb": budget_gb}}.items():
        with caplog.at_level(logging.INFO, logger="seqxai.attribution"):
            caplog.clear()
            at.run_attribution_shard(d / "model", d / "proteins.parquet", d / "splits.parquet", params,
                                     0, 1, d / name, device="cpu", **kw)
        tables[name] = pd.read_parquet(d / name / "finetuned" / "heads.parquet")
        batch = 3 if name == "budget" else 8
        assert f"longest protein, {tokens} tokens: path batches of {batch} nodes" in caplog.text
    a, b = (np.concatenate(tables[k]["relevance"].to_numpy()) for k in ("fixed", "budget"))
    assert np.abs(a).max() > 1e-4
    np.testing.assert_allclose(b, a, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize("method,advice", [("ig", "raise attribution.n_steps"),
                                           ("attnlrp", "softmax rule absorbs"),
                                           ("grad_x_input", "not complete by construction")])
def test_the_gather_warning_gives_each_method_its_own_advice(tmp_path, caplog, method, advice):
    """A completeness gap means too few path nodes only for IG: the other methods' warning
    must not tell the user to raise attribution.n_steps."""
    import pandas as pd

    from seqxai.attribution_tables import gather_attributions
    from seqxai.io import write_table

    emb = pd.DataFrame([{"accession": "A1", "target": "1", "n_residues": 4,
                         "relevance": np.full(4, 0.1, np.float32), "relevance_start": 0.0,
                         "relevance_end": 0.0, "f_input": 1.0, "f_baseline": 0.0, "delta": -0.6,
                         "layer_delta": [0.0]}])
    write_table(tmp_path / "e.parquet", emb)
    write_table(tmp_path / "h.parquet", _head_rows({"A1": (["1"], 4)}, seed=0))
    outs = [tmp_path / "out" / f for f in ("embedding.parquet", "heads.parquet", "convergence.parquet")]
    with caplog.at_level("WARNING"):
        gather_attributions([tmp_path / "e.parquet"], [tmp_path / "h.parquet"], *outs, 0.05, method)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "1 of 1 proteins flagged" in warning and advice in warning
    assert (method == "ig") == ("n_steps" in warning)


@pytest.mark.parametrize("family", ["esm", "bert"])
def test_explicit_attention_tangent_equals_pytorchs_forward_mode(family):
    """The exact pass's attention tangent (seqxai.forward_tangents._attention_with_tangent:
    dS = s (dq k^T + q dk^T), dP = P (dS - sum P dS), dO = dP v + P dv) equals PyTorch's own
    forward-mode derivative of the model's eager attention, with a padding mask, and its
    primal output is the eager one."""
    import importlib

    import torch.autograd.forward_ad as fwAD

    from seqxai.forward_tangents import _attention_with_tangent

    mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    module = torch.nn.Module().eval()
    module.__class__ = type("Attn", (torch.nn.Module,), {"__module__": mod.__name__})
    g = torch.Generator().manual_seed(0)
    q, k, v, dq, dk, dv = (torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64) for _ in range(6))
    mask = torch.zeros(2, 1, 1, 7, dtype=torch.float64)
    mask[1, ..., 5:] = torch.finfo(torch.float64).min   # two padding keys in the second sequence
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) for x, t in ((q, dq), (k, dk), (v, dv))]
        ref_out, _ = mod.eager_attention_forward(module, *duals, mask, scaling=0.5)
        ref_primal, ref_tangent = fwAD.unpack_dual(ref_out)
        out, probs = _attention_with_tangent(module, *duals, mask, scaling=0.5)
        primal, tangent = fwAD.unpack_dual(out)
    torch.testing.assert_close(primal, ref_primal)
    torch.testing.assert_close(tangent, ref_tangent)
    assert probs[1, :, :, 5:].abs().max() == 0   # masked keys get no weight
