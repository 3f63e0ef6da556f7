"""Figures of the protein analyses (matplotlib, Agg backend, PNG written atomically).

Layers are drawn in numeric order on every axis (the original code string-sorted them); axes
of layers, heads, epochs and residues carry integer ticks only. Colours come from
:mod:`seqxai.palette`. Heatmap cells without a value say why on the figure (not significant:
white; not scored: hatched grey). The attention probe's figures are in
seqxai.attention_probe_plots.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from . import palette
from .io import atomic_path


def _save(fig, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _integer_axis(axis) -> None:
    """Ticks at integers only (layers, epochs, residues): no 0.2, 0.4 ... between two layers."""
    axis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def _hatch_not_scored(ax, not_scored: np.ndarray) -> int:
    """Hatched grey cells where ``not_scored[layer, head]`` (imshow coordinates, origin lower);
    returns how many."""
    for layer, head in np.argwhere(not_scored):
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, facecolor=palette.NOT_SCORED,
                               edgecolor=palette.GREY, hatch="///", lw=0, zorder=0.5))
    return int(np.count_nonzero(not_scored))


def _blank_legend(fig, entries: list[tuple[str, str]]) -> None:
    """A figure legend that says what blank heatmap cells mean: (kind, text), kind "white"
    (a cell left white) or "hatched" (a cell not scored); none without entries."""
    if not entries:
        return
    handles = [Patch(facecolor="white", edgecolor=palette.GREY, label=text) if kind == "white" else
               Patch(facecolor=palette.NOT_SCORED, edgecolor=palette.GREY, hatch="///", label=text)
               for kind, text in entries]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)


def _layer_head_ticks(ax, n_layers: int, n_heads: int) -> None:
    """Integer ticks on a layer x head grid, every k-th where all would crowd: at most 12
    layers and 6 heads labelled (panels are ~2 inches wide; the paper models' 30 x 16 and
    33 x 20 grids get every 3rd layer and every 3rd or 4th head)."""
    ax.set_yticks(range(0, n_layers, -(-n_layers // 12)))
    ax.set_xticks(range(0, n_heads, -(-n_heads // 6)))


def _grid(df: pd.DataFrame, value: str) -> np.ndarray:
    """value[layer, head] from a long table, layers and heads in numeric order."""
    n_l, n_h = int(df["layer"].max()) + 1, int(df["head"].max()) + 1
    grid = np.full((n_l, n_h), np.nan)
    grid[df["layer"].to_numpy(int), df["head"].to_numpy(int)] = df[value].to_numpy(float)
    return grid


def head_significance(table: pd.DataFrame, path, task: str) -> None:
    """Layers x heads heatmaps of -log10(p_BH): rows annotation types, columns target groups
    ("all" first); non-significant heads are white, heads without a test (no p) hatched;
    one colour scale for all panels."""
    anns = sorted(table["annotation"].unique())
    groups = ["all"] + sorted(g for g in table["group"].unique() if g != "all")
    val = -np.log10(table["p_bh"].astype(float).clip(1e-300, 1))
    vmax = max(float(val[table["significant"]].max()) if table["significant"].any() else 1.0, 1.0)
    fig, axes = plt.subplots(len(anns), len(groups), figsize=(2.2 * len(groups) + 1, 2.0 * len(anns) + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    im, n_hatched = None, 0
    for r, ann in enumerate(anns):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            sub = table[(table["annotation"] == ann) & (table["group"] == group)]
            if len(sub):
                grid = -np.log10(_grid(sub, "p_bh").clip(1e-300, 1))
                sig = _grid(sub.assign(s=sub["significant"].astype(float)), "s") > 0
                im = ax.imshow(np.ma.masked_where(~sig, grid), cmap="viridis", aspect="auto",
                               origin="lower", vmin=0, vmax=vmax)
                n_hatched += _hatch_not_scored(ax, np.isnan(grid))
                _layer_head_ticks(ax, grid.shape[0], grid.shape[1])
            if r == 0:
                ax.set_title(f"target {group}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{ann}\nlayer", fontsize=9)
            if r == len(anns) - 1:
                ax.set_xlabel("head", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes, label="-log10 p (BH)", shrink=0.6)
    _blank_legend(fig, [("white", "white: not significant (BH)")]
                  + [("hatched", "hatched: not scored (no test for this head)")] * bool(n_hatched))
    fig.suptitle(f"{task}: heads whose relevance concentrates on annotations (one-sided Wilcoxon, BH)")
    _save(fig, path)


def control_comparison(table: pd.DataFrame, path, task: str) -> None:
    """Layers x heads heatmaps of the median paired difference r_finetuned - r_control
    (seqxai.paired_r, group "all"): rows annotation types, columns controls; a dot marks a head
    with BH q < alpha; the panel title gives the embedding-level difference and p."""
    table = table[table["group"] == "all"]
    anns = sorted(table["annotation"].unique()) or ["(none)"]
    controls = sorted(table["control"].unique()) or ["(no controls)"]
    heads = table[table["level"] == "head"]
    diff = heads["median_difference"].astype(float).abs()
    vmax = float(diff.max()) if diff.notna().any() and diff.max() > 0 else 1.0
    fig, axes = plt.subplots(len(anns), len(controls),
                             figsize=(2.6 * len(controls) + 1, 2.0 * len(anns) + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    im, n_hatched = None, 0
    for r, ann in enumerate(anns):
        for c, control in enumerate(controls):
            ax = axes[r, c]
            sel = (table["annotation"] == ann) & (table["control"] == control)
            sub = table[sel & (table["level"] == "head")]
            emb = table[sel & (table["level"] == "embedding")]
            if len(sub):
                grid = _grid(sub, "median_difference")
                im = ax.imshow(grid, cmap="RdBu_r", aspect="auto", origin="lower", vmin=-vmax, vmax=vmax)
                n_hatched += _hatch_not_scored(ax, np.isnan(grid))
                sig = sub[sub["significant"]]
                ax.scatter(sig["head"].astype(int), sig["layer"].astype(int), s=8, c=palette.BLACK)
                _layer_head_ticks(ax, int(sub["layer"].max()) + 1, int(sub["head"].max()) + 1)
            if len(emb):
                e = emb.iloc[0]
                ax.set_title(f"vs {control}\nembedding: {e['median_difference']:+.3f}, "
                             f"p={_p_text(e['p'])}, n={int(e['n_proteins'])}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{ann}\nlayer", fontsize=9)
            if r == len(anns) - 1:
                ax.set_xlabel("head", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes, label="median r_finetuned - r_control", shrink=0.6)
        _blank_legend(fig, [("hatched", "hatched: not scored (no paired test for this head)")] * bool(n_hatched))
    fig.suptitle(f"{task}: fine-tuned r against the controls on the same proteins "
                 "(paired one-sided Wilcoxon; dot: BH q < alpha)", fontsize=9)
    _save(fig, path)


def embedding_significance(table: pd.DataFrame, path, task: str, alpha: float = 0.05) -> None:
    """Bar plot of embedding-level -log10 p per annotation type (and group), line at p = alpha."""
    t = table.copy()
    t["label"] = t["annotation"] + " [" + t["group"] + "]"
    t["score"] = -np.log10(t["p"].astype(float).clip(1e-300, 1)).fillna(0)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(t)), 3.5))
    colours = palette.annotation_colours(t["annotation"])
    ax.bar(range(len(t)), t["score"], color=[colours[a] for a in t["annotation"]])
    ax.axhline(-np.log10(alpha), color=palette.BLACK, ls="--", lw=1, label=f"p = {alpha}")
    ax.set_xticks(range(len(t)), t["label"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("-log10 p (one-sided Wilcoxon)")
    ax.set_title(f"{task}: embedding-level relevance inside annotations")
    ax.legend()
    _save(fig, path)


def track_examples(embedding: pd.DataFrame, annotations: pd.DataFrame, types, n_tracks: int) -> pd.DataFrame:
    """The (protein, target) rows of ``embedding`` to draw as tracks: at most ``n_tracks``, one
    per protein, chosen greedily to cover every target and every annotation type of ``types``
    that the attributed proteins have, the rarer ones first (a row's gain: the sum of
    1 / #rows having each target or type it adds; attribution order breaks ties), then filled
    in attribution order. A membrane (transmembrane) example is thus shown whenever an attributed
    protein has one, even when every protein has a motif."""
    from collections import Counter

    types = list(types)
    ann = annotations[annotations["type"].isin(types)]
    has = ann.groupby("accession")["type"].agg(lambda t: frozenset(t)).to_dict()
    rows = embedding.reset_index(drop=True)
    keys = [({("target", t)} | {("type", a) for a in has.get(acc, ())})
            for acc, t in zip(rows["accession"], rows["target"])]
    weight = {k: 1 / n for k, n in Counter(k for ks in keys for k in ks).items()}
    chosen, covered, used = [], set(), set()
    while len(chosen) < n_tracks:
        gain = [sum(weight[x] for x in k - covered) if acc not in used else -1
                for k, acc in zip(keys, rows["accession"])]
        best = int(np.argmax(gain)) if gain else -1
        if best < 0 or gain[best] <= 0:
            break
        chosen.append(best)
        covered |= keys[best]
        used.add(rows["accession"].iat[best])
    for i, acc in enumerate(rows["accession"]):  # fill in attribution order, one row per protein
        if len(chosen) >= n_tracks:
            break
        if acc not in used:
            chosen.append(i)
            used.add(acc)
    return rows.iloc[sorted(chosen)]


def attribution_tracks(embedding: pd.DataFrame, proteins: pd.DataFrame, annotations: pd.DataFrame,
                       types, n_tracks: int, path, task: str) -> None:
    """Embedding-level relevance along ``n_tracks`` attributed proteins (:func:`track_examples`:
    every target and annotation type shown when possible), annotations shaded; IG bars in greys
    that no shading uses."""
    rows = track_examples(embedding, annotations, types, n_tracks)
    colours = palette.annotation_colours(types)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.8 * max(len(rows), 1)), squeeze=False)
    for ax, r in zip(axes[:, 0], rows.itertuples(index=False)):
        rel = np.asarray(r.relevance)
        pos = np.arange(1, len(rel) + 1)
        for sign, colour, label in ((rel >= 0, palette.IG_POSITIVE, "IG > 0"),
                                    (rel < 0, palette.IG_NEGATIVE, "IG < 0")):
            if sign.any():
                ax.bar(pos[sign], rel[sign], width=1.0, color=colour, label=label)
        for a in annotations[annotations["accession"] == r.accession].itertuples(index=False):
            if a.type in colours:
                ax.axvspan(a.start - 0.5, a.end + 0.5, alpha=0.3, color=colours[a.type], label=a.type, lw=0)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right", ncol=6)
        ax.set_ylabel("IG", fontsize=8)
        ax.set_title(f"{r.accession} target {r.target}", fontsize=9)
        ax.set_xlim(0.5, len(rel) + 0.5)
        _integer_axis(ax.xaxis)
    axes[-1, 0].set_xlabel("residue (1-based)")
    fig.suptitle(f"{task}: embedding-level integrated gradients")
    fig.tight_layout()
    _save(fig, path)


def training_curves(protein_logs: dict, dna_log, path) -> None:
    """Train/validation loss per epoch of each protein task and of the DNA model (``dna_log``
    None: the run makes no DNA model, config ``studies``)."""
    logs = {f"protein {k}": pd.read_csv(v, sep="\t") for k, v in protein_logs.items()}
    if dna_log:
        logs["DNA TSS"] = pd.read_csv(dna_log, sep="\t")
    if not logs:
        raise ValueError("training_curves: no training log given")
    fig, axes = plt.subplots(1, len(logs), figsize=(3.5 * len(logs), 3), squeeze=False)
    for ax, (name, df) in zip(axes[0], logs.items()):
        x = "epoch" if "epoch" in df else df.columns[0]
        cols = [c for c in df.columns if c.endswith("loss")]
        for col, colour in zip(cols, palette.series_colours(len(cols))):
            g = df.groupby(x)[col].mean()
            ax.plot(g.index, g.values, marker="o", ms=3, label=col, color=colour)
        ax.set_xlabel(x)
        _integer_axis(ax.xaxis)
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


FLIP_STYLE = {"most_relevant": (palette.FLIP_COLOURS["most_relevant"], "most relevant first (MoRF)"),
              "least_relevant": (palette.FLIP_COLOURS["least_relevant"], "least relevant first (LeRF)"),
              "random": (palette.FLIP_COLOURS["random"], "random residues")}


def _p_text(p) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


def residue_flipping(curves: dict, tests: dict, path, task: str) -> None:
    """One column per model variant: mean target probability (top) and accuracy (bottom)
    against the number of flipped residues (0, 1, 2, 4, ... evenly spaced, i.e. a log2 axis
    after 0) for MoRF, LeRF and random flips (mean over seeds, shaded min-max of the seeds);
    the title holds each order's mean AOPC and the one-sided Wilcoxon p of MoRF > random."""
    variants = list(curves)
    ns = sorted(set().union(*[set(t["n"]) for t in curves.values()]))
    pos = {n: i for i, n in enumerate(ns)}
    fig, axes = plt.subplots(2, len(variants), figsize=(3.6 * len(variants) + 0.4, 5.6),
                             squeeze=False, layout="constrained")
    for c, v in enumerate(variants):
        table = curves[v]
        for ax, col, label in zip(axes[:, c], ("mean_probability", "accuracy"),
                                  ("mean probability of the target", "accuracy")):
            for order, (colour, name) in FLIP_STYLE.items():
                sub = table[table["order"] == order]
                if not len(sub):
                    continue
                g = sub.groupby("n")[col].agg(["mean", "min", "max"])  # over seeds (one for relevance)
                x = [pos[n] for n in g.index]
                ax.plot(x, g["mean"], marker="o", ms=3, color=colour, label=name)
                if order == "random":
                    ax.fill_between(x, g["min"], g["max"], color=colour, alpha=0.25, lw=0)
            ax.set_xticks(range(len(ns)), [str(n) for n in ns])
            ax.set_xlabel("residues replaced (log2 axis after 0)")
            ax.set_ylabel(label)
            ax.set_ylim(-0.02, 1.02)
        t = tests[v] if v in tests else pd.DataFrame(columns=["comparison"])
        aopc = {}
        for r in t.itertuples():
            aopc.setdefault(r.order_a, r.mean_aopc_a)
            aopc.setdefault(r.order_b, r.mean_aopc_b)
        p = dict(zip(t["comparison"], t["p"]))
        title = f"{v} ({int(table['n_proteins'].max()) if len(table) else 0} proteins)"
        if aopc:
            title += "\nAOPC " + ", ".join(f"{k} {aopc[o]:.3f}" for o, k in (
                ("most_relevant", "MoRF"), ("least_relevant", "LeRF"), ("random", "random")) if o in aopc)
        if "most_relevant vs random" in p:
            title += f"\nMoRF > random p = {_p_text(p['most_relevant vs random'])}"
        if "least_relevant vs random" in p:
            title += f", LeRF < random p = {_p_text(p['least_relevant vs random'])}"
        axes[0, c].set_title(title, fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{task}: residue flipping (one-sided paired Wilcoxon over proteins' AOPC)")
    _save(fig, path)


def diagnostic_probes(table: pd.DataFrame, path, model: str) -> None:
    """Vig et al.'s diagnostic probes: held-out score per layer, one line per property, its chance
    level dashed in the same colour. Panels: residue properties from the embeddings (AP),
    residue properties from attention (AP), contacts from attention (AP and long-range P@L/5)."""
    panels = [("embedding", "residue properties from embeddings", lambda d: d["property"] != "contact",
               ["AP"]),
              ("attention", "residue properties from attention", lambda d: d["property"] != "contact",
               ["AP"]),
              ("attention", "contacts from attention", lambda d: d["property"] == "contact",
               ["AP", "long P@L/5"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), squeeze=False)
    colours = palette.annotation_colours(table["property"].unique() if len(table) else [])
    for ax, (kind, title, pick, metrics) in zip(axes[0], panels):
        sub = table[(table["input"] == kind) & pick(table) & table["metric"].isin(metrics)]
        lines = sorted(sub.groupby(["property", "metric"]).groups)
        for prop, metric in lines:
            rows = sub[(sub["property"] == prop) & (sub["metric"] == metric)].sort_values("layer")
            # a second metric of the same property (contacts: long-range P@L/5) gets its own colour
            colour = colours[prop] if metric == metrics[0] else palette.SKY_BLUE
            label = prop if len(metrics) == 1 else f"{prop} {metric}"
            style = "-" if metric == "AP" else ":"
            ax.plot(rows["layer"], rows["value"], marker="o", ms=3, ls=style, color=colour, label=label)
            ax.plot(rows["layer"], rows["chance"], ls="--", lw=1, color=colour, alpha=0.7)
        if not lines:
            ax.text(0.5, 0.5, "no probe fitted", ha="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
            layers = sorted(sub["layer"].unique())
            ax.set_xticks(layers)
            ax.set_xticklabels(["in" if v < 0 else str(v) for v in layers])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer (in: input embedding)" if kind == "embedding" else "layer")
        ax.set_ylabel(" / ".join(metrics) + " on held-out proteins")
        ax.set_ylim(-0.02, 1.02)
    n = table[["n_train_proteins", "n_test_proteins"]].max() if len(table) else None
    counts = f" ({int(n.iloc[0])} train, {int(n.iloc[1])} test proteins)" if n is not None else ""
    fig.suptitle(f"{model}: linear probes per layer{counts}; dashed: chance")
    fig.tight_layout()
    _save(fig, path)
