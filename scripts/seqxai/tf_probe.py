"""TF-site attention of the TSS transformer: how much attention mass each head puts inside a
planted (or annotated) TF site, against the same offsets at TSSs without that TF; and the
information-content floor of a head matrix's Tomtom match.

Conventions (as :mod:`seqxai.tss_probe`)
----------------------------------------
- ``attn_rows[tss, layer, head, key]``: the predicting query's attention rows; ``key_offset[key]``
  the TSS-relative offset of the centre of key ``key``'s own q/k/v convolution.
- ``intervals[tf][tss]``: list of inclusive TSS-relative ``(lo, hi)`` site intervals
  (:func:`seqxai.tf_site_enrichment.site_intervals`).
- A key is *in a site* when its own convolution's span ``offset + field_lo .. offset + field_hi``
  (``field_lo = lo - centre``, ``field_hi = hi - centre`` of
  :func:`seqxai.dna_model.key_receptive_field`; -3..+3 for the ``seqxai`` architecture) overlaps
  the site: the keys whose value reads some base of the site.
- ``site_mass[tss, layer, head]`` = sum of the attention on the keys in the site(s) of that TSS.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .io import Progress
from .motifs import frequencies, information_content

log = logging.getLogger("seqxai.tf_probe")

#: columns of :func:`tf_mass_enrichment` (documented there)
MASS_COLUMNS = ["layer", "head", "tf", "n_with_site", "n_without_site", "n_site_keys", "mass_site",
                "mass_control", "mass_difference", "mass_enrichment", "auc", "p", "p_bh", "significant"]


def site_key_mask(intervals: list, key_offset: np.ndarray, field_lo: int, field_hi: int) -> np.ndarray:
    """``mask[tss, key]``: key ``key``'s convolution span overlaps one of that TSS's intervals."""
    mask = np.zeros((len(intervals), len(key_offset)), dtype=bool)
    a, b = key_offset + field_lo, key_offset + field_hi
    for i, ivs in enumerate(intervals):
        for lo, hi in ivs:
            mask[i] |= (b >= lo) & (a <= hi)
    return mask


def masked_mass(attn_rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mass[tss, layer, head] = sum_key attn_rows[tss, layer, head, key] * mask[tss, key]``."""
    return np.einsum("tlhk,tk->tlh", attn_rows, mask.astype(attn_rows.dtype), optimize=True)


def control_intervals(per: list, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """``(S, B, control)``: TSSs with a site (``S``), without (``B``), and per TSS the intervals
    its mass is measured in: its own sites for ``S``; for ``B`` the sites of a random TSS of ``S``
    (seeded): the same offsets without the site."""
    has = np.array([len(iv) > 0 for iv in per], dtype=bool)
    S, B = np.flatnonzero(has), np.flatnonzero(~has)
    out = list(per)
    if len(S) and len(B):
        partner = S[np.random.default_rng(seed).integers(0, len(S), len(B))]
        for b, s in zip(B, partner):
            out[b] = per[s]
    return S, B, out


def tf_mass_enrichment(attn_rows: np.ndarray, key_offset: np.ndarray, intervals: dict, field_lo: int,
                       field_hi: int, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Per head and TF: is the attention mass inside the TF's sites larger than at the same
    offsets of TSSs without the TF? One row per (layer, head, tf), columns :data:`MASS_COLUMNS`:

    - ``n_with_site`` / ``n_without_site``: TSSs with a site of the TF in the probed offsets (S) /
      without (B); ``n_site_keys``: mean number of keys in the site per TSS of S;
    - ``mass_site`` = mean over S of ``site_mass``; ``mass_control`` = mean over B of the mass on
      the keys of a random S partner's site offsets (:func:`control_intervals`);
    - ``mass_difference = mass_site - mass_control`` (share of the row's attention);
      ``mass_enrichment = mass_site / mass_control`` (inf when the control mass is 0);
    - ``auc`` = U / (|S| |B|), the probability that a site TSS has more mass than a control one;
    - ``p``: one-sided Mann-Whitney U (S greater than B); ``p_bh``: Benjamini-Hochberg over all
      heads x TFs; ``significant = p_bh < alpha``.

    A head that attends at a fixed offset regardless of sequence puts the same mass there in S
    and B; one that seeks the TF's sequence puts more in S."""
    from scipy.stats import mannwhitneyu
    from statsmodels.stats.multitest import multipletests

    _, nl, nh, _ = attn_rows.shape
    rows = []
    prog = Progress(len(intervals), "TF-site attention mass, TFs", logger=log)  # real runs: ~200 TFs
    for tf, per in intervals.items():
        prog.update()
        S, B, ctrl = control_intervals(per, seed)
        if len(S) == 0 or len(B) == 0:
            continue
        mask = site_key_mask(ctrl, key_offset, field_lo, field_hi)
        mass = masked_mass(attn_rows, mask)
        ms, mb = mass[S], mass[B]
        test = mannwhitneyu(ms.reshape(len(S), -1), mb.reshape(len(B), -1), alternative="greater", axis=0)
        p = np.asarray(test.pvalue, float).reshape(nl, nh)
        auc = (np.asarray(test.statistic, float) / (len(S) * len(B))).reshape(nl, nh)
        a, b = ms.mean(axis=0), mb.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(b > 0, a / np.where(b > 0, b, 1), np.inf)
        for l in range(nl):
            for h in range(nh):
                rows.append({"layer": l, "head": h, "tf": tf, "n_with_site": len(S), "n_without_site": len(B),
                             "n_site_keys": float(mask[S].sum(axis=1).mean()), "mass_site": float(a[l, h]),
                             "mass_control": float(b[l, h]), "mass_difference": float(a[l, h] - b[l, h]),
                             "mass_enrichment": float(ratio[l, h]), "auc": float(auc[l, h]), "p": float(p[l, h])})
    df = pd.DataFrame(rows, columns=MASS_COLUMNS[:-2])
    df["p_bh"] = multipletests(df.p.to_numpy(), method="fdr_bh")[1] if len(df) else []
    df["significant"] = df.p_bh < alpha
    return df


def tf_control(enrich: pd.DataFrame, min_effect: float, effect: str = "mass_difference",
               tfs=None) -> dict:
    """Verdict of the TF positive control: pass when some head is significant for a planted TF
    (``tfs``; all TFs of the table when None) with ``effect >= min_effect``. Also the share of
    heads with a significant association to any TF (significant and above the floor), the
    paper's headline number, and the best head per TF (largest effect among the significant)."""
    sub = enrich if tfs is None else enrich[enrich.tf.isin(list(tfs))]
    ok = sub.significant.astype(bool) & (sub[effect] >= min_effect)
    heads = enrich[["layer", "head"]].drop_duplicates()
    assoc = sub[ok][["layer", "head"]].drop_duplicates()
    best = {}
    for tf, g in sub.groupby("tf"):
        g = g[g.significant.astype(bool)]
        if len(g):
            r = g.sort_values(effect, ascending=False).iloc[0]
            best[tf] = {"layer": int(r.layer), "head": int(r["head"]), effect: float(r[effect]),
                        "p_bh": float(r.p_bh), "above_floor": bool(r[effect] >= min_effect)}
    return {"effect": effect, "min_effect": float(min_effect), "tfs": sorted(sub.tf.unique()),
            "n_heads": len(heads), "n_heads_associated": len(assoc),
            "share_heads_associated": float(len(assoc) / len(heads)) if len(heads) else None,
            "n_tests_significant": int(sub.significant.sum()), "best_per_tf": best,
            "pass": bool(ok.any())}


# ----------------------------------------------------------------------------- Tomtom floor
def total_information(pfm: np.ndarray) -> float:
    """Total information content (bits, uniform background) of a count or frequency matrix
    ``pfm[position, ACGT]``: ``sum_i IC_i`` (:func:`seqxai.motifs.information_content`)."""
    return float(information_content(frequencies(np.asarray(pfm, float))).sum())


def reported_matches(tomtom: pd.DataFrame, information: dict, min_information: float, alpha: float,
                     decoy_column: str = "decoy_p") -> pd.DataFrame:
    """The Tomtom table (:func:`seqxai.motifs.tomtom_with_decoys`, one row per query x target)
    with ``information_content`` (of the query, bits; ``information[query]``) and ``reported``:
    a match is reported (named as "best" in outputs and figures) only when the query carries
    information (``information_content >= min_information``, a floor from null models), ``q <
    alpha`` and it beats the target's column-shuffled decoys (``decoy_column < alpha``; ``decoy_p``
    reaches 1 / (1 + n_decoys) = 0.048 with 20 decoys when no decoy matches as well)."""
    out = tomtom.copy()
    out["information_content"] = out["query"].map(information).astype(float)
    out["reported"] = ((out.information_content >= min_information) & (out.q < alpha)
                       & (out[decoy_column].astype(float) < alpha))
    return out


def with_top1(mass: pd.DataFrame, top1: pd.DataFrame) -> pd.DataFrame:
    """The mass table with the top-1 test (:func:`seqxai.tf_site_enrichment.tf_enrichment`, same seed, so
    the same control TSSs) as secondary columns ``top1_hits_with_site, top1_hits_background,
    top1_odds_ratio, top1_p, top1_p_bh``."""
    keep = {"hits_with_site": "top1_hits_with_site", "hits_background": "top1_hits_background",
            "odds_ratio": "top1_odds_ratio", "p": "top1_p", "p_bh": "top1_p_bh"}
    sec = top1[["layer", "head", "tf", *keep]].rename(columns=keep)
    return mass.merge(sec, on=["layer", "head", "tf"], how="left")
