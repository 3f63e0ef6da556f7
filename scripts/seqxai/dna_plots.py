"""Figures of the TSS attention probe (matplotlib Agg, PNG).

Offsets are TSS-relative in strand orientation (TSS = 0), as in :mod:`seqxai.tss_probe`.
Colours come from :mod:`seqxai.palette`: heads and window kinds from its series colours, the
promoter elements' lines from colours no series uses.
"""
from __future__ import annotations

import json
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import palette  # noqa: E402
from .io import atomic_path  # noqa: E402
from .motifs import draw_logo  # noqa: E402


def _save(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def key_field_note(summary: dict | None) -> str:
    """What a key's offset means (from the probe summary's ``key_receptive_field``): the span
    of its own convolution around the offset, and that keys of L1 and deeper also mix context."""
    field = (summary or {}).get("key_receptive_field")
    if not field:
        return ""
    f0, last = field[0], field[-1]
    lo, hi = int(f0["lo"]) - int(f0["centre"]), int(f0["hi"]) - int(f0["centre"])
    note = f"offset = centre of the key's own conv (tokens {lo:+d}..{hi:+d}); L0 keys reflect only those"
    if len(field) > 1:
        extra = int(last["token_hi"]) - int(f0["hi"])     # lookahead of earlier layers' convolutions
        down = f", and up to {extra:+d} nt more downstream by L{len(field) - 1}" if extra > 0 else ""
        note += f"; keys of L1+ also mix upstream context (earlier layers' attention{down})"
    return note


def _mark_elements(axes, elements: dict, legend_ax) -> None:
    """Dashed lines at the expected -10 and -35 box centres (labelled on ``legend_ax``) and a
    thin line at the TSS, in the palette's element colours."""
    for ax in axes:
        for name in ("minus10", "minus35"):
            if name in elements:
                ax.axvline(elements[name]["centre"], color=palette.ELEMENT_COLOURS[name],
                           ls="--" if name == "minus10" else "-.", lw=1,
                           label=f"{name} centre" if ax is legend_ax else None)
        ax.axvline(0, color=palette.TSS_LINE, lw=0.8, label="TSS" if ax is legend_ax else None)


def plot_profiles(profiles: pd.DataFrame, elements: dict, path, summary: dict | None = None) -> None:
    """Heatmap ``profile[layer/head, offset]`` (rows normalised to their max) plus line plots of
    the raw mean attention (the heads with the highest peaks when there are more heads than
    series colours); expected -10 and -35 box centres marked; with the probe ``summary``
    the title says what a key's offset covers (:func:`key_field_note`)."""
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
    note = key_field_note(summary)
    a1.set_title("Attention of the predicting position (TSS + label offset), per head, normalised to row max"
                 + (f"\n{note}" if note else ""), fontsize=9 if note else None)
    # the lines: every head when each can have a colour of its own, else those with the highest
    # peaks (the heatmap above shows all)
    n_lines = min(len(heads), len(palette.SERIES_COLOURS))
    peak = np.nanmax(mat, axis=1)
    shown = heads.iloc[np.sort(np.argsort(-peak, kind="stable")[:n_lines])]
    for (l, h), colour in zip(shown.itertuples(index=False), palette.series_colours(n_lines)):
        row = profiles[(profiles.layer == l) & (profiles["head"] == h)].sort_values("offset")
        a2.plot(row.offset, row.attention, lw=0.8, label=f"L{l}H{h}", color=colour)
    if n_lines < len(heads):
        a2.set_title(f"the {n_lines} heads with the highest peaks of {len(heads)}", fontsize=8)
    _mark_elements((a1, a2), elements, a2)
    a2.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    a2.set_xlabel("offset from TSS (nt, strand orientation; TSS = 0)")
    a2.set_ylabel("mean attention")
    a2.legend(fontsize=6, ncol=6, loc="upper left")
    _save(fig, path)


def plot_logos(head_motifs: pd.DataFrame, summary: dict, path, n_heads: int = 6) -> None:
    """Information-content logos of the ``n_heads`` heads with the largest peak mass (the
    positive-control -10 head always included), titled layer/head/peak offset/consensus; heads
    of L1 and deeper marked as mixing upstream context (:func:`key_field_note`). Heads whose peak
    key overlaps the predicting query's own receptive field (``query_adjacent``) attend to the
    query where the model predicts a TSS: their windows are the model's decision, not a motif,
    and they get no logo."""
    pc = summary.get("positive_control", {}).get("minus10", {})
    field = summary.get("key_receptive_field")
    adjacent = head_motifs.get("query_adjacent", pd.Series(False, index=head_motifs.index)).astype(bool)
    top = head_motifs[~adjacent].sort_values("peak_mass", ascending=False).head(n_heads)
    if pc and not ((top.layer == pc["layer"]) & (top["head"] == pc["head"])).any():
        extra = head_motifs[(head_motifs.layer == pc["layer"]) & (head_motifs["head"] == pc["head"])]
        top = pd.concat([top.head(n_heads - 1), extra])
    fig, axes = plt.subplots(len(top), 1, figsize=(5, 1.6 * len(top)), squeeze=False)
    for ax, row in zip(axes[:, 0], top.itertuples(index=False)):
        pfm = np.asarray([list(r) for r in (json.loads(row.pfm) if isinstance(row.pfm, str) else row.pfm)])
        star = " [-10 control]" if pc and (row.layer, row.head) == (pc["layer"], pc["head"]) else ""
        mixed = " [+ upstream context]" if field and int(row.layer) >= 1 else ""
        draw_logo(ax, pfm, f"L{row.layer} H{row.head}  peak {row.peak_offset:+d}  mass {row.peak_mass:.2f}  "
                           f"{row.consensus}{star}{mixed}", start=int(row.window_start_offset))
        ax.set_xlabel("position relative to the top-attended key's centre", fontsize=7)
    note = key_field_note(summary) if field else ""
    if adjacent.any():
        note += (f" {int(adjacent.sum())} head(s) peaking at the query's own receptive field "
                 "(query-adjacent: the model's decision, not a motif) are not shown.")
    if note:
        fig.suptitle(textwrap.fill(note.strip(), 80), fontsize=7, y=1.0)
    fig.tight_layout()
    _save(fig, path)


def plot_dna(profiles_path, head_motifs_path, summary_path, elements: dict, profiles_png, logos_png,
             n_heads: int = 6) -> None:
    """File-level entry point of the ``plot_dna`` rule."""
    from .io import read_json, read_table

    summary = read_json(summary_path)
    plot_profiles(read_table(profiles_path), elements, profiles_png, summary)
    plot_logos(read_table(head_motifs_path), summary, logos_png, n_heads)


# ----------------------------------------------------------------------------- integrated gradients
def plot_ig_profile(profile: pd.DataFrame, elements: dict, path) -> None:
    """Mean signed and mean absolute IG contribution per TSS-relative offset (one line per
    window kind: tss, background); expected -10 and -35 box centres marked."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    kinds = profile.groupby("kind", sort=True)
    for (kind, df), colour in zip(kinds, palette.series_colours(kinds.ngroups)):
        df = df.sort_values("offset")
        n = int(df.n_windows.iloc[0])
        axes[0].plot(df.offset, df.mean_contribution, lw=0.9, label=f"{kind} (n={n})", color=colour)
        axes[1].plot(df.offset, df.mean_abs_contribution, lw=0.9, label=f"{kind} (n={n})", color=colour)
    _mark_elements(axes, elements, axes[0])
    for ax in axes:
        ax.axhline(0, color=palette.TSS_LINE, lw=0.4)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    axes[0].set_ylabel("mean IG")
    axes[1].set_ylabel("mean |IG|")
    axes[0].set_title("Integrated gradients of the TSS logit per offset (one-hot input)")
    axes[1].set_xlabel("offset from TSS (nt, strand orientation; TSS = 0)")
    axes[0].legend(fontsize=7)
    _save(fig, path)


def plot_motif_sources(patterns: pd.DataFrame, matches: pd.DataFrame, head_motifs: pd.DataFrame, path,
                       n_motifs: int = 6) -> None:
    """Two columns of logos: the attention heads (best Tomtom match first) and the TF-MoDISco
    patterns (most seqlets first), each titled with its best match and q-value."""
    att = matches[matches.source == "attention"].sort_values("p", na_position="last").head(n_motifs)
    mod = matches[matches.source == "modisco"].head(n_motifs)
    rows = max(len(att), len(mod), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 1.6 * rows), squeeze=False)
    pfm_of = {f"L{r.layer}H{r.head}": (np.asarray([list(x) for x in r.pfm]), int(r.window_start_offset))
              for r in head_motifs.itertuples(index=False)}
    ppm_of = {r.pattern: np.asarray([list(x) for x in r.ppm]) for r in patterns.itertuples(index=False)}

    def title(m):
        hit = f"{m.target} q={m.q:.2g}" if isinstance(m.target, str) else "no match"
        return f"{m.source} {m.motif}  {m.consensus}  n={m.n_sites}  best: {hit}"

    for i in range(rows):
        columns = ((att, lambda m: pfm_of[m.motif]), (mod, lambda m: (ppm_of[m.motif], 0)))
        for j, (df, get) in enumerate(columns):
            ax = axes[i, j]
            if i >= len(df):
                ax.axis("off")
                if i == 0 and j == 1:
                    ax.text(0.5, 0.5, "TF-MoDISco found no pattern\n(see modisco_summary.json)",
                            ha="center", va="center", fontsize=9)
                continue
            m = df.iloc[i]
            pfm, start = get(m)
            draw_logo(ax, pfm, title(m), start=start)
    axes[0, 0].annotate("attention heads", (0.5, 1.35), xycoords="axes fraction", ha="center", fontsize=10)
    axes[0, 1].annotate("TF-MoDISco patterns (IG)", (0.5, 1.35), xycoords="axes fraction", ha="center",
                        fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_method_motifs(methods: list[str], patterns: list[pd.DataFrame], table: pd.DataFrame, path,
                       n_motifs: int = 6) -> None:
    """One column of TF-MoDISco logos per attribution method (most seqlets first), each
    titled with its seqlets and best Tomtom match (:mod:`seqxai.dna_method_motifs`)."""
    ppm_of = [{r.pattern: np.asarray([list(x) for x in r.ppm]) for r in p.itertuples(index=False)}
              for p in patterns]
    cols = [table[table.method == m].head(n_motifs) for m in methods]
    rows = max([len(c) for c in cols] + [1])
    fig, axes = plt.subplots(rows, len(methods), figsize=(4.2 * len(methods), 1.6 * rows), squeeze=False)
    for j, (m, df) in enumerate(zip(methods, cols)):
        for i in range(rows):
            ax = axes[i, j]
            if i >= len(df):
                ax.axis("off")
                if i == 0:
                    ax.text(0.5, 0.5, "TF-MoDISco found no pattern", ha="center", va="center", fontsize=9)
                continue
            r = df.iloc[i]
            hit = f"{r.target} q={r.q:.2g}" if isinstance(r.target, str) else "no match"
            draw_logo(ax, ppm_of[j][r.pattern], f"{r.pattern} {r.consensus} n={r.n_seqlets}\nbest: {hit}")
        axes[0, j].annotate(m, (0.5, 1.45), xycoords="axes fraction", ha="center", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_dna_attribution(profile_path, patterns_path, matches_path, head_motifs_path, elements: dict,
                         profile_png, motifs_png, n_motifs: int = 6) -> None:
    """File-level entry point of the ``plot_dna_attribution`` rule."""
    from .io import read_table

    plot_ig_profile(read_table(profile_path), elements, profile_png)
    plot_motif_sources(read_table(patterns_path), read_table(matches_path), read_table(head_motifs_path),
                       motifs_png, n_motifs)
