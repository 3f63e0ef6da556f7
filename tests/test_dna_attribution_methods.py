"""AttnLRP and gradient x input of the DNA TSS model (issue 18.4): the forward pass unchanged
under the rules, AttnLRP's conservation, gradient x input against autograd at the one-hot
input, one method's tables on a tiny genome, and the side-by-side motif tables."""
import numpy as np
import pandas as pd
import pytest
import torch
from tiny_dna import tiny_model, tiny_windows

from seqxai import dna_attribution as da
from seqxai import dna_attribution_methods as dm
from seqxai.dna_method_motifs import method_cost, method_motifs

# the model's variants: Transformer-XL scores with the sink (default), without it, rotary,
# bidirectional, and the original architecture (post-norm, shared u/v, no feed-forward)
VARIANTS = {"xl_sink": {}, "xl": {"attention_sink": False}, "rotary": {"position": "rotary"},
            "bidirectional": {"attention": "bidirectional"},
            "clauwaert2021": {"architecture": "clauwaert2021", "attention_sink": False}}


def _model(variant="xl_sink", seed=0, scale=0.5):
    return tiny_model(VARIANTS[variant], seed, scale)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_is_bit_identical_under_the_rules(variant):
    model = _model(variant)
    x, _ = tiny_windows(model)
    xt = torch.as_tensor(x)
    with torch.no_grad():
        plain = model(xt)
        with dm.attnlrp_rules(model, dm._Recorder()):
            ruled = model(xt)
        after = model(xt)
    assert torch.equal(plain, ruled) and torch.equal(plain, after)
    assert all("_chunked" not in vars(layer) for layer in model.layers)   # patches undone


def _conservation_gap(r):
    parts = np.abs(r["contribution"]).sum(1) + np.abs(r["f_baseline"]) + np.abs(r["r_softmax"])
    return np.abs(r["contribution"].sum(1) + r["f_baseline"] + r["r_softmax"] - r["f_input"]) / parts


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_attnlrp_relevance_sums_to_the_logit(variant):
    """F(x) = sum_i R[i] + R_bias + R_softmax to 1e-4 of the absolute parts, per window, and at
    every layer output with the biases and softmaxes after it."""
    model = _model(variant)
    x, left = tiny_windows(model)
    r = dm.gradient_attribution(model, x, left, "attnlrp", batch_size=2, heads=True)
    assert _conservation_gap(r).max() < 1e-4
    # the softmax does absorb relevance, so the identity is not F = sum R + R_bias
    assert np.abs(r["r_softmax"]).min() > 1e-3
    np.testing.assert_allclose(r["delta"], -r["r_softmax"], atol=1e-4 * np.abs(r["f_input"]).max())
    after = np.cumsum(r["r_softmax_layer"][:, ::-1], axis=1)[:, ::-1]      # softmaxes of layers >= l
    np.testing.assert_allclose(r["layer_delta"][:, :-1], -after[:, 1:], atol=1e-4)
    np.testing.assert_allclose(r["layer_delta"][:, -1], 0, atol=1e-4)
    np.testing.assert_allclose(model(torch.as_tensor(x))[:, left].detach().numpy(), r["f_input"], rtol=1e-6)
    # A/C/G/T: the relevance is gradient x one-hot input; N/PAD have no hypothetical contribution
    acgt = x < 4
    np.testing.assert_allclose(r["per_base"].sum(-1)[acgt], r["contribution"][acgt], atol=1e-5)
    assert (r["hypothetical"][~acgt] == 0).all() and r["converged"].all() and (r["steps"] == 0).all()


def test_conservation_fails_without_the_uniform_rule(monkeypatch):
    """The test above can fail: without the halving at v and at the attention weights both
    receive the whole output's relevance."""
    model = _model()
    x, left = tiny_windows(model)
    monkeypatch.setattr(dm, "_scaled_gradient", lambda y, factor: y)
    r = dm.gradient_attribution(model, x, left, "attnlrp")
    assert _conservation_gap(r).max() > 1e-2


def test_batching_does_not_change_attnlrp():
    model = _model()
    x, left = tiny_windows(model, n=4)
    one = dm.gradient_attribution(model, x, left, "attnlrp", batch_size=1)
    four = dm.gradient_attribution(model, x, left, "attnlrp", batch_size=4)
    for k in ("contribution", "f_baseline", "r_softmax"):
        np.testing.assert_allclose(one[k], four[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["xl_sink", "bidirectional"])
def test_grad_x_input_is_the_gradient_at_the_one_hot_input(variant):
    model = _model(variant)
    x, left = tiny_windows(model)
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    r = dm.gradient_attribution(model, x, left, "grad_x_input", ref, heads=True)
    xt = torch.as_tensor(x)
    E4 = model.embed.weight[:4].detach()
    X = torch.as_tensor(da.one_hot(x)).requires_grad_(True)
    acgt = (xt < 4)[..., None].float()
    e = model.embed(xt).detach() * (1 - acgt) + X @ E4
    h = model.embed.register_forward_hook(lambda m, i, o: e)
    try:
        f = model(xt)[:, left]
        (grad,) = torch.autograd.grad(f.sum(), X)
    finally:
        h.remove()
    np.testing.assert_allclose(r["grad_integral"], grad.numpy(), rtol=1e-5, atol=1e-6)
    R = torch.as_tensor(ref, dtype=torch.float32) * acgt
    contrib = ((X.detach() - R) * grad).sum(-1).numpy()
    np.testing.assert_allclose(r["contribution"], contrib, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["f_input"], f.detach().numpy(), rtol=1e-5, atol=1e-7)
    # hypothetical: centred on the reference, and the actual contribution at the present base
    np.testing.assert_allclose((r["hypothetical"] * da.one_hot(x)).sum(-1), r["contribution"], atol=1e-5)
    np.testing.assert_allclose((r["hypothetical"] * ref).sum(-1), 0, atol=1e-6)
    assert r["heads"].shape == (3, 2, 2, x.shape[1]) and np.abs(r["heads"]).sum() > 0
    # F(x') at the baseline embedding C + R @ E[ACGT]
    e0 = model.embed(xt).detach() * (1 - acgt) + R @ E4
    h = model.embed.register_forward_hook(lambda m, i, o: e0)
    try:
        with torch.no_grad():
            f0 = model(xt)[:, left].numpy()
    finally:
        h.remove()
    np.testing.assert_allclose(r["f_baseline"], f0, rtol=1e-5, atol=1e-7)


def test_unknown_method_is_refused():
    model = _model()
    x, left = tiny_windows(model)
    with pytest.raises(ValueError, match="dna.attribution.methods"):
        dm.gradient_attribution(model, x, left, "attention_rollout")


def test_attnlrp_tables_on_a_tiny_genome():
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 400))
    tss = pd.DataFrame({"tss_id": ["a", "b", "c"], "chrom": "c", "position": [150, 200, 398],
                        "strand": ["+", "-", "+"], "sigma": "70"})
    model = _model()
    cfg = {"offset_min": -20, "offset_max": 3, "n_steps": 8, "heads": True, "n_background": 2,
           "background_min_distance": 20}
    ig = da.attribute_tss(model, {"c": seq}, tss, cfg, batch_size=16)
    res = da.attribute_tss(model, {"c": seq}, tss, cfg, batch_size=16, method="attnlrp")
    w = res["windows"]
    # the same windows, columns and heads rows as integrated gradients, plus the softmax's share
    assert w.columns.tolist() == ig["windows"].columns.tolist() + ["r_softmax"]
    for col in ("window_id", "kind", "strand", "position", "sequence", "f_input"):
        assert w[col].tolist() == pytest.approx(ig["windows"][col].tolist()) if col == "f_input" else \
            w[col].tolist() == ig["windows"][col].tolist()
    assert res["heads"][["window_id", "layer", "head"]].equals(ig["heads"][["window_id", "layer", "head"]])
    assert w.converged.all() and (w.n_steps == 0).all()
    total = np.stack(w.contribution).sum(1) + w.attribution_outside
    np.testing.assert_allclose(total + w.f_baseline + w.r_softmax, w.f_input, atol=1e-4)
    s = res["summary"]
    assert s["method"] == "attnlrp" and s["conservation_max"] < 1e-4 and s["passes_per_window"] == 1.0
    assert s["n_tss"] == 2 and s["n_background"] == 2 and "rounds" not in s
    prof = da.mean_profiles(w)
    assert len(prof) == 48


def _patterns(names, seqlets):
    return pd.DataFrame({"pattern": names, "metacluster": [n.split("_")[0] for n in names], "n_seqlets": seqlets,
                         "consensus": ["TATAAT"] * len(names), "width": 6, "trim_start": 0,
                         "ppm": [[[0.7, 0.1, 0.1, 0.1]] * 6] * len(names), "cwm": [[[0.0] * 4] * 6] * len(names)})


def _tomtom(rows):
    return pd.DataFrame(rows, columns=["query", "target", "p", "q", "orientation"])


def test_method_motifs_side_by_side():
    targets = ["sigma70_minus10", "sigma70_minus35", "TF"]
    ig_pat = _patterns(["pos_pattern_0", "pos_pattern_1"], [40, 90])
    ig_tt = _tomtom([("pos_pattern_0", "sigma70_minus10", 1e-4, 1e-3, "+"), ("pos_pattern_0", "TF", 0.5, 0.6, "+"),
                     ("pos_pattern_1", "sigma70_minus35", 1e-3, 0.2, "-"), ("pos_pattern_1", "TF", 0.9, 0.9, "+")])
    lrp_pat = _patterns(["pos_pattern_0", "neg_pattern_0", "pos_pattern_1"], [30, 20, 10])
    lrp_tt = _tomtom([("pos_pattern_0", "sigma70_minus10", 1e-3, 0.01, "+"),
                      ("neg_pattern_0", "sigma70_minus10", 1e-5, 1e-4, "+"),
                      ("pos_pattern_1", "TF", 1e-4, 0.02, "+")])
    ig_summary = {"windows_by_steps": {"16": 65, "32": 35}, "rounds": [{"steps": 16, "windows": 100},
                                                                     {"steps": 32, "windows": 35}]}
    res = method_motifs(["ig", "attnlrp"], [ig_pat, lrp_pat], [ig_tt, lrp_tt],
                        [ig_summary, {"passes_per_window": 1.0}], targets, alpha=0.05)
    p = res["patterns"]
    assert p[p.method == "ig"].pattern.tolist() == ["pos_pattern_1", "pos_pattern_0"]   # most seqlets first
    assert p.set_index(["method", "pattern"]).loc[("ig", "pos_pattern_1"), "significant"] == False  # noqa: E712
    t = res["targets"].set_index(["method", "target"])
    assert t.loc[("ig", "sigma70_minus10"), "found"] and not t.loc[("ig", "sigma70_minus35"), "found"]
    assert not t.loc[("ig", "TF"), "found"] and t.loc[("ig", "TF"), "n_seqlets"] == 0   # TF best for no pattern
    # AttnLRP: -10 from the negative pattern (lowest q), both -10 patterns counted; TF found
    assert t.loc[("attnlrp", "sigma70_minus10"), "pattern"] == "neg_pattern_0"
    assert t.loc[("attnlrp", "sigma70_minus10"), ["n_patterns", "n_seqlets_all"]].tolist() == [2, 50]
    assert t.loc[("attnlrp", "TF"), "found"]
    s = res["summary"]["methods"]
    assert s["ig"]["gradient_passes_per_window"] == pytest.approx((16 * 100 + 32 * 35) / 100)
    assert s["attnlrp"]["relative_to_ig"] == pytest.approx(1 / 27.2)
    assert s["attnlrp"]["found"] == ["TF", "sigma70_minus10"]
    assert method_cost({"passes_per_window": 4 / 3}, "grad_x_input")["gradient_passes_per_window"] == 4 / 3


def test_method_motifs_when_a_method_finds_no_pattern(tmp_path):
    """A method whose TF-MoDISco found nothing (an empty pattern table, an empty Tomtom table
    without columns, as dna_modisco writes it) gets rows of found = false and an empty column."""
    from seqxai.dna_modisco import PATTERN_COLUMNS
    from seqxai.dna_plots import plot_method_motifs

    ig_pat = _patterns(["pos_pattern_0"], [40])
    ig_tt = _tomtom([("pos_pattern_0", "sigma70_minus10", 1e-4, 1e-3, "+")])
    empty = pd.DataFrame(columns=PATTERN_COLUMNS)
    res = method_motifs(["ig", "attnlrp"], [ig_pat, empty], [ig_tt, pd.DataFrame()],
                        [{"windows_by_steps": {"4": 8}, "rounds": [{"steps": 4, "windows": 8}]},
                         {"passes_per_window": 1.0}], ["sigma70_minus10"])
    assert res["patterns"].method.tolist() == ["ig"]
    t = res["targets"].set_index("method")
    assert t.loc["ig", "found"] and not t.loc["attnlrp", "found"] and t.loc["attnlrp", "n_seqlets"] == 0
    assert res["summary"]["methods"]["attnlrp"] == {
        "n_patterns": 0, "n_seqlets": 0, "found": [], "gradient_passes_per_window": 1.0, "relative_to_ig": 0.25,
        "targets": {"sigma70_minus10": {"pattern": None, "n_seqlets": 0, "q": None, "found": False,
                                        "n_patterns": 0, "n_seqlets_all": 0}}}
    plot_method_motifs(["ig", "attnlrp"], [ig_pat, empty], res["patterns"], tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
