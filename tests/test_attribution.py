"""Integrated gradients: agrees with Captum, zero on special tokens, exact latent conductance."""
import itertools

import numpy as np
import pytest
import torch
from conftest import TINY_SEQ as SEQ
from conftest import tiny_bert

from seqxai import attribution as at
from seqxai import protein_model as pm


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


EXACT = ["jvp", "polynomial"]  # the two conductance modes that give dh/dalpha at the nodes


@pytest.mark.parametrize("conductance", EXACT)
def test_head_conductance_matches_finite_differences(clf, conductance):
    model, tok, ids, att, base = clf
    res = at.integrated_gradients(model, ids, att, 1, base, n_steps=8, batch_size=3, conductance=conductance)
    ref = _naive_head_conductance(model, ids, att, base, 1, 8)
    assert res["heads"].shape == (2, 4, len(SEQ) + 2)
    scale = np.abs(ref).max()
    assert scale > 1e-4
    np.testing.assert_allclose(res["heads"], ref, atol=2e-3 * scale)


@pytest.mark.parametrize("conductance,n_steps", [("jvp", 10), ("polynomial", 10), ("polynomial", 40)])
def test_batching_does_not_change_results(clf, conductance, n_steps):
    """Also for the polynomial stencils settled batch by batch (40 nodes: 16-point stencils,
    so nodes settle before the last batch and held points are dropped on the way)."""
    model, tok, ids, att, base = clf
    a = at.integrated_gradients(model, ids, att, 1, base, n_steps=n_steps, batch_size=n_steps,
                                conductance=conductance)
    b = at.integrated_gradients(model, ids, att, 1, base, n_steps=n_steps, batch_size=3,
                                conductance=conductance)
    np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-6)
    np.testing.assert_allclose(a["heads"], b["heads"], atol=1e-6)


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


@pytest.mark.parametrize("conductance", EXACT)
def test_layer_output_conductance_is_complete(clf, conductance):
    """Every layer output is a cut: at each node sum_u g_u dh_u/dalpha = dF/dalpha (chain rule), so
    its conductance sums to the same quadrature of F along the path as the embedding IG; the
    residual delta is quadrature error only (max pooling has kinks) and shrinks with more nodes."""
    model, tok, ids, att, base = clf
    coarse = at.integrated_gradients(model, ids, att, 0, base, n_steps=4, batch_size=4, conductance=conductance)
    fine = at.integrated_gradients(model, ids, att, 0, base, n_steps=64, batch_size=32, conductance=conductance)
    gap = fine["f_input"] - fine["f_baseline"]
    assert fine["layer_delta"].shape == (2,)
    # jvp: the identity holds to float rounding; polynomial: up to the stencil's error
    # (measured 3e-4 of the gap at 4 nodes, where the quadrature is 37% off, and 3e-5 at 64)
    tolerance = 1e-5 if conductance == "jvp" else 1e-3 * abs(gap)
    for res in (coarse, fine):
        np.testing.assert_allclose(res["layer_delta"], res["delta"], atol=tolerance)
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


@pytest.mark.parametrize("conductance", EXACT)
def test_one_pass_over_all_layers_equals_one_run_per_layer(clf, conductance):
    """The original ran the whole path once per layer; hooking all layers at once gives the same."""
    model, tok, ids, att, base = clf
    every = at.integrated_gradients(model, ids, att, 2, base, n_steps=6, batch_size=6, conductance=conductance)
    for l in range(2):
        one = at.integrated_gradients(model, ids, att, 2, base, n_steps=6, batch_size=6, layer_ids=[l],
                                      conductance=conductance)
        assert one["heads"].shape == (1, 4, len(SEQ) + 2)
        np.testing.assert_allclose(one["heads"][0], every["heads"][l], atol=1e-6)
        np.testing.assert_allclose(one["layer_delta"][0], every["layer_delta"][l], atol=1e-6)


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
    and ESM, with dh/dalpha by forward-mode AD and by the polynomial stencils. The two quadratures differ (ours Gauss-Legendre, Captum's a left Riemann-Stieltjes
    sum) and the max pooling puts kinks in the path, so both are run fine enough to agree
    within 1% of the largest head relevance (measured: 0.15-0.46% at 128 vs 400 steps)."""
    family, model, tok, ids, att, base = family_clf
    n_layers = model.encoder.config.num_hidden_layers
    refs = [_captum_head_conductance(model, ids, att, base, 1, l, 400) for l in range(n_layers)]
    results = [at.integrated_gradients(model, ids, att, 1, base, n_steps=128, batch_size=64, conductance=c)
               for c in EXACT]
    for res, (l, ref) in itertools.product(results, enumerate(refs)):
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
    for conductance in at.CONDUCTANCE:
        at.integrated_gradients(model, ids, att, 0, base, n_steps=4, batch_size=4, conductance=conductance)
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


@pytest.mark.parametrize("affine", [True, False])
def test_explicit_layer_norm_tangent_equals_pytorchs_forward_mode(affine):
    """The exact pass's layer-norm tangent (seqxai.forward_tangents._layer_norm_jvp:
    dy = gamma (dx - mean dx - x^ mean(x^ dx)) / std) equals PyTorch's own forward-mode
    derivative, its primal the module's output; a plain input passes through unchanged."""
    import torch.autograd.forward_ad as fwAD

    from seqxai.forward_tangents import _layer_norm_jvp

    g = torch.Generator().manual_seed(0)
    ln = torch.nn.LayerNorm(6, eps=1e-3, elementwise_affine=affine).double()
    if affine:
        with torch.no_grad():
            ln.weight.normal_(generator=g)
            ln.bias.normal_(generator=g)
    x, dx = (3 * torch.randn(2, 5, 6, generator=g, dtype=torch.float64) + 1 for _ in range(2))
    with fwAD.dual_level():
        ref_primal, ref_tangent = fwAD.unpack_dual(ln(fwAD.make_dual(x, dx)))
        primal, tangent = fwAD.unpack_dual(_layer_norm_jvp(ln, fwAD.make_dual(x, dx)))
    torch.testing.assert_close(primal, ref_primal)
    torch.testing.assert_close(tangent, ref_tangent)
    assert tangent.abs().max() > 0.1
    torch.testing.assert_close(_layer_norm_jvp(ln, x), ln(x))


def test_explicit_gelu_tangent_equals_pytorchs_forward_mode(family_clf):
    """ESM's erf GELU (transformers' modeling_esm.gelu, five operations) gets its tangent in one
    expression (seqxai.forward_tangents._erf_gelu_with_tangent): equal to PyTorch's
    forward-mode derivative of the original function, the same primal; within
    explicit_gelu_tangents an ESM model's module calls it, and the original is back after."""
    import torch.autograd.forward_ad as fwAD
    from transformers.models.esm import modeling_esm

    from seqxai.forward_tangents import _erf_gelu_with_tangent, explicit_gelu_tangents

    family, model = family_clf[:2]
    original = modeling_esm.gelu
    g = torch.Generator().manual_seed(0)
    x, dx = (3 * torch.randn(4, 9, generator=g, dtype=torch.float64) for _ in range(2))
    with fwAD.dual_level():
        ref_primal, ref_tangent = fwAD.unpack_dual(original(fwAD.make_dual(x, dx)))
        primal, tangent = fwAD.unpack_dual(_erf_gelu_with_tangent(original, fwAD.make_dual(x, dx)))
    torch.testing.assert_close(primal, ref_primal)
    torch.testing.assert_close(tangent, ref_tangent)
    with explicit_gelu_tangents(model):
        patched = modeling_esm.gelu is not original
    assert patched == (family == "esm") and modeling_esm.gelu is original


# --- conductance "polynomial": dh/dalpha from stencils of the path's own points ---------------


def test_path_derivative_matrix_by_hand():
    """One node at 1/2: the parabola through (0, f0), (1/2, f1), (1, f2) has slope f2 - f0 there.
    Polynomials of degree < 16 are differentiated exactly, also with banded 16-point stencils
    (50 nodes), and a constant has slope 0."""
    np.testing.assert_allclose(at.path_derivative_matrix(np.array([0.5])), [[-1.0, 0.0, 1.0]], atol=1e-15)
    alphas, _ = at.gauss_legendre(50)
    d = at.path_derivative_matrix(alphas)
    points = np.concatenate([[0.0], alphas, [1.0]])
    first, last = at.stencil_span(50)
    nz = d != 0  # the matrix holds exactly these stencils
    assert np.array_equal(nz.argmax(1), first) and np.array_equal(51 - nz[:, ::-1].argmax(1), last)
    assert d.shape == (50, 52) and np.all(last - first == 15) and first[0] == 0 and last[-1] == 51
    np.testing.assert_allclose(d.sum(1), 0.0, atol=1e-9)
    for degree in (1, 7, 15):
        np.testing.assert_allclose(d @ points**degree, degree * alphas ** (degree - 1), atol=1e-8)
    a20, _ = at.gauss_legendre(20)  # 22 points: a stencil spans a third of the path
    p20 = np.concatenate([[0.0], a20, [1.0]])
    d20 = at.path_derivative_matrix(a20)
    exact = np.abs(d20 @ p20**15 - 15 * a20**14).max()  # rounding only (3e-13)
    assert np.abs(d20 @ p20**16 - 16 * a20**15).max() > 100 * exact  # degree 16: not exact (9e-10)
    with pytest.raises(ValueError, match="increase strictly"):
        at.path_derivative_matrix(np.array([0.5, 0.5]))


@pytest.mark.parametrize("n_steps", [16, 50])
def test_polynomial_conductance_equals_the_exact_one(family_clf, n_steps):
    """The stencil derivative stands in for forward-mode AD: the same heads and layer deltas as
    conductance jvp at the same nodes, for BERT and ESM, far closer (measured ~1e-6 to 2e-5 of
    the largest head value) than either is to a finer quadrature (~1e-3) or than the difference
    scheme is (~1e-2); the embedding level is the same computation in both."""
    family, model, tok, ids, att, base = family_clf
    exact = at.integrated_gradients(model, ids, att, 1, base, n_steps=n_steps, batch_size=7)
    poly = at.integrated_gradients(model, ids, att, 1, base, n_steps=n_steps, batch_size=7, conductance="polynomial")
    diff = at.integrated_gradients(model, ids, att, 1, base, n_steps=n_steps, batch_size=7, conductance="difference")
    scale = np.abs(exact["heads"]).max()
    assert scale > 1e-4
    np.testing.assert_allclose(poly["heads"], exact["heads"], atol=2e-4 * scale, rtol=0)
    np.testing.assert_allclose(poly["layer_delta"], exact["layer_delta"], atol=2e-4 * abs(exact["f_input"] - exact["f_baseline"]))
    np.testing.assert_allclose(poly["embedding"], exact["embedding"], atol=1e-6)
    assert np.abs(diff["heads"] - exact["heads"]).max() > 2e-3 * scale  # the check can tell schemes apart
