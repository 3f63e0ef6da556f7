"""Integrated gradients of the DNA TSS model: Captum agreement, completeness, hypothetical
contributions, windows in TSS orientation, per-head conductance against Captum."""
import numpy as np
import pandas as pd
import pytest
import torch
from tiny_dna import tiny_model, tiny_windows

from seqxai import dna_attribution as da
from seqxai.tss_windows import PAD, oriented_tokens


def _model(attention="causal", scale=0.5, seed=0):
    return tiny_model({"attention": attention}, seed, scale)


def _onehot_forward(model, query):
    """F(onehot) for Captum: the embedding lookup replaced by C + onehot @ E[ACGT]."""
    E4 = model.embed.weight[:4].detach()

    def forward(onehot, tokens):
        e = model.embed(tokens) * (tokens >= 4)[..., None] + onehot @ E4
        h = model.embed.register_forward_hook(lambda m, i, o: e)
        try:
            return model(tokens)[:, query]
        finally:
            h.remove()
    return forward


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_ig_matches_captum_integrated_gradients(attention):
    from captum.attr import IntegratedGradients

    model = _model(attention)
    x, left = tiny_windows(model)
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    res = da.integrated_gradients(model, x, left, ref, n_steps=16, batch_size=7)
    ig = IntegratedGradients(_onehot_forward(model, left))
    X = torch.as_tensor(da.one_hot(x))
    base = torch.as_tensor(ref, dtype=torch.float32) * torch.as_tensor(x < 4)[..., None].float()
    for i in range(len(x)):
        xt = torch.as_tensor(x[i : i + 1])
        ref_attr, ref_delta = ig.attribute(X[i : i + 1], baselines=base[i : i + 1],
                                           additional_forward_args=(xt,), n_steps=16, method="gausslegendre",
                                           return_convergence_delta=True)
        scale = np.abs(res["per_base"][i]).max()
        assert scale > 1e-3
        np.testing.assert_allclose(res["per_base"][i], ref_attr[0].numpy(), atol=1e-5 * scale, rtol=0)
        assert abs(abs(res["delta"][i]) - abs(float(ref_delta))) < 1e-5
    # N and PAD positions are identical in input and baseline: exactly 0
    assert (res["contribution"][0, :3] == 0).all() and res["contribution"][1, 5] == 0
    # F(x) through the one-hot path is the model's own logit
    with torch.no_grad():
        np.testing.assert_allclose(res["f_input"], model(torch.as_tensor(x))[:, left].numpy(), atol=1e-5)


def test_completeness_tightens_as_steps_grow():
    model = _model(scale=0.7, seed=3)      # weights large enough for a curved path
    x, left = tiny_windows(model, n=4, seed=1)
    gaps = {}
    # (with the attention sink this random model's path bends sharply: 64 nodes leave 0.33,
    # 256 leave 5e-4; without the sink 32 nodes already leave 2e-5)
    for n in (1, 8, 256):
        res = da.integrated_gradients(model, x, left, None, n_steps=n, batch_size=64)
        gap = res["f_input"] - res["f_baseline"]
        gaps[n] = np.abs(res["delta"]).max()
        np.testing.assert_allclose(res["contribution"].astype(float).sum(1) - gap, res["delta"], atol=1e-9)
    assert gaps[1] > 0.1                        # one node is far from complete on this model
    assert gaps[256] < gaps[8] < gaps[1]
    assert gaps[256] < 1e-3 * np.abs(gap).max()


def test_hypothetical_contributions_are_centred_and_give_the_actual_contribution():
    model = _model()
    x, left = tiny_windows(model, n=2)
    for ref in (None, np.array([0.3, 0.2, 0.2, 0.3])):
        res = da.integrated_gradients(model, x, left, ref, n_steps=8, batch_size=16)
        r = np.full(4, 0.25) if ref is None else ref
        assert res["hypothetical"].shape == x.shape + (4,)
        # centred under the reference: sum_b ref_b hyp_b = 0 (the mean for the uniform one)
        np.testing.assert_allclose((res["hypothetical"] * r).sum(-1), 0, atol=1e-6)
        # hyp[i, b] = G[i, b] - sum_c ref_c G[i, c], by hand, at A/C/G/T positions; 0 at N/PAD
        G = res["grad_integral"]
        acgt = (x < 4)[..., None]
        assert np.abs(G[~acgt[..., 0]]).max() > 0
        np.testing.assert_allclose(res["hypothetical"], (G - (G * r).sum(-1, keepdims=True)) * acgt,
                                   atol=1e-6)
        # the one-hot picks the actual contribution out of the hypothetical ones
        np.testing.assert_allclose((da.one_hot(x) * res["hypothetical"]).sum(-1), res["contribution"],
                                   atol=1e-6)
    hyp = da.integrated_gradients(model, x, left, None, 8, 16)["hypothetical"]
    np.testing.assert_allclose(hyp.mean(-1), 0, atol=1e-6)


def test_batching_does_not_change_results():
    model = _model()
    x, left = tiny_windows(model, n=3)
    a = da.integrated_gradients(model, x, left, None, n_steps=6, batch_size=64, heads=True)
    b = da.integrated_gradients(model, x, left, None, n_steps=6, batch_size=4, heads=True)
    for k in ("per_base", "hypothetical", "heads", "delta", "layer_delta"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-6)


def test_layer_outputs_are_complete_and_heads_match_captum_layer_conductance():
    """Per-head conductance (one pass, JVP) == Captum's LayerConductance on the input of each
    layer's output projection (the attention context), along the same one-hot path. Captum's
    rule is a Riemann-Stieltjes sum, so both run fine enough to agree within 1%."""
    from captum.attr import LayerConductance

    model = _model()
    x, left = tiny_windows(model, n=1)
    res = da.integrated_gradients(model, x, left, None, n_steps=64, batch_size=64, heads=True)
    gap = res["f_input"] - res["f_baseline"]
    assert np.abs(res["layer_delta"]).max() < 1e-4 * max(1.0, np.abs(gap).max())
    X = torch.as_tensor(da.one_hot(x))
    base = 0.25 * torch.as_tensor(x < 4)[..., None].float()
    xt = torch.as_tensor(x)
    for l, layer in enumerate(model.layers):
        lc = LayerConductance(_onehot_forward(model, left), layer.out)
        attr = lc.attribute(X, baselines=base, additional_forward_args=(xt,), n_steps=600,
                            method="riemann_trapezoid", attribute_to_layer_input=True)
        attr = attr[0] if isinstance(attr, tuple) else attr
        ref = attr[0].view(x.shape[1], 2, 8).sum(-1).T.detach().numpy()     # head, token
        scale = np.abs(ref).max()
        assert scale > 1e-4
        np.testing.assert_allclose(res["heads"][0, l], ref, atol=0.01 * scale, rtol=0)


def test_windows_and_offsets_in_tss_orientation():
    genome = {"c": "ACGTTGCAAC" * 30}
    tokens = oriented_tokens(genome["c"])
    x = da.tss_windows(tokens, np.array([2, 100]), np.array(["+", "-"]), label_offset=4, left=10, right=2)
    assert x.shape == (2, 13)
    # TSS at oriented 2: query 6, window 6-10..6+2 -> 4 PAD then tokens 0..8
    assert (x[0, :4] == PAD).all() and (x[0, 4:] == tokens["+"][0:9]).all()
    assert (x[1] == tokens["-"][94:107]).all()
    cfg = dict(n_layers=2, context=12, conv_width=3, label_offset=4, attention="causal")
    assert da.window_extent(cfg) == (28, 0)
    assert da.window_extent(cfg, -40, 10) == (44, 6)
    assert da.window_extent({**cfg, "attention": "bidirectional"}) == (28, 24)


def test_attribute_tss_table_on_a_tiny_genome():
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 400))
    tss = pd.DataFrame({"tss_id": ["a", "b", "c"], "chrom": "c", "position": [150, 200, 398],
                        "strand": ["+", "-", "+"], "sigma": "70"})
    model = _model()
    res = da.attribute_tss(model, {"c": seq}, tss, {"offset_min": -20, "offset_max": 3, "n_steps": 8,
                                                    "heads": True, "n_background": 2,
                                                    "background_min_distance": 20}, batch_size=16)
    w = res["windows"]
    # c: predicting position 397 + 4 lies past the strand end (400 nt): dropped
    assert w.window_id.tolist() == ["a", "b", "background_0", "background_1"]
    assert (w.kind == ["tss", "tss", "background", "background"]).all()
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    assert w.sequence[0] == seq[149 - 20 : 149 + 4]                     # + strand, offsets -20..3
    assert w.sequence[1] == rc[400 - 200 - 20 : 400 - 200 + 4]          # - strand, reverse complement
    assert all(len(c) == 24 for c in w.contribution) and all(len(h) == 96 for h in w.hypothetical)
    assert res["heads"].shape[0] == 4 * 2 * 2 and all(len(r) == 24 for r in res["heads"].relevance)
    assert (w.relative_delta <= 0.05).all() and w.converged.all()
    assert set(w.n_steps) <= {8, 16, 32, 64, 128, 256} and res["summary"]["n_not_converged"] == 0
    prof = da.mean_profiles(w)
    assert set(prof.kind) == {"tss", "background"} and len(prof) == 48
    np.testing.assert_allclose(prof[prof.kind == "tss"].mean_contribution,
                               np.stack(w.contribution[:2]).mean(0), rtol=1e-6)
    assert res["summary"]["n_tss"] == 2 and res["summary"]["reference_acgt"] == [0.25] * 4


def test_reference_distribution():
    assert da.reference_distribution("uniform").tolist() == [0.25] * 4
    assert da.reference_distribution("zero").tolist() == [0.0] * 4
    np.testing.assert_allclose(da.reference_distribution("genome", np.array([0, 0, 1, 3, 4, 5])),
                               [0.5, 0.25, 0, 0.25])
    with pytest.raises(ValueError, match="dna.attribution.baseline"):
        da.reference_distribution("shuffled")
