"""Attention probe of the TSS transformer (Clauwaert et al. 2021): per-head TSS-relative
attention profiles, top-attended motifs, TF-site enrichment and Tomtom matches.

Conventions
-----------
- ``attn_rows[tss, layer, head, key]``: the attention row of the predicting query
  (oriented ``t + label_offset`` for a TSS at oriented 0-based index ``t``).
- Offsets are TSS-relative in the TSS's strand orientation:
  ``offset = oriented token index - t`` (TSS = 0; -1 = first base upstream). A key index
  ``j`` is mapped to the token at the centre of its own q/k/v convolution
  (:func:`seqxai.dna_model.key_receptive_field`): ``j - 3`` for the ``seqxai`` architecture's
  causal convolution (so the largest attainable offset is ``label_offset - 3``), ``j`` for the
  centred convolution of ``clauwaert2021`` (keys reach ``label_offset``). That is what a layer-0
  key reflects; a key of a deeper layer (L1 and on) also mixes the upstream context the
  earlier layers attended to (and, with ``clauwaert2021``, 3 more downstream tokens per earlier
  layer), so its offset is where its own convolution sits, not all it reflects.
- The probe window holds every token the predicting query's attention rows depend on:
  ``n_layers * (context - lo)`` tokens before the query and ``n_layers * hi`` after it
  (``lo..hi`` the convolution's span; ``hi = 3`` for ``clauwaert2021``'s lookahead, 0 else).
- ``profile[layer, head, offset]`` = mean over TSSs of the attention on the key whose token
  sits at that offset (rows sum to 1 over *all* keys, or to at most 1 with the model's
  attention sink, so a profile sums to the mean mass that falls inside the offset range).
- TF sites are 1-based inclusive in the table; converted to TSS-relative offset intervals.
- Background: the same profile around ``n_background`` random positions at least
  ``background_min_distance`` nt from every TSS on their strand
  (:func:`seqxai.tss_background.background_positions`);
  ``profile_at_peak`` vs ``background_at_peak`` tells a sequence-driven head (peak gone in
  the background) from a positional one (peak kept). Stated criterion
  (:func:`seqxai.tss_background.sequence_driven`): sequence-driven iff ``profile_at_peak >= sequence_driven_ratio
  (default 1.5) x background_at_peak`` and a one-sided Mann-Whitney U test of the attention
  at the peak offset, TSSs vs background positions, gives p < ``sequence_driven_alpha``
  (default 0.01); the positive control prefers such heads.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from .dna_model import key_receptive_field  # noqa: F401
from .io import DataError, Progress
from .motif_intervention import intervene, intervention_table, query_adjacent
from .motifs import best_match, consensus, tomtom_with_decoys
from .sigma70 import sigma70_reference
from .tf_probe import reported_matches, tf_control, tf_mass_enrichment, total_information, with_top1
from .tf_site_enrichment import site_intervals, tf_enrichment
from .tss_background import (
    AT_WINDOW,
    at_share,
    attention_at_offset,
    background_positions,
    peak_vs_background_p,
    sequence_driven,
)
from .tss_profiles import motif_flank, probe_extent, probe_window, profile_peaks, top_offsets, tss_profiles
from .tss_windows import (  # noqa: F401
    PAD,
    oriented_tokens,
    oriented_tss_index,
    single_chromosome,
    split_blocks,
    tss_subset,
)

log = logging.getLogger("seqxai.tss_probe")

DEFAULT_PROBE = {"tss_set": "all", "offset_min": -100, "offset_max": 20, "motif_pad": 3, "top_k": 1,
                 "batch_size": 32, "alpha": 0.05, "peak_halfwidth": 3, "n_background": 500,
                 "background_min_distance": 150, "sequence_driven_ratio": 1.5,
                 "sequence_driven_alpha": 0.01, "n_decoys": 20, "intervention": {},
                 "tf_control": {}, "motif_match": {}}
#: dna.probe.tf_control / motif_match defaults (no floor); the configs set floors from the null
DEFAULT_TF_CONTROL = {"min_mass_difference": 0.0}
DEFAULT_MOTIF_MATCH = {"min_information_content": 0.0, "decoy_statistic": "decoy_p"}
#: dna.probe.intervention defaults; min_relative_drop: see config/config.yaml for its derivation
DEFAULT_INTERVENTION = {"enabled": True, "max_tss": 200, "draws": 3, "replacement": "shuffle",
                        "alpha": 0.05, "min_relative_drop": 0.0, "peak_halfwidth": 3}
DEFAULT_ELEMENTS = {"minus10": {"consensus": "TATAAT", "centre": -9.5},
                    "minus35": {"consensus": "TTGACA", "centre": -32.5},
                    "tolerance": 3, "max_mismatches": 1}


# ----------------------------------------------------------------------------- pure computations
def positive_control(motifs: pd.DataFrame, element: dict, tolerance: float, max_mismatches: int) -> dict:
    """Best head for a promoter element. Candidates: heads with ``|peak_offset - centre| <=
    tolerance`` and a consensus whose best-matching window has ``<= max_mismatches``
    mismatches to the element consensus (same strand). Among them sequence-driven heads
    (column ``sequence_driven``, when present) come first, then the largest peak_mass."""
    target = element["consensus"]
    mm = motifs.consensus.map(lambda s: best_match(s, target)[0])
    dist = (motifs.peak_offset - element["centre"]).abs()
    ok = (dist <= tolerance) & (mm <= max_mismatches)
    seq = motifs["sequence_driven"].astype(bool) if "sequence_driven" in motifs else pd.Series(False, motifs.index)
    out = {"expected_centre": element["centre"], "expected_consensus": target, "tolerance": tolerance,
           "max_mismatches": max_mismatches, "found": bool(ok.any()),
           "n_sequence_driven_candidates": int((ok & seq).sum())}
    pool = motifs[ok] if ok.any() else motifs.assign(_d=dist, _m=mm).sort_values(["_m", "_d"]).head(1)
    best = (pool.assign(_s=seq[pool.index]).sort_values(["_s", "peak_mass"], ascending=False).iloc[0]
            if ok.any() else pool.iloc[0])
    out.update(layer=int(best.layer), head=int(best["head"]), peak_offset=int(best.peak_offset),
               peak_mass=float(best.peak_mass), consensus=best.consensus,
               mismatches=int(best_match(best.consensus, target)[0]),
               matched_window=best.consensus[best_match(best.consensus, target)[1]:][: len(target)],
               n_candidate_heads=int(ok.sum()), sequence_driven=bool(seq[best.name]))
    return out


# ----------------------------------------------------------------------------- model driving
@torch.no_grad()
def attention_rows(model, tokens: dict, t_index: np.ndarray, strands: np.ndarray, batch_size: int = 32,
                   device="cpu", n_layers: int | None = None) -> np.ndarray:
    """Run the model on one window per TSS around its predicting query (at window index
    ``left`` of :func:`probe_extent`; the last index unless the model reads ahead) and return
    ``attn_rows[tss, layer, head, key]`` (key index within the probe window, see
    :func:`probe_window`). Windows reaching past a strand end are padded with PAD. Only the
    rows are computed (no logits, no output of the last layer); ``n_layers``: the first
    ``n_layers`` layers only (default all)."""
    cfg = model.config
    n_layers = int(cfg["n_layers"]) if n_layers is None else int(n_layers)
    Wp, _ = probe_window(cfg)
    left, _ = probe_extent(cfg)
    L = len(tokens["+"])
    out = np.zeros((len(t_index), n_layers, cfg["n_heads"], Wp), dtype=np.float32)
    prog = Progress(len(t_index), "TSS windows", every=10.0, logger=log)
    for i0 in range(0, len(t_index), batch_size):
        x = np.full((min(batch_size, len(t_index) - i0), Wp), PAD, dtype=np.int64)
        for r, (t, s) in enumerate(zip(t_index[i0 : i0 + batch_size], strands[i0 : i0 + batch_size])):
            a = t + cfg["label_offset"] - left                  # oriented index of window index 0
            lo, hi = max(a, 0), min(a + Wp, L)
            x[r, lo - a : hi - a] = tokens[s][lo:hi]
        _, attn = model(torch.as_tensor(x, device=device), return_attention=True, attention_queries=[left],
                        attention_layers=n_layers)
        out[i0 : i0 + len(x)] = attn[:, :, :, 0, :].float().cpu().numpy()
        prog.update(len(x))
    return out


def head_pfms(tokens: dict, t_index: np.ndarray, strands: np.ndarray, top: np.ndarray, flank: int) -> np.ndarray:
    """Counts ``pfm[layer, head, position, ACGT]`` of the windows ``offset - flank .. offset + flank``
    around every top-attended offset (in TSS orientation); N/out-of-genome bases not counted."""
    n_tss, n_layers, n_heads, k = top.shape
    w = 2 * flank + 1
    counts = np.zeros((n_layers, n_heads, w, 5))
    L = len(tokens["+"])
    rel = np.arange(-flank, flank + 1)
    li, hi_, _, pi = np.indices((n_layers, n_heads, k, w))
    for i in range(n_tss):
        pos = t_index[i] + top[i][..., None] + rel                         # layer, head, k, w
        ok = (pos >= 0) & (pos < L)
        codes = np.where(ok, tokens[strands[i]][np.clip(pos, 0, L - 1)], 4)
        np.add.at(counts, (li, hi_, pi, np.minimum(codes, 4)), 1.0)
    return counts[..., :4]


def selection_and_test_tss(tss: pd.DataFrame, split: dict | None, max_tss: int,
                           seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training-block TSSs, held-out TSSs) of ``tss``, each a seeded sample of at most
    ``max_tss``: a head's peak offset is chosen on the first and tested on the second. Without
    split blocks (a model saved without them) a seeded half of the TSSs plays each part."""
    tss = tss.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if split is not None:
        held = tss_subset(tss, "heldout", split, "dna.probe")
        p0 = tss.position.to_numpy() - 1
        a, b = split["train"]
        train = tss[(p0 >= a) & (p0 < b)]
    else:
        order = rng.permutation(len(tss))
        train, held = tss.iloc[order[: len(tss) // 2]], tss.iloc[order[len(tss) // 2:]]

    def sample(df):
        df = df.reset_index(drop=True)
        return df if len(df) <= max_tss else df.iloc[np.sort(rng.choice(len(df), max_tss, replace=False))]
    return sample(train).reset_index(drop=True), sample(held).reset_index(drop=True)


def _oriented(tss: pd.DataFrame, length: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.where(tss.strand == "+", tss.position - 1, length - tss.position).astype(np.int64)
    return t, tss.strand.to_numpy()


def sequence_driven_by_intervention(model, tokens: dict, tss_all: pd.DataFrame, split: dict | None,
                                    icfg: dict, omin: int, omax: int, batch_size: int, device,
                                    seed: int) -> pd.DataFrame:
    """Per head: the peak offset chosen on training-block TSSs, then the intervention test of
    :mod:`seqxai.motif_intervention` on held-out TSSs (tables' columns there, plus
    ``sequence_driven``: not query-adjacent, BH q < alpha and relative drop >= min_relative_drop)."""
    cfg = model.config
    L = len(tokens["+"])
    Wp, key_offset = probe_window(cfg)
    field = key_receptive_field(cfg).iloc[0]
    train, held = selection_and_test_tss(tss_all, split, int(icfg["max_tss"]), seed)
    keep = lambda df: df[_oriented(df, L)[0] + cfg["label_offset"] < L]  # noqa: E731
    train, held = keep(train), keep(held)
    if len(train) < 2 or len(held) < 2:
        raise DataError(f"dna.probe.intervention: {len(train)} training-block and {len(held)} held-out TSSs; "
                        "need at least 2 of each")
    t_tr, s_tr = _oriented(train, L)
    prof_tr, offsets = tss_profiles(attention_rows(model, tokens, t_tr, s_tr, batch_size, device),
                                    key_offset, omin, omax)
    peak = offsets[prof_tr.argmax(-1)]
    adjacent = query_adjacent(peak, int(cfg["label_offset"]), int(field.width), -int(field.centre))
    peak_index = np.searchsorted(key_offset, peak)
    t_h, s_h = _oriented(held, L)
    rows_h = attention_rows(model, tokens, t_h, s_h, batch_size, device)
    before = np.take_along_axis(rows_h, peak_index[None, :, :, None], -1)[..., 0]
    # the motif a head reads: per TSS its top-attended key, tested where that key lies within
    # +-peak_halfwidth of the peak (elsewhere the head is not reading its peak in this TSS; there
    # destroying the window would move mass *to* the peak, and a TSS whose attention at the peak
    # is ~0 has nothing to lose)
    top = top_offsets(rows_h, key_offset, omin, omax, 1)[..., 0]
    reads_peak = np.abs(top - peak[None]) <= int(icfg["peak_halfwidth"])
    before = np.where(reads_peak, before, np.nan)
    heads = [(int(a), int(b)) for a, b in zip(*np.nonzero(~adjacent))]
    # a head's rows need only the layers up to its own (rows_fn's ``n_layers``)
    rows_fn = lambda tok, t, s, n_layers=None: attention_rows(model, tok, t, s, batch_size, device,  # noqa: E731
                                                                n_layers)
    after = intervene(rows_fn, tokens, t_h, s_h, top, peak_index, key_offset,
                      motif_flank(cfg, 0), int(icfg["draws"]), icfg["replacement"], seed, Wp, heads)
    tab = intervention_table(before, after, peak, adjacent, float(icfg["alpha"]))
    tab["sequence_driven"] = (~tab.query_adjacent & (tab.q < float(icfg["alpha"]))
                              & (tab.relative_drop >= float(icfg["min_relative_drop"])))
    tab["n_train_tss"] = len(train)
    log.info("intervention (%s, %d draws) on %d held-out TSSs, peaks from %d training-block TSSs: "
             "%d of %d heads sequence-driven, %d query-adjacent", icfg["replacement"], int(icfg["draws"]),
             len(held), len(train), int(tab.sequence_driven.sum()), len(tab), int(tab.query_adjacent.sum()))
    return tab


def probe_tss_attention(model, genome: dict, tss: pd.DataFrame, tf_sites: pd.DataFrame, tf_motifs: dict,
                        probe_cfg: dict | None = None, elements: dict | None = None, seed: int = 1,
                        split: dict | None = None, source: str = "tss") -> dict:
    """The whole probe on in-memory inputs; returns a dict of the output tables + summary
    (keys: profiles, head_motifs, head_pfms, tf_enrichment, tomtom, summary)."""
    pcfg = {**DEFAULT_PROBE, **(probe_cfg or {})}
    el = {**DEFAULT_ELEMENTS, **(elements or {})}
    chrom, seq = single_chromosome(genome, tss, source)
    L = len(seq)
    tss_all = tss.reset_index(drop=True)
    tss = tss_subset(tss_all, pcfg["tss_set"], split, "dna.probe.tss_set")
    cfg = model.config
    t_index = np.where(tss.strand == "+", tss.position - 1, L - tss.position).astype(np.int64)
    strands = tss.strand.to_numpy()
    inside = t_index + cfg["label_offset"] < L
    tss, t_index, strands = tss[inside].reset_index(drop=True), t_index[inside], strands[inside]
    if len(tss) == 0:
        raise DataError(f"{source}: no TSS left to probe (tss_set={pcfg['tss_set']})")
    tokens = oriented_tokens(seq)
    device = next(model.parameters()).device
    rows = attention_rows(model, tokens, t_index, strands, pcfg["batch_size"], device)
    _, key_offset = probe_window(cfg)
    omin, omax = int(pcfg["offset_min"]), int(pcfg["offset_max"])
    profile, offsets = tss_profiles(rows, key_offset, omin, omax)
    peak_off, peak_mass = profile_peaks(profile, offsets, pcfg["peak_halfwidth"])
    # background: the same profile around random non-TSS positions; a sequence-driven head
    # loses its TSS peak there, a purely positional one keeps it
    n_bg = int(pcfg["n_background"])
    if n_bg:
        all_t = oriented_tss_index(tss_all, L)  # checked by single_chromosome above
        match = np.concatenate([at_share(tokens[s], t_index[strands == s]) for s in ("+", "-")])
        bg_t, bg_s = background_positions(np.concatenate([all_t["+"], all_t["-"]]),
                                          np.array(["+"] * len(all_t["+"]) + ["-"] * len(all_t["-"])), L, n_bg,
                                          int(pcfg["background_min_distance"]), int(cfg["label_offset"]), seed,
                                          tokens, match)
        bg_rows = attention_rows(model, tokens, bg_t, bg_s, pcfg["batch_size"], device)
        bg_profile, _ = tss_profiles(bg_rows, key_offset, omin, omax)
        seq_p = peak_vs_background_p(attention_at_offset(rows, key_offset, peak_off),
                                     attention_at_offset(bg_rows, key_offset, peak_off))
    else:
        bg_profile = np.full_like(profile, np.nan)
        seq_p = np.full(profile.shape[:2], np.nan)
    at_peak = np.take_along_axis(profile, (peak_off - omin)[..., None], -1)[..., 0]
    bg_at_peak = np.take_along_axis(bg_profile, (peak_off - omin)[..., None], -1)[..., 0]
    top = top_offsets(rows, key_offset, omin, omax, int(pcfg["top_k"]))
    flank = motif_flank(cfg, pcfg["motif_pad"])
    pfm = head_pfms(tokens, t_index, strands, top, flank)

    nl, nh = profile.shape[:2]
    li, hi = np.indices((nl, nh))
    icfg = {**DEFAULT_INTERVENTION, **(pcfg.get("intervention") or {})}
    background_driven = sequence_driven(at_peak, bg_at_peak, float(pcfg["sequence_driven_ratio"]), seq_p,
                                        float(pcfg["sequence_driven_alpha"]))
    if icfg["enabled"]:
        inter = sequence_driven_by_intervention(model, tokens, tss_all, split, icfg, omin, omax,
                                                int(pcfg["batch_size"]), device, seed)
        grid = lambda col: inter[col].to_numpy().reshape(nl, nh)  # noqa: E731  (layer, head order)
        driven = grid("sequence_driven").astype(bool)
        inter_cols = {"peak_offset_train": grid("peak_offset"), "query_adjacent": grid("query_adjacent"),
                      "intervention_before": grid("attention_before"),
                      "intervention_after": grid("attention_after"),
                      "intervention_relative_drop": grid("relative_drop"), "intervention_p": grid("p"),
                      "intervention_q": grid("q")}
    else:  # the background comparison decides, as before the intervention existed
        driven, inter_cols = background_driven, {}
    prof_df = pd.DataFrame({"layer": np.repeat(li.ravel(), len(offsets)), "head": np.repeat(hi.ravel(), len(offsets)),
                            "offset": np.tile(offsets, nl * nh), "attention": profile.reshape(-1),
                            "background_attention": bg_profile.reshape(-1)})
    cons = [consensus(pfm[l, h]) for l, h in zip(li.ravel(), hi.ravel())]
    motifs = pd.DataFrame({"layer": li.ravel(), "head": hi.ravel(), "peak_offset": peak_off.ravel(),
                           "peak_mass": peak_mass.ravel(), "profile_at_peak": at_peak.ravel(),
                           "background_at_peak": bg_at_peak.ravel(),
                           "sequence_driven_p": seq_p.ravel(),
                           "background_driven": background_driven.ravel(),
                           **{k: v.ravel() for k, v in inter_cols.items()},
                           "sequence_driven": driven.ravel(),
                           "n_sites": len(tss) * int(pcfg["top_k"]),
                           "information_content": [total_information(pfm[l, h]) for l, h in zip(li.ravel(), hi.ravel())],
                           "window_start_offset": -flank, "consensus": cons,
                           "pfm": [pfm[l, h].tolist() for l, h in zip(li.ravel(), hi.ravel())]})
    # TF sites: the attention mass in the site (tf_probe), the top-1 key test as secondary columns
    intervals = site_intervals(tss, tf_sites, L, omin, omax)
    log.info("TF sites: attention mass of %d heads in the sites of %d TFs around %d TSSs", nl * nh,
             len(intervals), len(tss))
    field = key_receptive_field(cfg).iloc[0]
    enrich = with_top1(tf_mass_enrichment(rows, key_offset, intervals, int(field.lo - field.centre),
                                          int(field.hi - field.centre), seed, pcfg["alpha"]),
                       tf_enrichment(top, intervals, seed, pcfg["alpha"]))
    tcfg = {**DEFAULT_TF_CONTROL, **(pcfg.get("tf_control") or {})}
    mcfg = {**DEFAULT_MOTIF_MATCH, **(pcfg.get("motif_match") or {})}
    tf_verdict = tf_control(enrich, float(tcfg["min_mass_difference"]))
    names = {f"L{l}H{h}": (l, h) for l, h in zip(li.ravel(), hi.ravel())}
    # the sigma-70 references: the -10/-35 boxes aligned over every sigma-70 promoter of the table
    reference, reference_info = sigma70_reference(seq, tss_all)
    targets = {**tf_motifs, **reference}
    log.info("Tomtom: %d head matrices against %d targets and %d column-shuffled decoys of each",
             len(names), len(targets), int(pcfg["n_decoys"]))
    tt = tomtom_with_decoys({n: pfm[l, h] for n, (l, h) in names.items()}, targets,
                            int(pcfg["n_decoys"]), seed)
    # a match is reported only for a matrix with information above the null's floor that also
    # beats the target's decoys: Tomtom's q over a handful of targets does not tell noise apart
    tt = reported_matches(tt, {n: total_information(pfm[l, h]) for n, (l, h) in names.items()},
                          float(mcfg["min_information_content"]), float(pcfg["alpha"]), mcfg["decoy_statistic"])
    tt.insert(0, "layer", tt["query"].map(lambda n: names[n][0]))
    tt.insert(1, "head", tt["query"].map(lambda n: names[n][1]))
    tt = tt.drop(columns="query")

    pc10 = positive_control(motifs, el["minus10"], el["tolerance"], el["max_mismatches"])
    pc35 = positive_control(motifs, el["minus35"], el["tolerance"], el["max_mismatches"])
    for pc in (pc10, pc35):
        l, h = pc["layer"], pc["head"]
        pc.update(profile_at_peak=float(at_peak[l, h]), background_at_peak=_num(bg_at_peak[l, h]),
                  background_max=_num(np.max(bg_profile[l, h])),
                  background_max_offset=int(offsets[np.argmax(bg_profile[l, h])]) if n_bg else None,
                  sequence_driven_p=_num(seq_p[l, h]))
    best_tt = tt[tt.reported].sort_values("p").groupby(["layer", "head"]).head(1)
    summary = {
        "chrom": chrom, "tss_set": pcfg["tss_set"], "n_tss_probed": int(len(tss)),
        "offset_range": [omin, omax], "query_offset": int(cfg["label_offset"]),
        "key_shift": -int(key_receptive_field(cfg).centre.iloc[0]), "motif_window": [-flank, flank],
        "architecture": cfg.get("architecture", "seqxai"),
        # per layer: the span of a key's own convolution and every token offset that can change it
        "key_receptive_field": key_receptive_field(cfg).astype(object).to_dict("records"),
        "positive_control": {"minus10_head_found": pc10["found"], "minus10": pc10,
                             "minus35_head_found": pc35["found"], "minus35": pc35},
        "heads_by_peak_mass": motifs.sort_values("peak_mass", ascending=False)[
            ["layer", "head", "peak_offset", "peak_mass", "consensus"]].head(8).to_dict("records"),
        "significant_tf_enrichment": enrich[enrich.significant][
            ["layer", "head", "tf", "mass_site", "mass_control", "mass_difference", "auc", "p_bh"]]
        .to_dict("records"),
        "tf_control": tf_verdict,
        # reported matches only (information_content >= floor, q and decoy test < alpha)
        "best_tomtom_match": best_tt[["layer", "head", "target", "p", "q", "decoy_p", "decoy_fdr",
                                      "information_content"]].to_dict("records"),
        "motif_match": {k: mcfg[k] for k in ("min_information_content", "decoy_statistic")},
        "tomtom_n_targets": len(targets), "tomtom_n_decoys_per_target": int(pcfg["n_decoys"]),
        "sigma70_reference": {**reference_info, **{k: consensus(v) for k, v in reference.items()}},
        "intervention": {k: icfg[k] for k in ("enabled", "max_tss", "draws", "replacement", "alpha",
                                               "min_relative_drop", "peak_halfwidth")},
        "background": {"n_positions": n_bg, "min_distance": int(pcfg["background_min_distance"]),
                       "at_matched_window": list(AT_WINDOW),
                       "sequence_driven_ratio": float(pcfg["sequence_driven_ratio"]),
                       "sequence_driven_alpha": float(pcfg["sequence_driven_alpha"])},
        "sequence_driven_heads": motifs[motifs.sequence_driven][
            ["layer", "head", "peak_offset", "profile_at_peak", "background_at_peak", "consensus"]].to_dict("records"),
        "seed": seed,
    }
    log.info("probed %d TSSs; -10 head found: %s (L%d H%d peak %d consensus %s, %d mismatches; "
             "sequence-driven: %s, TSS %.3f vs background %.3f at the peak)",
             len(tss), pc10["found"], pc10["layer"], pc10["head"], pc10["peak_offset"], pc10["consensus"],
             pc10["mismatches"], pc10["sequence_driven"], pc10["profile_at_peak"],
             np.nan if pc10["background_at_peak"] is None else pc10["background_at_peak"])
    return {"profiles": prof_df, "head_motifs": motifs, "head_pfms": {n: pfm[l, h] for n, (l, h) in names.items()},
            "tf_enrichment": enrich, "tomtom": tt, "sigma70_reference": reference, "summary": summary}


def _num(x) -> float | None:
    """JSON-safe float: NaN (no background computed) -> None."""
    return None if np.isnan(x) else float(x)


def run_probe(model_path, genome_path, tss_path, tf_sites_path, tf_motifs_path, out: dict,
              probe_cfg=None, elements=None, seed: int = 1, threads: int = 1, device: str = "auto") -> dict:
    """File-level entry point of the ``tss_attention`` rule. ``out`` maps profiles, head_motifs,
    head_motifs_meme, tf_enrichment, tomtom, summary (and optionally sigma70_reference, the
    estimated -10/-35 matrices as MEME) to output paths."""
    from .devices import pick_device
    from .dna_model import load_model
    from .io import read_fasta, read_table, write_json, write_table
    from .motifs import read_meme, write_meme

    torch.set_num_threads(max(int(threads), 1))
    model, ckpt = load_model(model_path, pick_device(device))
    genome = read_fasta(genome_path)
    tss = read_table(tss_path, "tss")
    sites = read_table(tf_sites_path, "tf_sites")
    bad = sites[sites.start > sites.end]
    if len(bad):
        raise DataError(f"{tf_sites_path}: record {bad.site_id.iloc[0]}: field 'start' > 'end'")
    res = probe_tss_attention(model, genome, tss, sites, read_meme(tf_motifs_path), probe_cfg, elements, seed,
                              ckpt.get("split"), source=str(tss_path))
    write_table(out["profiles"], res["profiles"])
    write_table(out["head_motifs"], res["head_motifs"])
    write_meme(out["head_motifs_meme"], res["head_pfms"])
    if "sigma70_reference" in out:
        write_meme(out["sigma70_reference"], res["sigma70_reference"])
    write_table(out["tf_enrichment"], res["tf_enrichment"])
    write_table(out["tomtom"], res["tomtom"])
    write_json(out["summary"], res["summary"])
    return res["summary"]
