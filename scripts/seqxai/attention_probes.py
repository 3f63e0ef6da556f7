"""Attention probes of Vig et al. (ICLR 2021): where does high-confidence attention go?

For a head with attention ``attn[query, key]`` (special tokens removed), the share of
high-confidence attention that aligns with a property f is

    p(f) = sum_x sum_ij f(i, j) 1[a_ij >= theta] / sum_x sum_ij 1[a_ij >= theta]

summed over proteins x (a count, not attention-weighted). Properties:
- ``contact``: residues i, j in contact with |i - j| >= 6; pairs with |i - j| < 6 stay in
  the denominator. Background: share of contacts among all pairs with |i - j| >= 6.
- single-residue properties (binding site, active site, motif, transmembrane, an amino
  acid): f(i, j) = 1 if the attended residue j has the property. Background: share of
  all pairs (i, j) whose key j has it.
Residues marked unresolved in the structure are left out of every count: their contacts
are unknown. Heads with fewer than ``min_high_confidence`` weights are excluded.

Arrays: ``attn[layer, head, query, key]``; residue indices 0-based inside this module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

MIN_SEPARATION = 6


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


class HighConfidenceCounter:
    """Accumulates, protein by protein, high-confidence counts per head and property."""

    def __init__(self, n_layers: int, n_heads: int, theta: float = 0.3):
        self.shape = (n_layers, n_heads)
        self.theta = theta
        self.total = np.zeros(self.shape, dtype=np.int64)
        self.hits: dict[str, np.ndarray] = {}
        self.bg_hits: dict[str, int] = {}
        self.bg_total: dict[str, int] = {}
        self.n_proteins = 0

    def add(self, attn: np.ndarray, pair_properties: dict[str, np.ndarray],
            key_properties: dict[str, np.ndarray], resolved: np.ndarray | None = None) -> None:
        """Count one protein.

        attn[layer, head, query, key]; pair_properties[name][query, key] (contacts, with
        the separation rule applied here); key_properties[name][key]; resolved[residue].
        """
        n = attn.shape[-1]
        valid = np.ones((n, n), dtype=bool) if resolved is None else np.outer(resolved, resolved)
        hc = (attn >= self.theta) & valid  # [layer, head, q, k]
        self.total += hc.sum(axis=(-1, -2))
        sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        long_range = (sep >= MIN_SEPARATION) & valid
        for name, f in pair_properties.items():
            f = f & long_range
            self._add(name, (hc & f).sum(axis=(-1, -2)), int(f.sum()), int(long_range.sum()))
        for name, k in key_properties.items():
            f = np.broadcast_to(k[None, :], (n, n)) & valid
            self._add(name, (hc & f).sum(axis=(-1, -2)), int(f.sum()), int(valid.sum()))
        self.n_proteins += 1

    def _add(self, name, hits, bg_hits, bg_total):
        if name not in self.hits:
            self.hits[name] = np.zeros(self.shape, dtype=np.int64)
            self.bg_hits[name] = self.bg_total[name] = 0
        self.hits[name] += hits
        self.bg_hits[name] += bg_hits
        self.bg_total[name] += bg_total

    def table(self, min_high_confidence: int = 100, alpha: float = 0.05) -> pd.DataFrame:
        """One row per (property, layer, head): share, background, z-test, Bonferroni."""
        from statsmodels.stats.proportion import proportions_ztest

        rows = []
        n_heads = self.shape[0] * self.shape[1]
        for name, hits in self.hits.items():
            bg = self.bg_hits[name] / max(self.bg_total[name], 1)
            for l in range(self.shape[0]):
                for h in range(self.shape[1]):
                    tot, hit = int(self.total[l, h]), int(hits[l, h])
                    included = tot >= min_high_confidence
                    share = hit / tot if tot else np.nan
                    z = p = np.nan
                    if included and 0 < self.bg_hits[name] < self.bg_total[name]:
                        z, p = proportions_ztest([hit, self.bg_hits[name]],
                                                 [tot, self.bg_total[name]], alternative="larger")
                    rows.append({"property": name, "layer": l, "head": h, "n_high_confidence": tot,
                                 "hits": hit, "share": share, "background": bg,
                                 "enrichment": share / bg if bg > 0 else np.nan,
                                 "included": included, "z": z, "p": p})
        df = pd.DataFrame(rows)
        df["p_bonferroni"] = np.minimum(df["p"] * n_heads, 1.0)
        df["significant"] = df["p_bonferroni"] < alpha
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
    return pd.DataFrame(out)


def run_attention_probe(encoder_path, proteins_path, splits_path, contacts_path, annotations_path,
                        vig: dict, types, max_length: int, probe_path, trend_path,
                        device: str = "auto", threads: int = 1) -> None:
    """Stream proteins with a contact map through the encoder and write the probe tables.

    Properties: ``contact`` plus every annotation type of ``types`` (key residue has it).
    """
    import logging

    from .head_statistics import annotation_masks
    from .io import Progress, read_table, write_table
    from .protein_model import device_for, encode, load_encoder, load_tokenizer

    log = logging.getLogger("seqxai.attention_probes")
    torch.set_num_threads(threads)
    dev = device_for(device)
    encoder = load_encoder(encoder_path).to(dev).eval()
    tok = load_tokenizer(encoder_path)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    if vig["split"] != "all":
        proteins = proteins[proteins["accession"].isin(
            splits.loc[splits["split"] == vig["split"], "accession"])]
    contacts = read_table(contacts_path, "contact_maps").set_index("accession")
    annotations = read_table(annotations_path, "residue_annotations")
    cfg = encoder.config
    counter = HighConfidenceCounter(cfg.num_hidden_layers, cfg.num_attention_heads, vig["theta"])
    todo = proteins[proteins["accession"].isin(contacts.index)].sort_values("accession")
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
        resolved = np.frombuffer(cm["resolved"][:n].encode(), dtype=np.uint8) == ord("1")
        counter.add(attn, {"contact": contact_matrix(n, cm["contact_i"], cm["contact_j"])},
                    masks, resolved)
        progress.update()
    table = counter.table(vig["min_high_confidence"])
    write_table(probe_path, table)
    write_table(trend_path, layer_trend(table))
    best = table[table["included"]].sort_values("share", ascending=False).groupby("property").head(1)
    for b in best.itertuples():
        log.info("best head for %s: layer %d head %d share %.3f background %.4f (%d weights)",
                 b.property, b.layer, b.head, b.share, b.background, b.n_high_confidence)
