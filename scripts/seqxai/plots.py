"""Figures of the protein analyses (matplotlib, Agg backend, PNG written atomically).

Layers are drawn in numeric order on every axis (the original code string-sorted them).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402

ANNOTATION_COLOURS = {"active_site": "tab:red", "binding_site": "tab:blue", "motif": "tab:green",
                      "transmembrane": "tab:orange"}


def _save(fig, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def _grid(df: pd.DataFrame, value: str) -> np.ndarray:
    """value[layer, head] from a long table, layers and heads in numeric order."""
    n_l, n_h = int(df["layer"].max()) + 1, int(df["head"].max()) + 1
    grid = np.full((n_l, n_h), np.nan)
    grid[df["layer"].to_numpy(int), df["head"].to_numpy(int)] = df[value].to_numpy(float)
    return grid


def head_significance(table: pd.DataFrame, path, task: str) -> None:
    """Layers x heads heatmaps of -log10(p_BH): rows annotation types, columns target groups
    ("all" first); non-significant heads are blank; one colour scale for all panels."""
    anns = sorted(table["annotation"].unique())
    groups = ["all"] + sorted(g for g in table["group"].unique() if g != "all")
    val = -np.log10(table["p_bh"].astype(float).clip(1e-300, 1))
    vmax = max(float(val[table["significant"]].max()) if table["significant"].any() else 1.0, 1.0)
    fig, axes = plt.subplots(len(anns), len(groups), figsize=(2.2 * len(groups) + 1, 2.0 * len(anns) + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    im = None
    for r, ann in enumerate(anns):
        for c, group in enumerate(groups):
            ax = axes[r, c]
            sub = table[(table["annotation"] == ann) & (table["group"] == group)]
            if len(sub):
                grid = -np.log10(_grid(sub, "p_bh").clip(1e-300, 1))
                sig = _grid(sub.assign(s=sub["significant"].astype(float)), "s") > 0
                im = ax.imshow(np.ma.masked_where(~sig, grid), cmap="viridis", aspect="auto",
                               origin="lower", vmin=0, vmax=vmax)
                ax.set_xticks(range(grid.shape[1]))
                ax.set_yticks(range(grid.shape[0]))
            if r == 0:
                ax.set_title(f"target {group}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{ann}\nlayer", fontsize=9)
            if r == len(anns) - 1:
                ax.set_xlabel("head", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes, label="-log10 p (BH)", shrink=0.6)
    fig.suptitle(f"{task}: heads whose relevance concentrates on annotations (one-sided Wilcoxon, BH)")
    _save(fig, path)


def embedding_significance(table: pd.DataFrame, path, task: str, alpha: float = 0.05) -> None:
    """Bar plot of embedding-level -log10 p per annotation type (and group), line at p = alpha."""
    t = table.copy()
    t["label"] = t["annotation"] + " [" + t["group"] + "]"
    t["score"] = -np.log10(t["p"].astype(float).clip(1e-300, 1)).fillna(0)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(t)), 3.5))
    ax.bar(range(len(t)), t["score"],
           color=[ANNOTATION_COLOURS.get(a, "grey") for a in t["annotation"]])
    ax.axhline(-np.log10(alpha), color="black", ls="--", lw=1, label=f"p = {alpha}")
    ax.set_xticks(range(len(t)), t["label"], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("-log10 p (one-sided Wilcoxon)")
    ax.set_title(f"{task}: embedding-level relevance inside annotations")
    ax.legend()
    _save(fig, path)


def attribution_tracks(embedding: pd.DataFrame, proteins: pd.DataFrame, annotations: pd.DataFrame,
                       types, n_tracks: int, path, task: str) -> None:
    """Embedding-level relevance along the first ``n_tracks`` attributed proteins, with annotations."""
    rows = embedding.drop_duplicates("accession").head(n_tracks)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.8 * max(len(rows), 1)), squeeze=False)
    for ax, r in zip(axes[:, 0], rows.itertuples(index=False)):
        rel = np.asarray(r.relevance)
        pos = np.arange(1, len(rel) + 1)
        ax.bar(pos, rel, width=1.0, color=np.where(rel >= 0, "tab:red", "tab:blue"))
        for a in annotations[annotations["accession"] == r.accession].itertuples(index=False):
            if a.type in types:
                ax.axvspan(a.start - 0.5, a.end + 0.5, alpha=0.25,
                           color=ANNOTATION_COLOURS.get(a.type, "grey"), label=a.type)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right", ncol=4)
        ax.set_ylabel("IG", fontsize=8)
        ax.set_title(f"{r.accession} target {r.target}", fontsize=9)
        ax.set_xlim(0.5, len(rel) + 0.5)
    axes[-1, 0].set_xlabel("residue (1-based)")
    fig.suptitle(f"{task}: embedding-level integrated gradients")
    fig.tight_layout()
    _save(fig, path)


def attention_probe(table: pd.DataFrame, path, model: str) -> None:
    """Per property: layers x heads share of high-confidence attention, with its background."""
    props = sorted(table["property"].unique(), key=lambda p: (p != "contact", p))
    fig, axes = plt.subplots(1, len(props), figsize=(3.3 * len(props), 3), squeeze=False)
    for ax, prop in zip(axes[0], props):
        sub = table[table["property"] == prop]
        share = _grid(sub, "share")
        share[~(_grid(sub.assign(i=sub["included"].astype(float)), "i") > 0)] = np.nan
        im = ax.imshow(share * 100, cmap="magma", aspect="auto", origin="lower", vmin=0)
        bg = float(sub["background"].iloc[0]) * 100
        ax.set_title(f"{prop}\nbackground {bg:.2f}%", fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(share.shape[1]))
        ax.set_yticks(range(share.shape[0]))
        fig.colorbar(im, ax=ax, label="% of high-confidence attention", shrink=0.8)
    fig.suptitle(f"{model}: where high-confidence attention goes (Vig et al.)")
    fig.tight_layout()
    _save(fig, path)


def training_curves(protein_logs: dict, dna_log, path) -> None:
    """Train/validation loss per epoch of each protein task and of the DNA model."""
    logs = {f"protein {k}": pd.read_csv(v, sep="\t") for k, v in protein_logs.items()}
    logs["DNA TSS"] = pd.read_csv(dna_log, sep="\t")
    fig, axes = plt.subplots(1, len(logs), figsize=(3.5 * len(logs), 3), squeeze=False)
    for ax, (name, df) in zip(axes[0], logs.items()):
        x = "epoch" if "epoch" in df else df.columns[0]
        for col in [c for c in df.columns if c.endswith("loss")]:
            g = df.groupby(x)[col].mean()
            ax.plot(g.index, g.values, marker="o", ms=3, label=col)
        ax.set_xlabel(x)
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def residue_flipping(table: pd.DataFrame, path, task: str) -> None:
    """Accuracy and mean target probability against the number of flipped residues (0, 1, 2, 4,
    ... evenly spaced, i.e. a log2 axis after 0): top-n by relevance against random flips (mean
    and min-max over seeds)."""
    ns = sorted(table["n"].unique())
    pos = {n: i for i, n in enumerate(ns)}
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    for ax, col, label in zip(axes, ("accuracy", "mean_probability"),
                              ("accuracy", "mean probability of the target")):
        rel = table[table["order"] == "relevance"].sort_values("n")
        rnd = table[table["order"] == "random"].groupby("n")[col].agg(["mean", "min", "max"])
        x_rnd = [pos[n] for n in rnd.index]
        ax.plot(x_rnd, rnd["mean"], marker="o", ms=3, color="grey", label="random residues")
        ax.fill_between(x_rnd, rnd["min"], rnd["max"], color="grey", alpha=0.25, lw=0)
        ax.plot([pos[n] for n in rel["n"]], rel[col], marker="o", ms=3, color="tab:red",
                label="top relevance")
        ax.set_xticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("residues replaced by alanine")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: residue flipping ({int(table['n_proteins'].max())} proteins)")
    _save(fig, path)
