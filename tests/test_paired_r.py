"""The fine-tuned model's per-protein r against its controls' on the same proteins (seqxai.paired_r),
and the embedding-level positive control that counts it (seqxai.summary)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_head_statistics import _attributions

from seqxai.annotation_scores import annotation_masks, point_biserial
from seqxai.head_statistics import wenzel_statistics
from seqxai.paired_r import COLUMNS, paired_greater, paired_r_tests, run_paired_r
from seqxai.summary import embedding_enrichment

GRID = (2, 2)  # layers, heads per layer


def _table(r_emb, r_heads, accessions=None, target="1", annotation="motif"):
    """A per_protein table: r_emb[protein], r_heads[protein, layer * head]."""
    n = len(r_emb)
    acc = accessions if accessions is not None else [f"P{k}" for k in range(n)]
    return pd.DataFrame({"accession": acc, "target": target, "annotation": annotation,
                         "n_annotated": 3, "r_embedding": np.asarray(r_emb, float),
                         "rank_accuracy_embedding": 0.5, "random_rank_accuracy": 0.1,
                         "r_heads": [np.asarray(x, float) for x in r_heads]})


def _synthetic(n=20, seed=0):
    """Control r random; fine-tuned r per head: (0, 0) clearly above, (0, 1) identical,
    (1, 0) clearly below, (1, 1) the control plus symmetric noise; embedding clearly above."""
    rng = np.random.default_rng(seed)
    ctl_h = rng.normal(0.0, 0.1, size=(n, 4))
    ft_h = ctl_h.copy()
    ft_h[:, 0] += 0.3 + rng.normal(0, 0.02, n)
    ft_h[:, 2] -= 0.3 + rng.normal(0, 0.02, n)
    ft_h[:, 3] += rng.normal(0, 0.05, n)
    ctl_e = rng.normal(0.0, 0.1, n)
    ft_e = ctl_e + 0.2 + rng.normal(0, 0.05, n)
    return _table(ft_e, ft_h), _table(ctl_e, ctl_h), (ft_e, ctl_e, ft_h, ctl_h)


def test_clearly_above_small_q_identical_large_p_and_scipy_reference():
    ft, ctl, (ft_e, ctl_e, ft_h, ctl_h) = _synthetic()
    tab = paired_r_tests({"finetuned": ft, "frozen": ctl}, GRID)
    assert list(tab.columns) == COLUMNS
    emb = tab[tab["level"] == "embedding"].iloc[0]
    assert pd.isna(emb["layer"]) and emb["n_proteins"] == 20 and emb["p_bh"] == emb["p"]
    assert emb["p"] == pytest.approx(stats.wilcoxon(ft_e - ctl_e, alternative="greater").pvalue)
    assert emb["median_difference"] == pytest.approx(np.median(ft_e - ctl_e))
    assert emb["median_r_control"] == pytest.approx(np.median(ctl_e))
    h = tab[tab["level"] == "head"].set_index(["layer", "head"])
    assert h.loc[(0, 0), "p_bh"] < 1e-4 and h.loc[(0, 0), "significant"]
    assert h.loc[(0, 1), "p"] == 1.0 and h.loc[(0, 1), "median_difference"] == 0.0  # identical
    assert h.loc[(1, 0), "p"] > 0.99 and not h.loc[(1, 0), "significant"]  # fine-tuned below
    assert h.loc[(1, 1), "p"] == pytest.approx(
        stats.wilcoxon(ft_h[:, 3] - ctl_h[:, 3], alternative="greater").pvalue)
    assert h["significant"].tolist() == [True, False, False, False]
    # BH over the four heads of this (control, annotation, group)
    from statsmodels.stats.multitest import multipletests

    q = multipletests(h["p"].to_numpy(), method="fdr_bh")[1]
    assert np.allclose(h["p_bh"].to_numpy(), q)


def test_pairs_only_on_the_proteins_in_both_variants():
    ft, ctl, (ft_e, ctl_e, ft_h, ctl_h) = _synthetic(n=20, seed=1)
    ft = ft.iloc[:17]  # P17..P19 only in the control
    ctl = ctl.iloc[5:].copy()  # P0..P4 only in the fine-tuned model
    ctl.loc[ctl.index[0], "r_embedding"] = np.nan  # P5: constant relevance in the control
    tab = paired_r_tests({"finetuned": ft, "shuffled": ctl}, GRID)
    emb = tab[tab["level"] == "embedding"].iloc[0]
    assert (emb["n_only_finetuned"], emb["n_only_control"]) == (5, 3)
    assert emb["n_proteins"] == 11  # P6..P16
    naive = [ft_e[k] - ctl_e[k] for k in range(6, 17)]
    assert emb["p"] == pytest.approx(stats.wilcoxon(naive, alternative="greater").pvalue)
    h = tab[(tab["level"] == "head") & (tab["layer"] == 0) & (tab["head"] == 0)].iloc[0]
    assert h["n_proteins"] == 12  # P5..P16: the NaN was the embedding's only
    assert h["p"] == pytest.approx(stats.wilcoxon(ft_h[5:17, 0] - ctl_h[5:17, 0],
                                                  alternative="greater").pvalue)


def test_no_controls_no_rows_and_groups_per_target():
    ft, ctl, _ = _synthetic()
    empty = paired_r_tests({"finetuned": ft}, GRID)
    assert list(empty.columns) == COLUMNS and len(empty) == 0
    ft2, ctl2 = ft.copy(), ctl.copy()
    ft2.loc[10:, "target"] = "2"
    ctl2.loc[10:, "target"] = "2"
    tab = paired_r_tests({"finetuned": ft2, "frozen": ctl2, "shuffled": ctl2}, GRID,
                         groups=["all", "1", "2"])
    assert set(tab["control"]) == {"frozen", "shuffled"}
    emb = tab[tab["level"] == "embedding"].set_index(["control", "group"])
    assert emb.loc[("frozen", "all"), "n_proteins"] == 20
    assert emb.loc[("frozen", "1"), "n_proteins"] == 10 == emb.loc[("shuffled", "2"), "n_proteins"]
    assert len(tab[tab["level"] == "head"]) == 2 * 3 * 4


def test_paired_greater_exact_with_few_nonzero_differences_and_errors():
    d = np.array([[0.0, 0.0, 0.0, np.nan], [0.0, 0.1, -0.1, np.nan], [0.0, 0.0, 0.0, np.nan]])
    n, p = paired_greater(d)
    assert n.tolist() == [3, 3, 3, 0]
    assert p[:3].tolist() == [1.0, 0.5, 1.0] and np.isnan(p[3])
    ft, ctl, _ = _synthetic()
    ctl.at[3, "r_heads"] = np.zeros(6)
    with pytest.raises(ValueError, match="'P3'.*6 heads"):
        paired_r_tests({"finetuned": ft, "frozen": ctl}, GRID)
    with pytest.raises(ValueError, match="r_heads"):
        paired_r_tests({"finetuned": ft, "frozen": ctl.drop(columns="r_heads")}, GRID)


def test_from_head_statistics_planted_signal_against_the_same_noise(tmp_path):
    """Fine-tuned: noise plus a planted motif signal at the embedding and head (1, 0); control:
    the same noise without it. Every paired difference there is positive (p = 2^-30 exact), the
    other heads are identical (p = 1); r_heads is the point-biserial r of each head."""
    from seqxai.io import write_table

    emb_ft, heads_ft, ann = _attributions(30, signal=2.0)
    emb_ctl, heads_ctl, _ = _attributions(30, signal=0.0)
    per = {v: wenzel_statistics(e, h, ann, ["motif"], per_target=True)
           for v, e, h in (("finetuned", emb_ft, heads_ft), ("frozen", emb_ctl, heads_ctl))}
    pp = per["finetuned"]["per_protein"]
    row = pp[(pp["accession"] == "P3")].iloc[0]
    rel = np.stack(heads_ft[heads_ft["accession"] == "P3"].sort_values(["layer", "head"])["relevance"]
                   .map(np.asarray).tolist())
    mask = annotation_masks(ann, "P3", 50, ["motif"])["motif"]
    assert np.allclose(row["r_heads"], point_biserial(mask, rel))
    paths = []
    for v in per:
        paths.append(tmp_path / f"{v}.parquet")
        write_table(paths[-1], per[v]["per_protein"])
    write_table(tmp_path / "heads.parquet", per["finetuned"]["heads"])
    tab = run_paired_r(paths, list(per), tmp_path / "heads.parquet", tmp_path / "paired.parquet")
    assert set(tab["group"]) == {"all", "1", "2"}
    emb = tab[(tab["level"] == "embedding")].set_index("group")
    assert emb.loc["all", "p"] == pytest.approx(0.5 ** 30) and emb.loc["1", "n_proteins"] == 15
    h = tab[(tab["level"] == "head") & (tab["group"] == "all")]
    assert h.loc[h["significant"], ["layer", "head"]].values.tolist() == [[1, 0]]
    assert (h.loc[~h["significant"], "p"] == 1.0).all()
    assert pd.read_parquet(tmp_path / "paired.parquet")["layer"].dtype == "Int64"


def _emb(p, pc):
    return pd.DataFrame({"annotation": ["motif"], "group": ["all"], "n_proteins": [20],
                         "median_r": [0.2], "p": [p], "p_composition": [pc]})


def _paired(p_frozen, p_shuffled, diff=0.1):
    return pd.DataFrame({"control": ["frozen", "shuffled"], "annotation": "motif", "group": "all",
                         "level": "embedding", "n_proteins": 20, "median_difference": diff,
                         "p": [p_frozen, p_shuffled]})


@pytest.mark.parametrize("p,pc,controls,passes,held_by", [
    (1e-5, 0.005, None, True, ["composition_null"]),        # (b) alone, no controls
    (1e-5, 0.5, None, False, []),                            # the bare Wilcoxon is not enough
    (1e-5, 0.5, (1e-4, 1e-3), True, ["controls"]),           # (a) holds, (b) does not
    (1e-5, 0.5, (1e-4, 0.2), False, []),                     # (a) needs every control
    (1e-5, 0.005, (1e-4, 1e-3), True, ["composition_null", "controls"]),
    (0.1, 0.005, (1e-4, 1e-3), False, ["composition_null", "controls"]),  # bare test fails
    (1e-5, np.nan, (1e-4, np.nan), False, []),               # untestable is not a pass
])
def test_embedding_control_needs_the_composition_null_or_the_controls(p, pc, controls, passes,
                                                                       held_by):
    expect = [{"task": "ec", "group": "all", "annotation": "motif"}]
    paired = {"ec": _paired(*controls)} if controls else {}
    res = embedding_enrichment(expect, {"ec": _emb(p, pc)}, paired, 1e-3, 0.01, 0.01)
    c = res["checks"][0]
    assert c["pass"] is passes and res["pass"] is passes and c["held_by"] == held_by
    assert set(c["nulls"]) == ({"composition_null", "controls"} if controls else {"composition_null"})
    assert res["controls_max_p"] == (0.01 if controls else None)
    if controls:
        assert c["controls"]["frozen"]["p"] == controls[0]
    # the floor on the median paired difference: small p with a small shift is not enough
    if controls and passes and held_by == ["controls"]:
        small = {"ec": _paired(*controls, diff=0.01)}
        res = embedding_enrichment(expect, {"ec": _emb(p, pc)}, small, 1e-3, 0.01, 0.01, 0.05)
        assert not res["pass"] and res["checks"][0]["held_by"] == []
        assert res["controls_min_difference"] == 0.05
    # a paired table without this annotation: the controls cannot hold
    other = {"ec": _paired(1e-4, 1e-4).assign(annotation="transmembrane")}
    res = embedding_enrichment(expect, {"ec": _emb(p, 0.5)}, other, 1e-3, 0.01, 0.01)
    assert res["checks"][0]["controls"] == {} and not res["checks"][0]["nulls"]["controls"]


def test_figure_shows_the_median_difference_per_head_and_dots_the_significant(monkeypatch):
    from seqxai import plots

    ft, ctl, (_, _, ft_h, ctl_h) = _synthetic()
    tab = paired_r_tests({"finetuned": ft, "frozen": ctl, "shuffled": ctl}, GRID)
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    plots.control_comparison(tab, "unused.png", "ec")
    axes = [ax for ax in figs[0].axes if ax.get_images()]
    assert len(axes) == 2 and "vs frozen" in axes[0].get_title()
    img = axes[0].get_images()[0].get_array()
    assert img.shape == GRID
    assert img[0, 0] == pytest.approx(np.median(ft_h[:, 0] - ctl_h[:, 0]))  # [layer, head]
    assert img[1, 0] == pytest.approx(np.median(ft_h[:, 2] - ctl_h[:, 2]))
    assert axes[0].collections[0].get_offsets().tolist() == [[0, 0]]  # (head, layer) of q < alpha
    plots.control_comparison(tab.iloc[:0], "unused.png", "ec")  # no controls: an empty figure
