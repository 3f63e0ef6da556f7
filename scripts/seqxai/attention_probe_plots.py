"""Figures of the Vig et al. attention probe (seqxai.attention_probes): shares of high-confidence
attention per head, the top heads, the layer trend, the BLOSUM62 comparison and a contact example."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import palette
from .plots import _blank_legend, _grid, _hatch_not_scored, _integer_axis, _layer_head_ticks, _save


def attention_probe(table: pd.DataFrame, path, model: str) -> None:
    """Per property: layers x heads share of high-confidence attention, with its background;
    heads with too few high-confidence weights to be scored are hatched."""
    props = sorted(table["property"].unique(), key=lambda p: (p != "contact", p))
    fig, axes = plt.subplots(1, len(props), figsize=(3.3 * len(props), 3.4), squeeze=False,
                             layout="constrained")
    n_hatched = 0
    for ax, prop in zip(axes[0], props):
        sub = table[table["property"] == prop]
        share = _grid(sub, "share")
        share[~(_grid(sub.assign(i=sub["included"].astype(float)), "i") > 0)] = np.nan
        im = ax.imshow(share * 100, cmap="magma", aspect="auto", origin="lower", vmin=0)
        n_hatched += _hatch_not_scored(ax, np.isnan(share))
        bg = float(sub["background"].iloc[0]) * 100
        ax.set_title(f"{prop}\nbackground {bg:.2f}%", fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        _layer_head_ticks(ax, share.shape[0], share.shape[1])
        fig.colorbar(im, ax=ax, label="% of high-confidence attention", shrink=0.8)
    _blank_legend(fig, [("hatched", "hatched: not scored (too few high-confidence attention weights)")]
                  * bool(n_hatched))
    fig.suptitle(f"{model}: where high-confidence attention goes (Vig et al.)")
    _save(fig, path)


def _vig_properties(table: pd.DataFrame) -> list[str]:
    return sorted(table["property"].unique(), key=lambda p: (p != "contact", p))


def attention_top_heads(table: pd.DataFrame, path, model: str, k: int = 10) -> None:
    """Per property: the k heads with the largest share, 95% protein-bootstrap intervals (Wilson
    intervals for tables without them), the background as a dashed line, * for heads significant
    after Bonferroni over the scored heads."""
    props = _vig_properties(table)
    boot = "share_ci_low" in table and table["share_ci_low"].notna().any()
    lo, hi, kind = ("share_ci_low", "share_ci_high", "protein-bootstrap") if boot else ("share_low", "share_high",
                                                                                   "Wilson")
    fig, axes = plt.subplots(1, len(props), figsize=(3.6 * len(props), 3.2), squeeze=False)
    colours = palette.annotation_colours(props)
    for ax, prop in zip(axes[0], props):
        sub = table[(table["property"] == prop) & table["included"]]
        top = sub.sort_values("share", ascending=False).head(k)
        x = np.arange(len(top))
        share = top["share"].to_numpy(float) * 100
        err = np.vstack([share - top[lo].to_numpy(float) * 100,
                         top[hi].to_numpy(float) * 100 - share]).clip(0)  # rounding at 0 and 1
        ax.bar(x, share, color=colours[prop], yerr=err, capsize=2, label=f"share ({prop})")
        for xi, (s, sig) in enumerate(zip(share, top["significant"])):
            if sig:
                ax.text(xi, s, "*", ha="center", va="bottom")
        bg = float(table.loc[table["property"] == prop, "background"].iloc[0]) * 100
        ax.axhline(bg, color=palette.BLACK, ls="--", lw=1, label=f"background {bg:.2f}%")
        ax.set_xticks(x, [f"{l}-{h}" for l, h in zip(top["layer"], top["head"])], rotation=60, fontsize=7)
        ax.set_xlabel("layer-head")
        ax.set_ylabel("% of high-confidence attention")
        ax.set_title(prop, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{model}: top heads per property (95% {kind} intervals; * Bonferroni significant)")
    fig.tight_layout()
    _save(fig, path)


def attention_layer_trend(trend: pd.DataFrame, table: pd.DataFrame, path, model: str) -> None:
    """Mean share per layer relative to the background, one curve per property, with the
    centre of gravity marked on each curve."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colours = palette.annotation_colours(_vig_properties(trend))
    for prop in _vig_properties(trend):
        sub = trend[trend["property"] == prop].sort_values("layer")
        bg = float(table.loc[table["property"] == prop, "background"].iloc[0])
        if not bg > 0:
            continue
        y = sub["mean_share"].to_numpy(float) / bg
        line, = ax.plot(sub["layer"], y, marker="o", ms=3, label=prop, color=colours[prop])
        cog = float(sub["centre_of_gravity"].iloc[0])
        if np.isfinite(cog):
            ax.plot([cog], [np.interp(cog, sub["layer"], y)], marker="v", ms=9, color=line.get_color())
    ax.axhline(1, color=palette.BLACK, ls="--", lw=1, label="background")
    ax.set_xlabel("layer")
    _integer_axis(ax.xaxis)
    ax.set_ylabel("mean share / background")
    ax.set_title(f"{model}: attention by layer (triangle: centre of gravity)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def blosum_scatter(pairs: pd.DataFrame, path, model: str) -> None:
    """Correlation across heads of amino-acid attention profiles vs BLOSUM62 (190 pairs)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.scatter(pairs["blosum62"], pairs["attention_corr"], s=10, alpha=0.7, color=palette.BLUE)
    for r in pairs.itertuples(index=False):
        if np.isfinite(r.attention_corr) and (r.blosum62 >= 2 or r.attention_corr > 0.8):
            ax.annotate(r.aa1 + r.aa2, (r.blosum62, r.attention_corr), fontsize=6)
    rb = float(pairs["r_blosum"].iloc[0]) if len(pairs) else np.nan
    n = int(pairs["n_heads"].iloc[0]) if len(pairs) else 0
    ax.set_xlabel("BLOSUM62 score")
    _integer_axis(ax.xaxis)
    ax.set_ylabel("correlation of attention profiles across heads")
    ax.set_title(f"{model}: r = {rb:.2f} over {len(pairs)} pairs, {n} heads", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def contact_example(example: dict | None, precision: pd.DataFrame, path, model: str) -> None:
    """Contact map of one held-out protein beside the best contact head's attention and the
    regression's contact probabilities, each with its colour bar; the true long-range contacts
    (|i - j| >= 6) are circled on the attention and regression panels."""
    panels = 3 if example and "regression" in example else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), squeeze=False, layout="constrained")
    if not example:
        for ax in axes[0]:
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no protein with a contact map", ha="center")
        _save(fig, path)
        return
    from matplotlib.colors import ListedColormap

    n = example["length"]
    cm = np.zeros((n, n))
    ci, cj = np.asarray(example["contact_i"], int) - 1, np.asarray(example["contact_j"], int) - 1
    cm[ci, cj] = cm[cj, ci] = 1.0  # 1-based pairs i < j
    sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    cm[sep < 6] = 0
    unresolved = np.array([c != "1" for c in example["resolved"]])
    cm[unresolved, :] = cm[:, unresolved] = 0.5
    # three states, three colours: no contact, unresolved residue, contact
    states = ListedColormap(["white", palette.LIGHT_GREY, palette.BLACK])
    im = axes[0, 0].imshow(cm, cmap=states, vmin=-0.25, vmax=1.25, origin="upper", interpolation="nearest")
    bar = fig.colorbar(im, ax=axes[0, 0], ticks=[0, 0.5, 1], shrink=0.8)
    bar.ax.set_yticklabels(["no contact", "unresolved", "contact\n(|i-j| >= 6)"], fontsize=7)
    axes[0, 0].set_title(f"{example['accession']}: contacts", fontsize=9)
    attn = np.asarray(example["attention"])
    long_i, long_j = np.nonzero((cm == 1) & (sep >= 6))
    # a few weights near 1 would hide the rest: the colour scale stops at the 99.5th percentile
    im = axes[0, 1].imshow(attn, cmap="viridis", origin="upper", vmin=0,
                           vmax=max(float(np.quantile(attn, 0.995)), 1e-6))
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8, extend="max",
                 label="attention weight (scale ends at the 99.5th percentile)")
    axes[0, 1].set_title(f"attention layer {example['layer']} head {example['head']}", fontsize=9)
    if panels == 3:
        row = precision[precision["accession"] == example["accession"]]
        if "method" in row:  # the ESM contact head has rows of its own
            row = row[row["method"] == "attention_regression"]
        p5 = float(row["long P@L/5"].iloc[0]) if len(row) else np.nan
        im = axes[0, 2].imshow(np.asarray(example["regression"]), cmap="viridis", origin="upper",
                               vmin=0, vmax=1)
        fig.colorbar(im, ax=axes[0, 2], shrink=0.8, label="contact probability")
        axes[0, 2].set_title(f"regression over heads: long P@L/5 {p5:.2f}", fontsize=9)
    for ax in axes[0, 1:]:
        ax.scatter(long_j, long_i, s=9, facecolors="none", edgecolors=palette.REDDISH_PURPLE, linewidths=0.6,
                   label="true contact (|i-j| >= 6)")
        ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
    for ax in axes[0]:
        ax.set_xlabel("residue j (key, 0-based)")
        ax.set_ylabel("residue i (query, 0-based)")
        _integer_axis(ax.xaxis)
        _integer_axis(ax.yaxis)
    fig.suptitle(f"{model}: contacts from attention")
    _save(fig, path)
