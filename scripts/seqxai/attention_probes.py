"""Attention probes of Vig et al. (ICLR 2021): where does high-confidence attention go?

For a head with attention ``attn[query, key]`` (special tokens removed), the share of
high-confidence attention that aligns with a property f is

    p(f) = sum_x sum_ij f(i, j) 1[a_ij >= theta] / sum_x sum_ij 1[a_ij >= theta]

summed over proteins x (a count, not attention-weighted). Properties:
- pair properties (``contact``): f(i, j) = 1 if residues i, j are in contact, |i - j| >= 6
  and both are resolved in the structure. Pairs with |i - j| < 6 and pairs touching an
  unresolved residue stay in the denominator (their weights were given; only their
  contact status is unknown or excluded). Background: contacts / pairs with |i - j| >= 6
  and both residues resolved (provis: contact map entries 1 over entries 0 or 1, -1 marks
  short-range and unresolved pairs).
- key properties (binding site, active site, motif, transmembrane, amino acid type):
  f(i, j) = 1 if the attended residue j has the property. Background, per residue as in
  provis: residues with the property / residues, summed over proteins.
This is provis's ``compute_mean_attention`` with ``min_attn`` turned into a count (METHODS.md
section 2); with every residue resolved the two agree. Heads with fewer than
``min_high_confidence`` weights are not scored; Bonferroni runs over the scored heads
(``p_bonferroni``), and over all layers x heads (``p_bonferroni_all_heads``) for comparison.

Arrays: ``attn[layer, head, query, key]``; residue indices 0-based inside this module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

MIN_SEPARATION = 6
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
AA_PREFIX = "aa:"


@torch.no_grad()
def attention_maps(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   n_residues: int) -> np.ndarray:
    """attn[layer, head, query, key] over the residue tokens 1..n_residues of one sequence."""
    out = encoder(input_ids=input_ids[None], attention_mask=attention_mask[None],
                  output_attentions=True)
    attn = torch.stack([a[0] for a in out.attentions])  # [layer, head, token, token]
    return attn[:, :, 1 : n_residues + 1, 1 : n_residues + 1].float().cpu().numpy()


def contact_matrix(length: int, contact_i, contact_j) -> np.ndarray:
    """Symmetric boolean contact[i, j] from 1-based contact pair lists."""
    m = np.zeros((length, length), dtype=bool)
    i = np.asarray(contact_i, dtype=np.int64) - 1
    j = np.asarray(contact_j, dtype=np.int64) - 1
    ok = (i < length) & (j < length)
    m[i[ok], j[ok]] = True
    m[j[ok], i[ok]] = True
    return m


def amino_acid_masks(sequence: str) -> dict[str, np.ndarray]:
    """mask["aa:A"][residue]: the key-property masks of the 20 standard amino acids."""
    seq = np.frombuffer(sequence.upper().encode(), dtype="S1")
    return {AA_PREFIX + a: seq == a.encode() for a in AMINO_ACIDS}


def two_proportion_z(hits, n, bg_hits, bg_n):
    """One-sided pooled two-proportion z-test (share > background), vectorised.

    z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p = (x1 + x2) / (n1 + n2); as
    statsmodels' ``proportions_ztest(alternative="larger")``.
    """
    from scipy.stats import norm

    hits, n = np.asarray(hits, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        pool = (hits + bg_hits) / (n + bg_n)
        se = np.sqrt(pool * (1 - pool) * (1 / n + 1 / bg_n))
        z = (hits / n - bg_hits / bg_n) / se
    z = np.where(se > 0, z, np.nan)
    return z, norm.sf(z)


class HighConfidenceCounter:
    """Accumulates, protein by protein, high-confidence counts per head and property.

    Memory is fixed by (layers, heads, properties): nothing per protein is kept.
    """

    def __init__(self, n_layers: int, n_heads: int, theta: float = 0.3,
                 min_separation: int = MIN_SEPARATION):
        self.shape = (n_layers, n_heads)
        self.theta = theta
        self.min_separation = min_separation
        self.total = np.zeros(self.shape, dtype=np.int64)
        self.hits: dict[str, np.ndarray] = {}
        self.kind: dict[str, str] = {}
        self.bg_hits: dict[str, int] = {}
        self.bg_total: dict[str, int] = {}
        self.n_proteins = 0

    def add(self, attn: np.ndarray, pair_properties: dict[str, np.ndarray] | None = None,
            key_properties: dict[str, np.ndarray] | None = None,
            resolved: np.ndarray | None = None,
            structural_keys: dict[str, np.ndarray] | None = None,
            known: np.ndarray | None = None) -> None:
        """Count one protein.

        attn[layer, head, query, key]; pair_properties[name][query, key] (e.g. contacts;
        the separation and resolution rules are applied here); key_properties[name][key];
        resolved[residue] (None: all resolved). ``structural_keys`` are key properties known
        only where ``known[residue]`` (secondary structure needs a backbone): their background
        counts only known residues; every weight stays in the total. One layer at a
        time, vectorised over heads, queries and keys.
        """
        pair_properties, key_properties = pair_properties or {}, dict(key_properties or {})
        structural_keys = structural_keys or {}
        key_properties.update(structural_keys)
        n_layers, n_heads, n, n2 = attn.shape
        if (n_layers, n_heads) != self.shape or n != n2:
            raise ValueError(f"attention of shape {attn.shape} does not match {self.shape} x [L, L]")
        res = np.ones(n, dtype=bool) if resolved is None else np.asarray(resolved, dtype=bool)
        idx = np.arange(n)
        scored = (np.abs(idx[:, None] - idx[None, :]) >= self.min_separation) & np.outer(res, res)
        pair_names = list(pair_properties)
        pair_idx = []  # flat indices q * n + k of each pair property's scored pairs (sparse)
        for name in pair_names:
            f = np.asarray(pair_properties[name], dtype=bool)
            if f.shape != (n, n):
                raise ValueError(f"pair property {name!r} has shape {f.shape}, attention {n} x {n}")
            pair_idx.append(np.flatnonzero(f & scored))
        key_names = list(key_properties)
        key_f = np.zeros((n, len(key_names)), dtype=np.int64)
        for c, name in enumerate(key_names):
            k = np.asarray(key_properties[name], dtype=bool)
            if k.shape != (n,):
                raise ValueError(f"key property {name!r} has length {k.shape}, attention {n}")
            key_f[:, c] = k
        pair_hits = np.zeros((n_layers, n_heads, len(pair_names)), dtype=np.int64)
        key_hits = np.zeros((n_layers, n_heads, len(key_names)), dtype=np.int64)
        count_type = np.uint16 if n < 2**16 else np.int64  # per-key counts are at most n
        for layer in range(n_layers):
            hc = attn[layer] >= self.theta  # [head, q, k]
            # high-confidence weights landing on each key (a uint8 sum is faster than a bool one)
            per_key = np.add.reduce(hc.view(np.uint8), axis=1, dtype=count_type).astype(np.int64)
            self.total[layer] += per_key.sum(axis=1)
            flat = hc.reshape(n_heads, n * n)
            for c, idx in enumerate(pair_idx):
                pair_hits[layer, :, c] = flat[:, idx].sum(axis=1)
            if key_names:
                key_hits[layer] = per_key @ key_f
        for c, name in enumerate(pair_names):
            self._add(name, "pair", pair_hits[..., c], len(pair_idx[c]), int(scored.sum()))
        n_known = n if known is None else int(np.asarray(known, bool).sum())
        for c, name in enumerate(key_names):
            self._add(name, "key", key_hits[..., c], int(key_f[:, c].sum()),
                      n_known if name in structural_keys else n)
        self.n_proteins += 1

    def _add(self, name, kind, hits, bg_hits, bg_total):
        if name not in self.hits:
            self.hits[name] = np.zeros(self.shape, dtype=np.int64)
            self.kind[name] = kind
            self.bg_hits[name] = self.bg_total[name] = 0
        self.hits[name] += hits
        self.bg_hits[name] += bg_hits
        self.bg_total[name] += bg_total

    def table(self, min_high_confidence: int = 100, alpha: float = 0.05) -> pd.DataFrame:
        """One row per (property, layer, head): share with its 95% Wilson interval,
        background, one-sided z-test, Bonferroni over scored heads and over all heads."""
        from statsmodels.stats.proportion import proportion_confint

        n_layers, n_heads = self.shape
        layer, head = (a.ravel() for a in np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij"))
        tot = self.total.ravel()
        included = tot >= min_high_confidence
        n_scored = int(included.sum())
        frames = []
        for name, hits in self.hits.items():
            hit = hits.ravel()
            bg_h, bg_n = self.bg_hits[name], self.bg_total[name]
            bg = bg_h / bg_n if bg_n else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(tot > 0, hit / np.maximum(tot, 1), np.nan)
            low, high = proportion_confint(hit, np.maximum(tot, 1), alpha=0.05, method="wilson")
            z = p = np.full(len(hit), np.nan)
            if 0 < bg_h < bg_n:
                z, p = two_proportion_z(hit, tot, bg_h, bg_n)
                z, p = np.where(included, z, np.nan), np.where(included, p, np.nan)
            frames.append(pd.DataFrame({
                "property": name, "kind": self.kind[name], "layer": layer, "head": head,
                "n_high_confidence": tot, "hits": hit, "share": share,
                "share_low": np.where(tot > 0, low, np.nan), "share_high": np.where(tot > 0, high, np.nan),
                "background": bg, "background_hits": bg_h, "background_total": bg_n,
                "enrichment": share / bg if bg > 0 else np.nan, "included": included, "z": z, "p": p,
                "n_tests": n_scored,
                "p_bonferroni": np.minimum(p * n_scored, 1.0),
                "p_bonferroni_all_heads": np.minimum(p * n_layers * n_heads, 1.0),
            }))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(df):
            df["significant"] = df["p_bonferroni"] < alpha
            df["significant_all_heads"] = df["p_bonferroni_all_heads"] < alpha
        df.attrs["n_proteins"] = self.n_proteins
        return df


def layer_trend(table: pd.DataFrame) -> pd.DataFrame:
    """Per property: mean share over included heads per layer and the centre of gravity.

    centre = sum_l l * w_l / sum_l w_l with w_l the layer's mean share (layers 0-based).
    """
    out = []
    for name, sub in table[table["included"]].groupby("property"):
        w = sub.groupby("layer")["share"].mean()
        centre = float((w.index * w).sum() / w.sum()) if w.sum() > 0 else np.nan
        for l, v in w.items():
            out.append({"property": name, "layer": int(l), "mean_share": float(v),
                        "centre_of_gravity": centre})
    return pd.DataFrame(out, columns=["property", "layer", "mean_share", "centre_of_gravity"])


def blosum62_matrix(letters: str = AMINO_ACIDS) -> np.ndarray:
    """BLOSUM62[a, b] over ``letters`` (Biopython's matrix)."""
    from Bio.Align import substitution_matrices

    m = substitution_matrices.load("BLOSUM62")
    n = len(letters)  # reshape: no letters (no amino acid passed the filters) is 0 x 0, not (0,)
    return np.array([[m[a][b] for b in letters] for a in letters], dtype=float).reshape(n, n)


def amino_acid_profiles(table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """share[scored head, amino acid] from the ``aa:X`` rows of a probe table (provis layout)."""
    aa = table[table["property"].astype(str).str.startswith(AA_PREFIX) & table["included"]
               & (table["share"].notna())]
    letters = [a for a in AMINO_ACIDS if (AA_PREFIX + a) in set(aa["property"])]
    share = {p: s.set_index(["layer", "head"])["share"] for p, s in aa.groupby("property")}
    wide = pd.DataFrame({AA_PREFIX + a: share[AA_PREFIX + a] for a in letters})
    return wide.to_numpy(float).reshape(len(wide), len(letters)), letters


def blosum_correlation(share: np.ndarray, letters) -> tuple[pd.DataFrame, float, int]:
    """Pearson r across heads between the attention profiles of each amino-acid pair, and
    Pearson r of those 190 values with BLOSUM62 (Vig et al.). Returns (pairs, r, n_heads)."""
    from scipy.stats import pearsonr

    letters = "".join(letters)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (np.corrcoef(share.T) if share.shape[0] > 1 and len(letters) > 1
                else np.full((len(letters),) * 2, np.nan))
    blosum = blosum62_matrix(letters)
    i, j = np.tril_indices(len(letters), k=-1)
    pairs = pd.DataFrame({"aa1": [letters[x] for x in i], "aa2": [letters[x] for x in j],
                          "attention_corr": corr[i, j], "blosum62": blosum[i, j]})
    ok = np.isfinite(pairs["attention_corr"])
    r = float(pearsonr(pairs.loc[ok, "attention_corr"], pairs.loc[ok, "blosum62"])[0]) if ok.sum() > 2 else np.nan
    return pairs, r, int(share.shape[0])


def run_attention_probe(encoder_path, proteins_path, splits_path, contacts_path, annotations_path,
                        vig: dict, types, max_length: int, outputs: dict, seed: int = 0,
                        device: str = "auto", threads: int = 1, secondary_path=None) -> None:
    """Stream proteins with a contact map through the encoder and write the probe tables.

    Properties: ``contact`` plus every annotation type of ``types`` (key residue has it) and
    the 20 amino acids (``aa:X``, written to ``outputs["aa"]``). Along the same stream the
    Rao et al. contact regression is fitted on ``vig["contacts"]["n_train"]`` proteins
    (seeded choice, streamed first) and scored on the others. ``outputs``: probe, trend, aa,
    blosum, contacts, summary (paths). With ``secondary_path`` (accession, ss) the DSSP classes
    ``ss:H``, ``ss:E``, ``ss:-`` are key properties too, their background over residues with a
    known class.
    """
    import logging

    from .attention_contacts import (ContactRegression, contact_rate, precision_at,
                                     precision_table)
    from .head_statistics import annotation_masks
    from .io import Progress, read_table, write_json, write_table
    from .devices import pick_device
    from .protein_model import encode, load_encoder, load_tokenizer

    log = logging.getLogger("seqxai.attention_probes")
    torch.set_num_threads(threads)
    dev = pick_device(device)
    encoder = load_encoder(encoder_path).to(dev).eval()
    tok = load_tokenizer(encoder_path)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    if vig["split"] != "all":
        proteins = proteins[proteins["accession"].isin(
            splits.loc[splits["split"] == vig["split"], "accession"])]
    contacts = read_table(contacts_path, "contact_maps").set_index("accession")
    annotations = read_table(annotations_path, "residue_annotations")
    secondary = (read_table(secondary_path).set_index("accession")["ss"].to_dict()
                 if secondary_path else None)
    cfg = encoder.config
    counter = HighConfidenceCounter(cfg.num_hidden_layers, cfg.num_attention_heads, vig["theta"])
    todo = proteins[proteins["accession"].isin(contacts.index)].sort_values("accession")
    ccfg = {"n_train": 20, "C": 0.15, **vig.get("contacts", {})}
    rng = np.random.default_rng(seed)
    n_train = min(ccfg["n_train"], max(len(todo) - 1, 0))
    train = set(rng.permutation(todo["accession"].to_numpy())[:n_train].tolist())
    # training proteins first: the regression is fitted before any held-out protein arrives
    todo = todo.assign(is_train=todo["accession"].isin(train)).sort_values(
        ["is_train", "accession"], ascending=[False, True])
    regression = ContactRegression(C=ccfg["C"], seed=seed)
    prec_rows, bg = [], np.zeros(2, dtype=np.int64)
    progress = Progress(len(todo), "attention probe", logger=log)
    for r in todo.itertuples(index=False):
        cm = contacts.loc[r.accession]
        if cm["length"] != len(r.sequence):
            raise ValueError(f"{contacts_path}: contact map of {r.accession} has length "
                             f"{cm['length']}, the sequence {len(r.sequence)}")
        n = min(len(r.sequence), vig["max_residues"], max_length - 2)
        enc = encode(tok, [r.sequence[:n]], max_length)
        attn = attention_maps(encoder, enc["input_ids"][0].to(dev), enc["attention_mask"][0].to(dev), n)
        masks = annotation_masks(annotations, r.accession, n, list(types))
        masks.update(amino_acid_masks(r.sequence[:n]))
        resolved = np.frombuffer(cm["resolved"][:n].encode(), dtype=np.uint8) == ord("1")
        contact = contact_matrix(n, cm["contact_i"], cm["contact_j"])
        ss_masks, known = {}, None
        if secondary is not None:
            from .secondary_structure import secondary_structure_masks

            ss = secondary.get(r.accession)
            if ss is None:
                log.warning("%s: no secondary structure; its residues count as unknown", r.accession)
                ss = " " * n
            ss_masks, known = secondary_structure_masks(ss[:n].ljust(n))
        counter.add(attn, {"contact": contact}, masks, resolved, structural_keys=ss_masks, known=known)
        if r.is_train:
            regression.add_training(attn, contact, resolved)
        elif regression.model is not None or regression.n_training:
            if regression.model is None:
                try:
                    regression.fit()
                except ValueError as exc:  # e.g. no contact among the training pairs
                    log.warning("no contact regression: %s", exc)
                    regression = ContactRegression(C=ccfg["C"], seed=seed)
                    progress.update()
                    continue
            bg += contact_rate(contact, resolved)
            prec_rows.append({"accession": r.accession, "length": n,
                              **precision_at(regression.predict(attn), contact, resolved)})
        progress.update()
    table = counter.table(vig["min_high_confidence"])
    is_aa = table["property"].str.startswith(AA_PREFIX)
    write_table(outputs["probe"], table[~is_aa].reset_index(drop=True))
    write_table(outputs["trend"], layer_trend(table[~is_aa]))
    write_table(outputs["aa"], table[is_aa].reset_index(drop=True))
    share, letters = amino_acid_profiles(table)
    pairs, r_blosum, n_heads = blosum_correlation(share, letters)
    pairs["r_blosum"], pairs["n_heads"] = r_blosum, n_heads
    write_table(outputs["blosum"], pairs)
    prec = precision_table(prec_rows)
    write_table(outputs["contacts"], prec)
    best = table[table["included"] & ~is_aa].sort_values("share", ascending=False).groupby("property").head(1)
    for b in best.itertuples():
        log.info("best head for %s: layer %d head %d share %.3f background %.4f (%d weights)",
                 b.property, b.layer, b.head, b.share, b.background, b.n_high_confidence)
    log.info("BLOSUM62 correlation of amino-acid attention profiles: r = %.3f over %d heads",
             r_blosum, n_heads)
    summary = {"n_proteins": counter.n_proteins, "n_train": n_train,
               "regression_fitted": regression.model is not None,
               "n_heldout": len(prec_rows), "r_blosum": r_blosum, "n_heads_blosum": n_heads,
               "long_range_background": float(bg[0] / bg[1]) if bg[1] else None}
    if len(prec):
        summary["precision"] = {k: float(v) for k, v in prec.iloc[-1].items()
                                if k not in ("accession", "length")}
        log.info("contact regression on %d held-out proteins: long P@L/5 %.3f, P@L %.3f "
                 "(long-range contact rate %.4f)", len(prec_rows), summary["precision"]["long P@L/5"],
                 summary["precision"]["long P@L"], summary["long_range_background"] or float("nan"))
    # the example for the figures: the longest held-out (else any) protein, best contact head
    c = best[best["property"] == "contact"]
    held = todo[~todo["is_train"]] if (~todo["is_train"]).any() else todo
    if len(c) and len(held):
        ex = held.loc[held["sequence"].str.len().idxmax()]
        cm = contacts.loc[ex["accession"]]
        n = min(len(ex["sequence"]), vig["max_residues"], max_length - 2)
        enc = encode(tok, [ex["sequence"][:n]], max_length)
        attn = attention_maps(encoder, enc["input_ids"][0].to(dev), enc["attention_mask"][0].to(dev), n)
        layer, head = int(c["layer"].iloc[0]), int(c["head"].iloc[0])
        summary["example"] = {"accession": ex["accession"], "length": n, "layer": layer, "head": head,
                              "source": str(cm["source"]), "resolved": cm["resolved"][:n],
                              "contact_i": [int(x) for x in cm["contact_i"] if x <= n],
                              "contact_j": [int(x) for x in cm["contact_j"] if x <= n],
                              "sequence": ex["sequence"][:n],
                              "attention": np.round(attn[layer, head], 5).tolist()}
        if regression.model is not None:
            summary["example"]["regression"] = np.round(regression.predict(attn), 5).tolist()
    write_json(outputs["summary"], summary)
