"""Every figure of the demo, drawn from tiny synthetic tables, is readable at a glance: in each
axes every labelled series has its own colour, the IG bars share no colour with the shading,
and axes of layers, heads, epochs, residues and offsets carry integer ticks only."""
import re

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from seqxai import attention_probe_plots, dna_plots, palette, plots  # noqa: E402

INTEGER_AXES = re.compile(r"\b(layer|head|epoch|residue|offset)\b")


# ------------------------------------------------------------------------------- checks
def _colour(artist) -> str:
    """The colour a legend shows for a series (alpha dropped: a shaded span is its colour;
    an open marker its edge)."""
    from matplotlib.colors import to_rgba_array
    from matplotlib.lines import Line2D

    if isinstance(artist, Line2D):
        return to_hex(artist.get_color(), keep_alpha=False)
    face = to_rgba_array(artist.get_facecolor())
    if not len(face) or face[0, 3] == 0:
        face = to_rgba_array(artist.get_edgecolor())
    return to_hex(face[0], keep_alpha=False)


def _series(ax) -> dict[str, str]:
    """{label: colour} of the labelled series of ``ax`` (its legend's entries, else its lines,
    containers and patches with a label of their own)."""
    leg = ax.get_legend()
    if leg is not None:
        return {t.get_text(): _colour(h) for t, h in zip(leg.get_texts(), leg.legend_handles)}
    artists = [*ax.get_lines(), *ax.containers, *ax.collections, *ax.patches]
    out = {}
    for a in artists:
        label = a.get_label()
        if label and not label.startswith("_"):
            out[label] = _colour(a.patches[0] if hasattr(a, "patches") else a)
    return out


def colour_clashes(fig) -> list[str]:
    """Axes in which two differently labelled series share a colour."""
    bad = []
    for ax in fig.axes:
        by_colour = {}
        for label, colour in _series(ax).items():
            by_colour.setdefault(colour, []).append(label)
        bad += [f"{ax.get_title()!r}: {labels} all {c}" for c, labels in by_colour.items() if len(labels) > 1]
    return bad


def _tick_values(labels) -> list[str]:
    return [t.get_text().replace("\u2212", "-") for t in labels if t.get_text()]


def fractional_ticks(fig) -> list[str]:
    """Tick labels that are not integers on axes of layers, heads, epochs, residues, offsets
    ("in" is the input embedding's layer; "1-2" a layer-head pair)."""
    fig.canvas.draw()
    bad = []
    for ax in fig.axes:
        for label, ticks in ((ax.get_xlabel(), ax.get_xticklabels()), (ax.get_ylabel(), ax.get_yticklabels())):
            if not INTEGER_AXES.search(label.lower()):
                continue
            bad += [f"{label!r}: {t}" for t in _tick_values(ticks)
                    if t != "in" and not re.fullmatch(r"-?\d+(--?\d+)?", t)]
    return bad


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, instead of PNG files."""
    figs = []
    for mod in (plots, attention_probe_plots, dna_plots):
        monkeypatch.setattr(mod, "_save", lambda fig, path: figs.append(fig))
    yield figs
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_checks_catch_the_old_defects():
    """The demo's old layer trend: contact with no palette colour got matplotlib's first colour,
    binding_site tab:blue, both blue; two layers on an automatic axis ticked 0.0, 0.2, ..."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 2], label="contact")
    ax.plot([0, 1], [2, 1], label="binding_site", color="tab:blue")
    ax.set_xlabel("layer")
    ax.legend()
    assert colour_clashes(fig) and fractional_ticks(fig)
    plt.close(fig)


# ------------------------------------------------------------------------------- inputs
LAYERS, HEADS = 2, 3
ANNS = ["active_site", "binding_site", "motif", "transmembrane"]


def _heads_table():
    rng = np.random.default_rng(0)
    rows = []
    for ann in ANNS[:2]:
        for group in ("all", "GO:0016020"):
            for layer in range(LAYERS):
                for head in range(HEADS):
                    if (layer, head) == (1, 2) and group != "all":
                        continue  # not scored: hatched
                    p = float(rng.uniform(1e-6, 0.2))
                    rows.append(dict(annotation=ann, group=group, layer=layer, head=head, p_bh=p,
                                     significant=p < 0.05))
    return pd.DataFrame(rows)


def _probe_table():
    rng = np.random.default_rng(1)
    rows = []
    for prop, bg in (("contact", 0.02), ("binding_site", 0.03), ("transmembrane", 0.1), ("ss:H", 0.3)):
        for layer in range(LAYERS):
            for head in range(HEADS):
                share = float(rng.uniform(0, 0.5))
                rows.append(dict(property=prop, layer=layer, head=head, share=share, background=bg,
                                 included=(layer, head) != (0, 0), share_low=share * 0.8,
                                 share_high=min(share * 1.2, 1), significant=share > 0.3,
                                 share_ci_low=np.nan, share_ci_high=np.nan))
    return pd.DataFrame(rows)


def _trend(probe):
    g = probe.groupby(["property", "layer"], as_index=False)["share"].mean().rename(columns={"share": "mean_share"})
    g["centre_of_gravity"] = 0.6
    return g


def _example(n=30):
    rng = np.random.default_rng(2)
    ci = np.array([1, 3, 5, 10])
    cj = np.array([12, 20, 9, 25])
    attn = rng.uniform(0, 0.1, (n, n))
    return {"accession": "P1", "length": n, "contact_i": ci.tolist(), "contact_j": cj.tolist(),
            "resolved": "1" * (n - 2) + "00", "attention": attn.tolist(), "layer": 1, "head": 2,
            "regression": rng.uniform(0, 0.3, (n, n)).tolist()}


def _diagnostic():
    rows = []
    for kind, layers in (("embedding", [-1, 0, 1]), ("attention", [0, 1])):
        for prop in ("contact", "binding_site", "transmembrane", "active_site", "motif"):
            for metric in ("AP", "long P@L/5") if prop == "contact" else ("AP",):
                for layer in layers:
                    rows.append(dict(input=kind, property=prop, metric=metric, layer=layer, value=0.3 + 0.1 * layer,
                                     chance=0.05, n_train_proteins=10, n_test_proteins=5))
    return pd.DataFrame(rows)


def _flipping():
    rows = []
    for order in ("most_relevant", "least_relevant", "random"):
        for seed in (0, 1) if order == "random" else (0,):
            for n in (0, 1, 2, 4):
                rows.append(dict(order=order, seed=seed, n=n, mean_probability=1 - 0.1 * n,
                                 accuracy=1 - 0.1 * n, n_proteins=5))
    tests = pd.DataFrame([dict(comparison="most_relevant vs random", order_a="most_relevant", order_b="random",
                               mean_aopc_a=0.4, mean_aopc_b=0.2, p=0.01)])
    return {"finetuned": pd.DataFrame(rows)}, {"finetuned": tests}


def _dna_profiles(n_layers=2, n_heads=4):
    offsets = np.arange(-40, 11)
    rows = [dict(layer=l, head=h, offset=o, attention=float(np.exp(-((o + 10 + 5 * h) ** 2) / 8)) / (1 + l))
            for l in range(n_layers) for h in range(n_heads) for o in offsets]
    return pd.DataFrame(rows)


def _head_motifs():
    pfm = np.full((8, 4), 0.1)
    pfm[np.arange(8), np.arange(8) % 4] = 0.7
    return pd.DataFrame([dict(layer=l, head=h, peak_offset=-10, peak_mass=0.2 + 0.1 * h, consensus="ACGTACGT",
                              window_start_offset=-4, pfm=pfm.tolist(), query_adjacent=False)
                         for l in range(2) for h in range(2)])


ELEMENTS = {"minus10": {"centre": -10}, "minus35": {"centre": -33}}


def _all_figures(tmp_path):
    """name -> a call drawing one figure of the demo (the rule scripts' calls)."""
    probe, heads = _probe_table(), _heads_table()
    emb = pd.DataFrame({"annotation": ANNS, "group": "all", "p": [1e-5, 0.2, 0.01, 1e-8]})
    paired = heads.assign(control="frozen", level="head", median_difference=heads["p_bh"] - 0.1, p=heads["p_bh"],
                          n_proteins=5)
    paired = pd.concat([paired[(paired["layer"] != 0) | (paired["head"] != 1)],  # head (0, 1) not scored
                        paired.drop_duplicates(["annotation", "group"]).assign(level="embedding")])
    rng = np.random.default_rng(3)
    embedding = pd.DataFrame({"accession": ["P1", "P2", "P3"], "target": ["GO:0005524", "GO:0005524", "GO:0016020"],
                              "relevance": [rng.normal(size=40).tolist() for _ in range(3)]})
    annotations = pd.DataFrame({"accession": ["P1", "P1", "P2", "P3"], "type": ["active_site", "binding_site",
                                                                                  "motif", "transmembrane"],
                                "start": [5, 10, 20, 2], "end": [5, 15, 25, 22]})
    blosum = pd.DataFrame({"blosum62": [-1, 0, 2, 3], "attention_corr": [0.1, 0.2, 0.5, 0.9],
                           "aa1": list("ACDE"), "aa2": list("FGHI"), "r_blosum": 0.5, "n_heads": 6})
    logs = {}
    for name, n_epochs in (("ec", 2), ("dna", 3)):  # two epochs: the fractional-tick case
        logs[name] = tmp_path / f"{name}.tsv"
        pd.DataFrame({"epoch": range(1, n_epochs + 1), "train_loss": 1.0, "valid_loss": 0.9}).to_csv(
            logs[name], sep="\t", index=False)
    curves, tests = _flipping()
    ig = pd.DataFrame([dict(kind=k, offset=o, mean_contribution=0.1, mean_abs_contribution=0.2, n_windows=5)
                       for k in ("background", "tss") for o in range(-40, 11)])
    hm = _head_motifs()
    matches = pd.DataFrame({"source": ["attention", "modisco"], "motif": ["L0H0", "pattern_0"],
                            "consensus": "ACGT", "n_sites": 5, "target": ["minus10", None],
                            "q": [0.01, np.nan], "p": [0.001, np.nan]})
    patterns = pd.DataFrame({"pattern": ["pattern_0"], "ppm": [hm["pfm"].iloc[0]]})
    method_table = pd.DataFrame({"method": ["ig"], "pattern": ["pattern_0"], "consensus": "ACGT", "n_seqlets": 5,
                                 "target": ["minus10"], "q": [0.01]})   # attnlrp: no pattern
    return {
        "head_significance": lambda: plots.head_significance(heads, "x.png", "go"),
        "control_comparison": lambda: plots.control_comparison(paired, "x.png", "go"),
        "embedding_significance": lambda: plots.embedding_significance(emb, "x.png", "go"),
        "tracks": lambda: plots.attribution_tracks(embedding, None, annotations, ANNS, 3, "x.png", "go"),
        "attention": lambda: attention_probe_plots.attention_probe(probe, "x.png", "pretrained"),
        "top_heads": lambda: attention_probe_plots.attention_top_heads(probe, "x.png", "pretrained"),
        "layer_trend": lambda: attention_probe_plots.attention_layer_trend(_trend(probe), probe, "x.png", "pretrained"),
        "blosum": lambda: attention_probe_plots.blosum_scatter(blosum, "x.png", "pretrained"),
        "contacts": lambda: attention_probe_plots.contact_example(_example(), pd.DataFrame(
            {"accession": ["P1"], "long P@L/5": [0.5]}), "x.png", "pretrained"),
        "diagnostic_probes": lambda: plots.diagnostic_probes(_diagnostic(), "x.png", "pretrained"),
        "training": lambda: plots.training_curves({"ec": logs["ec"]}, logs["dna"], "x.png"),
        "residue_flipping": lambda: plots.residue_flipping(curves, tests, "x.png", "ec"),
        "dna_profiles": lambda: dna_plots.plot_profiles(_dna_profiles(), ELEMENTS, "x.png"),
        # the paper's model: 36 heads, more than there are series colours
        "dna_profiles_6x6": lambda: dna_plots.plot_profiles(_dna_profiles(6, 6), ELEMENTS, "x.png"),
        "dna_logos": lambda: dna_plots.plot_logos(hm, {}, "x.png", 3),
        "dna_ig_profile": lambda: dna_plots.plot_ig_profile(ig, ELEMENTS, "x.png"),
        "dna_motif_sources": lambda: dna_plots.plot_motif_sources(patterns, matches, hm, "x.png"),
        "dna_method_motifs": lambda: dna_plots.plot_method_motifs(
            ["ig", "attnlrp"], [patterns, patterns.iloc[:0]], method_table, "x.png"),
    }


FIGURES = [
    "head_significance", "control_comparison", "embedding_significance", "tracks", "attention", "top_heads",
    "layer_trend", "blosum", "contacts", "diagnostic_probes", "training", "residue_flipping", "dna_profiles", "dna_profiles_6x6",
    "dna_logos", "dna_ig_profile", "dna_motif_sources", "dna_method_motifs"]


def test_every_figure_function_is_drawn(tmp_path):
    """Every function of the plot modules that saves a figure is called by _all_figures."""
    import inspect

    assert sorted(_all_figures(tmp_path)) == sorted(FIGURES)
    calls = inspect.getsource(_all_figures)
    savers = [f"{mod.__name__.split('.')[-1]}.{name}" for mod in (plots, attention_probe_plots, dna_plots)
              for name, fn in inspect.getmembers(mod, inspect.isfunction)
              if fn.__module__ == mod.__name__ and not name.startswith("_") and "_save(fig" in inspect.getsource(fn)]
    assert len(savers) >= 16
    assert [s for s in savers if s + "(" not in calls] == []


@pytest.mark.parametrize("name", FIGURES)
def test_distinct_colours_and_integer_ticks(name, figures, tmp_path):
    _all_figures(tmp_path)[name]()
    assert len(figures) == 1
    fig = figures[0]
    assert not colour_clashes(fig), colour_clashes(fig)
    assert not fractional_ticks(fig), fractional_ticks(fig)


# ----------------------------------------------------------------------- figure by figure
def test_layer_trend_gives_contact_and_binding_site_their_palette_colours(figures, tmp_path):
    _all_figures(tmp_path)["layer_trend"]()
    series = _series(figures[0].axes[0])
    assert series["contact"] == palette.ANNOTATION_COLOURS["contact"]
    assert series["binding_site"] == palette.ANNOTATION_COLOURS["binding_site"]
    assert series["contact"] != series["binding_site"]


def test_ig_bars_use_no_shading_colour(figures, tmp_path):
    _all_figures(tmp_path)["tracks"]()
    for ax in figures[0].axes:
        bars = {to_hex(p.get_facecolor(), keep_alpha=False) for c in ax.containers for p in c.patches}
        spans = {to_hex(p.get_facecolor(), keep_alpha=False) for p in ax.patches} - bars
        assert bars and spans and not bars & spans
        assert bars <= {palette.IG_POSITIVE, palette.IG_NEGATIVE}


def test_tracks_show_a_membrane_example_beyond_the_first_rows():
    """Two tracks of four proteins: the only transmembrane protein comes last in attribution
    order, and is drawn; so is every target (and motif, on A)."""
    emb = pd.DataFrame({"accession": ["A", "B", "C", "D"], "target": ["t1", "t1", "t2", "t2"]})
    ann = pd.DataFrame({"accession": ["A", "A", "B", "C", "D"],
                        "type": ["active_site", "motif", "active_site", "motif", "transmembrane"],
                        "start": 1, "end": 2})
    got = plots.track_examples(emb, ann, ANNS, 2)
    assert got["accession"].tolist() == ["A", "D"]
    assert plots.track_examples(emb, ann, ANNS, 4)["accession"].tolist() == ["A", "B", "C", "D"]
    # a protein attributed for two targets is drawn once
    twice = pd.DataFrame({"accession": ["A", "A", "B"], "target": ["t1", "t2", "t1"]})
    assert plots.track_examples(twice, ann, ANNS, 3)["accession"].tolist() == ["A", "B"]


def test_contact_figure_has_colour_bars_and_circles_the_true_contacts(figures, tmp_path):
    _all_figures(tmp_path)["contacts"]()
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3 and len(fig.axes) == 6  # three panels, three colour bars
    want = sorted((j - 1, i - 1) for i, j in zip(_example()["contact_i"], _example()["contact_j"])
                  if abs(i - j) >= 6 and j <= 28)  # residues 29, 30 unresolved
    want += [(i, j) for j, i in want]
    for ax in panels[1:]:
        got = sorted(map(tuple, ax.collections[0].get_offsets().astype(int).tolist()))
        assert got == sorted(want)


def test_blank_cells_are_explained_on_the_heatmaps(figures, tmp_path):
    for name in ("head_significance", "attention", "control_comparison"):
        _all_figures(tmp_path)[name]()
        fig = figures[-1]
        texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert any("not scored" in t for t in texts), (name, texts)
        hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
        assert hatched, name  # the not-scored head (1, 2) of a target group, or (0, 0) of the probe


def test_dna_profile_lines_are_the_highest_heads_when_colours_run_out(figures, tmp_path):
    _all_figures(tmp_path)["dna_profiles_6x6"]()
    lines = _series(figures[0].axes[1])
    heads = [k for k in lines if k.startswith("L")]
    assert len(heads) == len(palette.SERIES_COLOURS)
    assert all(k.startswith("L0") for k in heads[:6]) and "L1H0" in heads  # layer 0 peaks highest
