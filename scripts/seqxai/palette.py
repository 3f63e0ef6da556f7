"""The colours of every figure: one place, colour-blind safe, one colour per meaning.

Okabe & Ito's eight colours (Color Universal Design) name the annotation types and the
roles that recur across figures; Paul Tol's "muted" set colours series without a meaning of
their own (heads of a profile, window kinds, loss curves). The two sets share no colour, so a
shaded annotation never has the colour of a data series drawn over it. Colours are hex
strings, so a test can compare them (``matplotlib.colors.to_hex``).
"""
from __future__ import annotations

import numpy as np

# Okabe-Ito
BLACK, ORANGE, SKY_BLUE, BLUISH_GREEN = "#000000", "#e69f00", "#56b4e9", "#009e73"
YELLOW, BLUE, VERMILLION, REDDISH_PURPLE = "#f0e442", "#0072b2", "#d55e00", "#cc79a7"
GREY, LIGHT_GREY, DARK_GREY = "#888888", "#dddddd", "#444444"

# annotation types (shading in the tracks, bars and lines of the probes) and the contact
# property of the attention probes: each its own colour
ANNOTATION_COLOURS = {"active_site": VERMILLION, "binding_site": BLUE, "motif": BLUISH_GREEN,
                      "transmembrane": ORANGE, "contact": REDDISH_PURPLE}
# annotation types a config may add (UniProt feature names) get these, in sorted order
EXTRA_ANNOTATION_COLOURS = (SKY_BLUE, YELLOW, "#332288", "#882255", "#999933")

# Paul Tol "muted", without its pale grey: series that carry no annotation meaning
SERIES_COLOURS = ("#332288", "#88ccee", "#44aa99", "#117733", "#999933", "#ddcc77", "#cc6677",
                  "#882255", "#aa4499")

# integrated gradients along a protein: dark and mid grey, a colour no shading uses
IG_POSITIVE, IG_NEGATIVE = DARK_GREY, "#9a9a9a"
# residue flipping orders
FLIP_COLOURS = {"most_relevant": VERMILLION, "least_relevant": BLUE, "random": GREY}
# promoter elements marked on the DNA profiles (lines, not series), and the TSS itself
ELEMENT_COLOURS = {"minus10": BLACK, "minus35": GREY}
TSS_LINE = LIGHT_GREY
# the 3-D attention view: strongest pairs that are contacts and that are not
CONTACT_PAIR, NON_CONTACT_PAIR = BLUE, VERMILLION
# heatmap cells without a value: a head not scored (hatched grey)
NOT_SCORED = LIGHT_GREY


def annotation_colours(names) -> dict[str, str]:
    """{name: colour} for annotation types / probe properties: the fixed colour of a known name,
    the extra colours in sorted order for the others (distinct while there are enough)."""
    names = list(dict.fromkeys(names))
    out = {n: ANNOTATION_COLOURS[n] for n in names if n in ANNOTATION_COLOURS}
    extra = iter(EXTRA_ANNOTATION_COLOURS)
    for n in sorted(n for n in names if n not in ANNOTATION_COLOURS):
        out[n] = next(extra, None) or _sampled(len(names))[len(out)]
    return out


def series_colours(n: int) -> list[str]:
    """``n`` distinct colours for series without a meaning: Tol's muted set, or, for more
    series than it has, ``n`` colours along viridis."""
    return list(SERIES_COLOURS[:n]) if n <= len(SERIES_COLOURS) else _sampled(n)


# viridis at 0, 1/4, 1/2, 3/4 and 1: many series are sampled along it (numpy only, so that
# modules without matplotlib, such as the 3-D view, can use this one)
_VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def _sampled(n: int) -> list[str]:
    """``n`` distinct colours along viridis (piecewise linear between its anchors), up to 95%
    of the way so that the last one is not the pale yellow end."""
    anchors = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)] for c in _VIRIDIS], float)
    at = np.linspace(0, 0.95, max(n, 1)) * (len(anchors) - 1)
    rgb = np.stack([np.interp(at, np.arange(len(anchors)), anchors[:, k]) for k in range(3)], axis=1)
    return ["#" + "".join(f"{round(v):02x}" for v in row) for row in rgb]
