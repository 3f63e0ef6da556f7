"""High-confidence attention counted per head and property (Vig et al.), and its shares with
Wilson and protein-bootstrap intervals, z-tests against the background and Bonferroni."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .share_denominators import resolved_name

MIN_SEPARATION = 6


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

    Two denominators are counted side by side (docs/vig_probe.md):
    - provis: every high-confidence weight of the head (``total``, ``hits``);
    - resolved: only weights between two resolved residues (``total_resolved``,
      ``hits_resolved``), the property's background over resolved residues too. ``resolved``
      comes from the contact map, where AlphaFold residues below ``data.structures.min_plddt``
      are already unresolved, so low-confidence stretches leave numerator and denominator.
    The summed counts need memory fixed by (layers, heads, properties); the per-protein counts
    behind the protein-level bootstrap grow by proteins x heads x properties (uint16 where the
    counts fit: at most n / theta high-confidence weights per head and protein).
    """

    def __init__(self, n_layers: int, n_heads: int, theta: float = 0.3,
                 min_separation: int = MIN_SEPARATION):
        self.shape = (n_layers, n_heads)
        self.theta = theta
        self.min_separation = min_separation
        self.total = np.zeros(self.shape, dtype=np.int64)
        self.total_resolved = np.zeros(self.shape, dtype=np.int64)
        self.hits: dict[str, np.ndarray] = {}
        self.hits_resolved: dict[str, np.ndarray] = {}
        self.kind: dict[str, str] = {}
        # background [hits, total] per property: provis (0, 1) and restricted to resolved (2, 3)
        self.background: dict[str, np.ndarray] = {}
        self.n_proteins = 0
        self._protein_total: list[np.ndarray] = []  # per protein: [2 (provis, resolved), layer*head]
        self._protein_hits: dict[str, list[tuple[int, np.ndarray]]] = {}

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
        if res.shape != (n,):
            raise ValueError(f"resolved has length {res.shape}, attention {n}")
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
        key_f_res = key_f * res[:, None]
        total = np.zeros(self.shape, dtype=np.int64)
        total_res = np.zeros(self.shape, dtype=np.int64)
        pair_hits = np.zeros((n_layers, n_heads, len(pair_names)), dtype=np.int64)
        key_hits = np.zeros((n_layers, n_heads, len(key_names)), dtype=np.int64)
        key_hits_res = np.zeros_like(key_hits)
        count_type = np.uint16 if n < 2**16 else np.int64  # per-key counts are at most n
        all_resolved = bool(res.all())
        for layer in range(n_layers):
            hc = (attn[layer] >= self.theta).view(np.uint8)  # [head, q, k]; a uint8 sum beats a bool one
            # high-confidence weights landing on each key, from any query and from resolved ones
            per_key = np.add.reduce(hc, axis=1, dtype=count_type).astype(np.int64)
            per_key_res = (per_key if all_resolved else
                           np.add.reduce(hc[:, res], axis=1, dtype=count_type).astype(np.int64))
            total[layer] = per_key.sum(axis=1)
            total_res[layer] = per_key_res[:, res].sum(axis=1)
            flat = hc.reshape(n_heads, n * n)
            for c, pidx in enumerate(pair_idx):
                pair_hits[layer, :, c] = flat[:, pidx].sum(axis=1)
            if key_names:
                key_hits[layer] = per_key @ key_f
                key_hits_res[layer] = per_key_res @ key_f_res
        self.total += total
        self.total_resolved += total_res
        self._protein_total.append(_compact(np.stack([total.ravel(), total_res.ravel()])))
        n_scored = int(scored.sum())
        for c, name in enumerate(pair_names):
            # contacts are hits only between resolved residues: one numerator, one background
            bg = (len(pair_idx[c]), n_scored)
            self._add(name, "pair", pair_hits[..., c], pair_hits[..., c], bg + bg)
        kn = np.ones(n, dtype=bool) if known is None else np.asarray(known, bool)
        for c, name in enumerate(key_names):
            base = kn if name in structural_keys else np.ones(n, dtype=bool)
            bg = (int(key_f[:, c].sum()), int(base.sum()), int(key_f_res[:, c].sum()), int((base & res).sum()))
            self._add(name, "key", key_hits[..., c], key_hits_res[..., c], bg)
        self.n_proteins += 1

    def _add(self, name, kind, hits, hits_res, background):
        if name not in self.hits:
            self.hits[name] = np.zeros(self.shape, dtype=np.int64)
            self.hits_resolved[name] = np.zeros(self.shape, dtype=np.int64)
            self.kind[name] = kind
            self.background[name] = np.zeros(4, dtype=np.int64)
            self._protein_hits[name] = []
        self.hits[name] += hits
        self.hits_resolved[name] += hits_res
        self.background[name] += background
        self._protein_hits[name].append((self.n_proteins, _compact(np.stack([hits.ravel(), hits_res.ravel()]))))

    def per_protein(self, name: str | None = None) -> np.ndarray:
        """count[protein, denominator (0 provis, 1 resolved), layer * head]: the high-confidence
        weights (``name`` None) or the hits of property ``name`` of every protein counted."""
        n_lh = self.shape[0] * self.shape[1]
        if name is None:
            return (np.stack(self._protein_total).astype(np.int64) if self._protein_total
                    else np.zeros((0, 2, n_lh), dtype=np.int64))
        out = np.zeros((self.n_proteins, 2, n_lh), dtype=np.int64)
        for i, counts in self._protein_hits[name]:
            out[i] = counts
        return out

    def table(self, min_high_confidence: int = 100, alpha: float = 0.05, n_bootstrap: int = 1000,
              seed: int = 0) -> pd.DataFrame:
        """One row per (property, layer, head), for each denominator (provis: ``share`` ...;
        resolved pairs only: ``share_resolved`` ...): share with its 95% Wilson interval (counts
        as if independent) and its 95% protein-level bootstrap interval (``share_ci_low``,
        ``share_ci_high``; ``n_bootstrap`` seeded draws, see :func:`bootstrap_share_interval`),
        background, one-sided z-test, Bonferroni over scored heads and over all heads."""
        from statsmodels.stats.proportion import proportion_confint

        n_layers, n_heads = self.shape
        layer, head = (a.ravel() for a in np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij"))
        weights = protein_bootstrap_weights(self.n_proteins, n_bootstrap, seed)
        per_protein_total = self.per_protein()
        frames = []
        for name in self.hits:
            cols: dict = {"property": name, "kind": self.kind[name], "layer": layer, "head": head}
            per_protein_hits = self.per_protein(name)
            for d, (tot, hits) in enumerate([(self.total, self.hits[name]),
                                             (self.total_resolved, self.hits_resolved[name])]):
                tot, hit = tot.ravel(), hits.ravel()
                bg_h, bg_n = (int(x) for x in self.background[name][2 * d: 2 * d + 2])
                bg = bg_h / bg_n if bg_n else np.nan
                included = tot >= min_high_confidence
                n_scored = int(included.sum())
                share = np.where(tot > 0, hit / np.maximum(tot, 1), np.nan)
                low, high = proportion_confint(hit, np.maximum(tot, 1), alpha=0.05, method="wilson")
                ci_low, ci_high = bootstrap_share_interval(per_protein_hits[:, d], per_protein_total[:, d],
                                                           weights)
                z = p = np.full(len(hit), np.nan)
                if 0 < bg_h < bg_n:
                    z, p = two_proportion_z(hit, tot, bg_h, bg_n)
                    z, p = np.where(included, z, np.nan), np.where(included, p, np.nan)
                col = resolved_name if d else (lambda c: c)
                cols.update({col(k): v for k, v in {
                    "n_high_confidence": tot, "hits": hit, "share": share,
                    "share_low": np.where(tot > 0, low, np.nan), "share_high": np.where(tot > 0, high, np.nan),
                    "share_ci_low": ci_low, "share_ci_high": ci_high,
                    "background": bg, "background_hits": bg_h, "background_total": bg_n,
                    "enrichment": share / bg if bg > 0 else np.nan, "included": included, "z": z, "p": p,
                    "n_tests": n_scored,
                    "p_bonferroni": np.minimum(p * n_scored, 1.0),
                    "p_bonferroni_all_heads": np.minimum(p * n_layers * n_heads, 1.0),
                    "significant": np.minimum(p * n_scored, 1.0) < alpha,
                    "significant_all_heads": np.minimum(p * n_layers * n_heads, 1.0) < alpha,
                }.items()})
            frames.append(pd.DataFrame(cols))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        df.attrs["n_proteins"] = self.n_proteins
        df.attrs["n_bootstrap"] = int(n_bootstrap)
        return df


def _compact(counts: np.ndarray) -> np.ndarray:
    """Per-protein counts in uint16 where they fit (the bootstrap keeps proteins x heads of them)."""
    return counts.astype(np.uint16) if counts.max(initial=0) < 2**16 else counts.astype(np.int64)


def protein_bootstrap_weights(n_proteins: int, n_draws: int, seed: int) -> np.ndarray:
    """weights[draw, protein]: how often each protein is drawn when n_proteins are resampled
    with replacement (multinomial counts, seeded); shape (0, n_proteins) when n_draws is 0."""
    if n_draws < 0:
        raise ValueError(f"bootstrap draws must be >= 0, got {n_draws}")
    if n_proteins == 0 or n_draws == 0:
        return np.zeros((0, n_proteins))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_proteins, np.full(n_proteins, 1 / n_proteins), size=n_draws).astype(float)


def bootstrap_share_interval(hits: np.ndarray, total: np.ndarray, weights: np.ndarray,
                             level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each head's share sum_x hits / sum_x total over resampled proteins.

    hits[protein, head], total[protein, head]; weights[draw, protein] from
    :func:`protein_bootstrap_weights`. Weights within a protein are not independent, so the
    protein is the resampled unit. Vectorised over heads: share[draw, head] =
    (weights @ hits) / (weights @ total); draws without a weight on a head are dropped for it.
    NaN where no draw (or no protein) gives the head a weight.
    """
    n_heads = np.shape(hits)[1]
    if len(weights) == 0:
        return np.full(n_heads, np.nan), np.full(n_heads, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (weights @ np.asarray(hits, float)) / (weights @ np.asarray(total, float))
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    if np.isfinite(share).all():
        low, high = np.percentile(share, q, axis=0)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN heads: NaN, as documented
            low, high = np.nanpercentile(share, q, axis=0)
    return low, high
