"""Adaptive steps of the DNA integrated gradients: each window gets Gauss-Legendre nodes doubled
until its completeness delta is within the tolerance, on toy models whose integral is known in
closed form; windows that cannot get there are reported; TF-MoDISco drops them."""
import numpy as np
import pandas as pd
import pytest
import torch

from seqxai import dna_attribution as da
from seqxai import dna_modisco as dm


class Toy(torch.nn.Module):
    """A stand-in for the TSS model with ``logit = phi(s)`` at every position, ``s = sum_{i,d}
    e[i, d] u[d]`` (``e``: the embedding of the window's tokens). On the IG path ``s`` is linear
    in alpha, so ``F(alpha) = phi(s0 + alpha (s1 - s0))`` and everything is known by hand."""

    def __init__(self, phi, d=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Embedding(6, d).double()
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(6, d, generator=g, dtype=torch.float64))
        self.u = torch.randn(d, generator=g, dtype=torch.float64)
        self.layers = torch.nn.ModuleList()
        self.config = {"n_layers": 0, "n_heads": 1, "d_head": 1}
        self.phi = phi

    def s(self, e):
        return (e @ self.u).sum(-1)

    def forward(self, x):
        return self.phi(self.s(self.embed(x)))[:, None].expand(-1, x.shape[1])


def _path_ends(model, x, ref=0.25):
    """s at the baseline and at the input, per window (the one-hot path, by hand)."""
    E = model.embed.weight.detach().numpy()
    acgt = x < 4
    su = E @ model.u.numpy()                         # s contribution of each token
    base = np.where(acgt, ref * su[:4].sum(), su[np.minimum(x, 5)]).sum(1)
    return base, su[x].sum(1)


def _gl_relative_error(dphi, s0, s1, n):
    """|GL_n(int_0^1 dphi(s(a)) (s1 - s0) da) - (phi(s1) - phi(s0))| / |phi(s1) - phi(s0)| in numpy."""
    a, w = np.polynomial.legendre.leggauss(n)
    a, w = (a + 1) / 2, w / 2
    return lambda phi: abs((w * dphi(s0 + a * (s1 - s0))).sum() * (s1 - s0) - (phi(s1) - phi(s0))) / abs(
        phi(s1) - phi(s0))


def test_adaptive_steps_reach_the_tolerance_on_a_polynomial_with_a_known_integral():
    """F = s^p: dF/dalpha has degree p - 1, so n nodes are exact once 2n - 1 >= p - 1; before
    that each window's error, and so the step count the loop must stop at, is computed in
    numpy; the attributions equal the closed form (X - X')_ib (E u)_b (s1^p - s0^p) / (s1 - s0)."""
    # the tables hold float32 attributions, so the delta is good to ~1e-6 of the gap: tol 1e-4
    p, tol = 30, 1e-4
    model = Toy(lambda s: s ** p, seed=2)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (6, 10))
    x[0, :2] = 5                                      # PAD
    x[1, 3] = 4                                       # N
    x[2] = x[3]                                       # an identical window: same steps
    res = da.adaptive_integrated_gradients(model, x, 0, None, n_steps=1, max_steps=64, tolerance=tol,
                                           batch_size=8)
    s0, s1 = _path_ends(model, x)
    expected = []
    for a, b in zip(s0, s1):
        n = 1
        while _gl_relative_error(lambda s: p * s ** (p - 1), a, b, n)(lambda s: s ** p) > tol:
            n *= 2
        expected.append(n)
    assert res["steps"].tolist() == expected
    assert len(set(expected)) > 1 and max(expected) <= 16     # windows differ; 16 nodes are exact for p=30
    assert res["converged"].all() and (res["relative_delta"] <= tol).all()
    np.testing.assert_allclose(res["f_input"] - res["f_baseline"], s1 ** p - s0 ** p, rtol=1e-10)
    Eu = model.embed.weight.detach().numpy()[:4] @ model.u.numpy()
    X = da.one_hot(x).astype(float)
    R = 0.25 * (x < 4)[..., None]
    exact = (X - R) * Eu * ((s1 ** p - s0 ** p) / (s1 - s0))[:, None, None]
    # every base shares the one path integral, so each is within the tolerance of the exact value
    np.testing.assert_allclose(res["per_base"], exact, rtol=tol, atol=0)
    # rounds: every window in the first; later rounds only the unconverged ones, at doubled steps
    r = res["rounds"]
    assert [d["steps"] for d in r] == [2 ** k for k in range(len(r))]
    assert r[0]["windows"] == len(x)
    assert [d["windows"] for d in r[1:]] == [sum(e > d["steps"] // 2 for e in expected) for d in r[1:]]
    # each window's result is the fixed-step IG at its own step count
    for n in set(expected):
        idx = np.flatnonzero(res["steps"] == n)
        fixed = da.integrated_gradients(model, x[idx], 0, None, n, 8)
        np.testing.assert_allclose(res["per_base"][idx], fixed["per_base"], rtol=1e-12, atol=1e-12)


def test_a_window_that_cannot_converge_is_reported():
    """A logit that steps from -1 to 1 within 1e-4 of s (a saturated switch, like an attention
    head flipping on the path) needs far more nodes than max_steps: not converged, at the
    largest doubling within max_steps (12 -> 8), its delta above the tolerance."""
    c = {}
    model = Toy(lambda s: torch.tanh((s - c["mid"]) * 1e4), seed=2)
    x = np.random.default_rng(3).integers(0, 4, (2, 10))
    s0, s1 = _path_ends(model, x)
    c["mid"] = 0.5 * (s0[0] + s1[0])                  # window 0 crosses the switch halfway
    res = da.adaptive_integrated_gradients(model, x, 0, None, n_steps=2, max_steps=12, tolerance=0.05,
                                           batch_size=4)
    assert not res["converged"][0] and res["steps"][0] == 8 and res["relative_delta"][0] > 0.05
    assert [d["steps"] for d in res["rounds"]][-1] == 8
    gap = res["f_input"][0] - res["f_baseline"][0]
    assert abs(gap) > 1.9                             # the logit does change: not a zero denominator
    with pytest.raises(da.DataError, match="max_steps"):
        da.adaptive_integrated_gradients(model, x, 0, None, n_steps=16, max_steps=8)


def test_modisco_uses_converged_windows_only(tmp_path):
    seqs = ["ACGTACGTAC", "TTTTACGTAA", "GGGGCCCCAA", "ACACACACAC"]
    hyp = [np.full(40, i, dtype=np.float32) for i in range(4)]
    w = pd.DataFrame({"window_id": list("abcd"), "kind": ["tss", "tss", "tss", "background"],
                      "sequence": seqs, "hypothetical": hyp, "converged": [True, False, True, False]})
    kept, dropped = dm.converged_windows(w, "tss")
    assert kept.window_id.tolist() == ["a", "c"] and dropped == 1      # the background is not counted
    oh, h = dm.modisco_inputs(kept, "tss")
    assert oh.shape == (2, 10, 4) and h[:, 0, 0].tolist() == [0.0, 2.0]
    with pytest.raises(da.DataError, match="converged"):
        dm.converged_windows(w.drop(columns="converged"), "tss", "w.parquet")


def test_attribute_tss_reports_windows_that_did_not_converge(caplog):
    """Through the table: a random model with the attention sink (its path bends sharply) and
    at most 2 nodes leaves windows unconverged; the table, the counts and the log agree."""
    from test_dna_attribution import _model

    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 400))
    tss = pd.DataFrame({"tss_id": list("abcdef"), "chrom": "c", "position": [60, 110, 150, 200, 260, 330],
                        "strand": ["+", "-", "+", "-", "+", "-"], "sigma": "70"})
    model = _model(scale=0.7, seed=3)
    caplog.set_level("INFO", logger="seqxai.dna_attribution")
    res = da.attribute_tss(model, {"c": seq}, tss, {"offset_min": -20, "offset_max": 3, "n_steps": 1,
                                                    "max_steps": 3, "heads": False}, batch_size=16)
    w, sm = res["windows"], res["summary"]
    assert ((w.relative_delta <= 0.05) == w.converged).all()
    assert 0 < sm["n_not_converged"] == (~w.converged).sum() and sm["n_converged"] == w.converged.sum()
    assert set(w.n_steps[~w.converged]) == {2}                # 1 -> 2; 4 would pass max_steps 3
    assert sm["windows_by_steps"] == {str(k): int(v) for k, v in w.n_steps.value_counts().sort_index().items()}
    assert sm["rounds"][0]["windows"] == len(w) and sm["rounds"][1]["windows"] == (w.n_steps == 2).sum()
    assert f"{sm['n_not_converged']} windows did not converge" in caplog.text
    # deterministic: the same input gives the same table, to the bit
    again = da.attribute_tss(model, {"c": seq}, tss, {"offset_min": -20, "offset_max": 3, "n_steps": 1,
                                                      "max_steps": 3, "heads": False}, batch_size=16)
    pd.testing.assert_frame_equal(again["windows"], w, check_exact=True)
    assert again["summary"] == sm
    assert "IG round 2: 2 steps on" in caplog.text
