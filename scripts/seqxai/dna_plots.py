"""Figures of the TSS attention probe (matplotlib Agg, PNG).

Offsets are TSS-relative in strand orientation (TSS = 0), as in :mod:`seqxai.tss_probe`.
"""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402
from .motifs import draw_logo  # noqa: E402


def _save(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_profiles(profiles: pd.DataFrame, elements: dict, path) -> None:
    """Heatmap ``profile[layer/head, offset]`` (rows normalised to their max) plus line plots of
    the raw mean attention; expected -10 and -35 box centres marked."""
    heads = profiles[["layer", "head"]].drop_duplicates().sort_values(["layer", "head"])
    offsets = np.sort(profiles.offset.unique())
    mat = (profiles.pivot_table(index=["layer", "head"], columns="offset", values="attention")
           .reindex(columns=offsets).to_numpy())
    norm = mat / np.maximum(mat.max(axis=1, keepdims=True), 1e-12)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 3 + 0.25 * len(heads)), sharex=True,
                                 gridspec_kw={"height_ratios": [max(len(heads), 4), 6]})
    a1.imshow(norm, aspect="auto", cmap="viridis", interpolation="nearest",
              extent=[offsets[0] - .5, offsets[-1] + .5, len(heads) - .5, -.5])
    a1.set_yticks(range(len(heads)))
    a1.set_yticklabels([f"L{l} H{h}" for l, h in heads.itertuples(index=False)], fontsize=7)
    a1.set_title("Attention of the predicting position (TSS + label offset), per head, normalised to row max")
    for l, h in heads.itertuples(index=False):
        row = profiles[(profiles.layer == l) & (profiles["head"] == h)].sort_values("offset")
        a2.plot(row.offset, row.attention, lw=0.8, label=f"L{l}H{h}")
    for ax in (a1, a2):
        for name, colour in (("minus10", "red"), ("minus35", "orange")):
            if name in elements:
                ax.axvline(elements[name]["centre"], color=colour, ls="--", lw=1,
                           label=f"{name} centre" if ax is a2 else None)
        ax.axvline(0, color="grey", lw=0.6)
    a2.set_xlabel("offset from TSS (nt, strand orientation; TSS = 0)")
    a2.set_ylabel("mean attention")
    a2.legend(fontsize=6, ncol=6, loc="upper left")
    _save(fig, path)


def plot_logos(head_motifs: pd.DataFrame, summary: dict, path, n_heads: int = 6) -> None:
    """Information-content logos of the ``n_heads`` heads with the largest peak mass (the
    positive-control -10 head always included), titled layer/head/peak offset/consensus."""
    pc = summary.get("positive_control", {}).get("minus10", {})
    top = head_motifs.sort_values("peak_mass", ascending=False).head(n_heads)
    if pc and not ((top.layer == pc["layer"]) & (top["head"] == pc["head"])).any():
        extra = head_motifs[(head_motifs.layer == pc["layer"]) & (head_motifs["head"] == pc["head"])]
        top = pd.concat([top.head(n_heads - 1), extra])
    fig, axes = plt.subplots(len(top), 1, figsize=(5, 1.6 * len(top)), squeeze=False)
    for ax, row in zip(axes[:, 0], top.itertuples(index=False)):
        pfm = np.asarray([list(r) for r in (json.loads(row.pfm) if isinstance(row.pfm, str) else row.pfm)])
        star = " [-10 control]" if pc and (row.layer, row.head) == (pc["layer"], pc["head"]) else ""
        draw_logo(ax, pfm, f"L{row.layer} H{row.head}  peak {row.peak_offset:+d}  mass {row.peak_mass:.2f}  "
                           f"{row.consensus}{star}", start=int(row.window_start_offset))
        ax.set_xlabel("position relative to the top-attended token", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_dna(profiles_path, head_motifs_path, summary_path, elements: dict, profiles_png, logos_png,
             n_heads: int = 6) -> None:
    """File-level entry point of the ``plot_dna`` rule."""
    from .io import read_json, read_table

    plot_profiles(read_table(profiles_path), elements, profiles_png)
    plot_logos(read_table(head_motifs_path), read_json(summary_path), logos_png, n_heads)
