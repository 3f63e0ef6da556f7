"""Integrated gradients: agrees with Captum, zero on special tokens, exact latent conductance."""
import numpy as np
import pytest
import torch

from seqxai import attribution as at
from seqxai import protein_model as pm

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


def test_baseline_keeps_special_tokens_and_pads_residues(clf):
    model, tok, ids, att, base = clf
    assert base[0] == tok.cls_token_id and base[-1] == tok.eos_token_id
    assert (base[1:-1] == tok.pad_token_id).all()
    assert len(base) == len(SEQ) + 2


def test_embedding_ig_matches_captum(clf):
    from captum.attr import LayerIntegratedGradients

    model, tok, ids, att, base = clf
    res = at.integrated_gradients(model, ids, att, 2, base, n_steps=24, batch_size=7)
    fwd = {"residue_mask": model.residue_mask(ids[None], att[None]),
           "position_ids": model.position_ids(ids[None])}
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
