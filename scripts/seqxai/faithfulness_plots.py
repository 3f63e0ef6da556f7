"""The faithfulness benchmark's figure (seqxai.faithfulness): one row of three panels per task.

Left: the mean per-protein area between the flipping curves of each method, MoRF - LeRF and
MoRF - random, with their 95 % bootstrap intervals. Middle: the median per-protein Spearman
rho of residue relevance between every pair of methods (1 on the diagonal). Right: each
method's cost over one plain forward+backward pass, time and matmul FLOPs, on a log axis.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import palette
from .plots import _save

AREA_STYLE = {"morf_minus_lerf": (palette.VERMILLION, "MoRF - LeRF"),
              "morf_minus_random": (palette.GREY, "MoRF - random")}


def agreement_matrix(pairs: pd.DataFrame, methods: list[str]) -> np.ndarray:
    """rho[method_a, method_b]: the median Spearman rho of each pair, symmetric, 1 on the diagonal."""
    idx = {m: k for k, m in enumerate(methods)}
    mat = np.eye(len(methods))
    for r in pairs.itertuples():
        if r.method_a in idx and r.method_b in idx:
            mat[idx[r.method_a], idx[r.method_b]] = mat[idx[r.method_b], idx[r.method_a]] = r.spearman_median
    return mat


def faithfulness_figure(methods: pd.DataFrame, pairs: pd.DataFrame, path, task: str) -> None:
    """Flipping areas with intervals, the agreement heatmap and the cost bars (module doc)."""
    names = list(methods["method"])
    y = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * len(names) + 2.4), layout="constrained")
    ax = axes[0]
    for k, (area, (colour, label)) in enumerate(AREA_STYLE.items()):
        mean = methods[f"{area}_mean"].to_numpy(np.float64)
        err = np.abs(np.vstack([mean - methods[f"{area}_low"], methods[f"{area}_high"] - mean]))
        ax.errorbar(mean, y + (k - 0.5) * 0.25, xerr=err, fmt="o", color=colour, label=label, capsize=3)
    ax.axvline(0, color=palette.LIGHT_GREY, lw=1)
    ax.set_yticks(y, [f"{m} ({int(n)})" for m, n in zip(names, methods["n_proteins"])])
    ax.invert_yaxis()
    ax.set_xlabel("area between flipping curves (AOPC), mean and 95 % interval")
    ax.set_title("residue flipping: larger = more faithful", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    mat = agreement_matrix(pairs, names)
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(y, names, rotation=30, ha="right")
    ax.set_yticks(y, names)
    ax.set_title("median Spearman rho of residue relevance", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2]
    for k, (col, colour, label) in enumerate((("time_ratio", palette.BLUE, "time"),
                                              ("flop_ratio", palette.ORANGE, "matmul FLOPs"))):
        vals = methods[col].to_numpy(np.float64)
        ax.barh(y + (k - 0.5) * 0.35, np.where(np.isfinite(vals), vals, 0), height=0.35, color=colour,
                label=label)
    ax.axvline(1, color=palette.DARK_GREY, lw=1, ls="--")
    if np.nanmax(methods[["time_ratio", "flop_ratio"]].to_numpy(np.float64), initial=0) > 0:
        ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("cost / one plain forward+backward (log)")
    ax.set_title("cost per protein and target", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"{task}: attribution methods on the same proteins")
    _save(fig, path)
