"""The two denominators of the Vig et al. share and which one a figure shows (docs/vig_probe.md).

The probe table (``high_confidence_attention.HighConfidenceCounter.table``) carries every
statistic twice: under its plain name for provis's denominator (all high-confidence weights of the head) and with
``_resolved`` after the stem for the denominator restricted to pairs of resolved residues
(``share_resolved``, ``share_resolved_ci_low``, ``p_resolved_bonferroni``). The figures and the
layer trend read the plain names; :func:`select_denominator` puts the configured denominator
(``analysis.vig.share_denominator``) there. Kept apart from ``attention_probes`` so that the
plotting env (no torch) can import it.
"""
from __future__ import annotations

import pandas as pd

DENOMINATORS = ("provis", "resolved")
# the columns each denominator has; the resolved one's name puts "_resolved" after the stem
SHARED_COLUMNS = ("n_high_confidence", "hits", "share", "share_low", "share_high", "share_ci_low",
                  "share_ci_high", "background", "background_hits", "background_total", "enrichment",
                  "included", "z", "p", "n_tests", "p_bonferroni", "p_bonferroni_all_heads",
                  "significant", "significant_all_heads")
_STEMS = ("n_high_confidence", "hits", "share", "background", "enrichment", "included", "z", "p",
          "n_tests", "significant")


def resolved_name(column: str) -> str:
    """The resolved-denominator twin of a probe-table column: ``share_ci_low`` ->
    ``share_resolved_ci_low``, ``p_bonferroni`` -> ``p_resolved_bonferroni``, ``z`` -> ``z_resolved``."""
    stem = max((s for s in _STEMS if column == s or column.startswith(s + "_")), key=len)
    return stem + "_resolved" + column[len(stem):]


def select_denominator(table: pd.DataFrame, denominator: str = "provis") -> pd.DataFrame:
    """The probe table with the chosen denominator's columns under the plain names (``share``,
    ``background``, ``included``, ``significant`` ...), for the figures and the layer trend.

    ``provis``: the table as it is; ``resolved``: ``share_resolved`` becomes ``share`` and so on.
    """
    if denominator == "provis":
        return table
    if denominator not in DENOMINATORS:
        raise ValueError(f"share denominator must be 'provis' or 'resolved', got {denominator!r}")
    out = table.copy()
    for col in SHARED_COLUMNS:
        out[col] = table[resolved_name(col)]
    return out
