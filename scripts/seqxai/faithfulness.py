"""Faithfulness benchmark of attribution methods on the same proteins (issue 18 point 3).

Per task, on the fine-tuned model, every method of ``attribution.methods``
(seqxai.attribution_methods), on the (accession, target) pairs that every method attributed,
in one order:

- **Residue flipping** (seqxai.residue_flipping, unchanged) on each method's embedding-level
  ``relevance[residue]`` with the same random seeds, so the random curve is the same for all
  methods. Two areas between curves per protein (AOPC scale, :data:`AREAS`):
  ``morf_minus_lerf`` = AOPC(most relevant first) - AOPC(least relevant first) (both
  directions) and ``morf_minus_random`` = AOPC(most relevant first) - AOPC(random).
  Per method: the mean area with a seeded percentile-bootstrap interval over proteins
  (:func:`mean_interval`) and the within-method tests of seqxai.residue_flipping.
- **Paired tests between methods** (:func:`method_pair_tests`): for each area and pair of
  methods, the two-sided Wilcoxon signed-rank test of the per-protein differences
  (``zero_method="wilcox"``), Benjamini-Hochberg over the pairs of one area.
- **Agreement**: Spearman's rho per protein between two methods' ``relevance[residue]``
  (:func:`spearman_per_protein`), its median and interquartile range per pair; the overlap of
  the significant-head masks of the methods' head statistics by
  seqxai.variant_comparison.compare_variants (Jaccard beside its expectation for random masks
  of the same sizes and a permutation p), methods in place of model variants.
- **Cost** (seqxai.method_cost): time and matmul FLOPs per method over one plain
  forward+backward pass, measured side by side in the same job.
"""
from __future__ import annotations

import logging
from itertools import combinations

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.faithfulness")

#: area name -> the per-protein column of seqxai.residue_flipping that holds it
AREAS = {"morf_minus_lerf": "aopc_most_minus_least", "morf_minus_random": "aopc_most_minus_random"}
PAIR_TEST_COLUMNS = ["area", "method_a", "method_b", "n_proteins", "n_nonzero", "mean_a", "mean_b",
                     "median_difference", "statistic", "p", "q"]
AGREEMENT_COLUMNS = ["method_a", "method_b", "n_proteins", "spearman_median", "spearman_q25",
                     "spearman_q75"]
METHOD_COLUMNS = ["method", "n_proteins", "rank",
                  *[f"{a}_{s}" for a in AREAS for s in ("mean", "low", "high", "median")],
                  "aopc_most_relevant", "aopc_least_relevant", "aopc_random",
                  "p_most_vs_random", "p_least_vs_random", "p_most_vs_least",
                  "time_ratio", "flop_ratio"]


def common_targets(embeddings: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The (accession, target) pairs every method attributed, in the first method's order.

    Raises ValueError when a pair's relevance differs in length between methods (the methods
    then saw other residues) or when no pair is common."""
    names = list(embeddings)
    keys = embeddings[names[0]][["accession", "target"]]
    for m in names[1:]:
        keys = keys.merge(embeddings[m][["accession", "target"]], on=["accession", "target"])
    keys = keys.drop_duplicates().reset_index(drop=True)
    if not len(keys):
        raise ValueError(f"no (accession, target) attributed by every method of {names}")
    lengths = {m: dict(zip(zip(e["accession"], e["target"]), (len(r) for r in e["relevance"])))
               for m, e in embeddings.items()}
    for a, t in keys.itertuples(index=False):
        n = {m: lengths[m][(a, t)] for m in names}
        if len(set(n.values())) > 1:
            raise ValueError(f"protein {a}, target {t}: relevance lengths differ between methods {n}")
    return keys


def relevances(embedding: pd.DataFrame, keys: pd.DataFrame) -> list[np.ndarray]:
    """``relevance[residue]`` of each (accession, target) of ``keys``, in its order."""
    by = dict(zip(zip(embedding["accession"], embedding["target"]), embedding["relevance"]))
    return [np.asarray(by[(a, t)], dtype=np.float64) for a, t in keys.itertuples(index=False)]


def flipping_by_method(predict, sequences, relevance: dict[str, list], target_index, task_type: str,
                       keys: pd.DataFrame, flipping: dict, seed: int
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """seqxai.residue_flipping for each method on the same proteins and seeds; returns the
    per-protein tables and the within-method tests, stacked, with a ``method`` column first.
    ``flipping``: n_max, n_random, replacement (all three orders always run: the areas need them)."""
    from .residue_flipping import flipping_tests, residue_flipping

    per, tests = [], []
    for m, rel in relevance.items():
        _, pp = residue_flipping(predict, sequences, rel, target_index, task_type, flipping["n_max"],
                                 flipping["n_random"], seed, flipping["replacement"], ids=keys)
        pp.insert(0, "method", m)
        t = flipping_tests(pp)
        t.insert(0, "method", m)
        per.append(pp)
        tests.append(t)
    return pd.concat(per, ignore_index=True), pd.concat(tests, ignore_index=True)


def mean_interval(values, n_bootstrap: int, rng: np.random.Generator,
                  level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite values and its percentile-bootstrap interval
    (``n_bootstrap`` resamples of the values with replacement); NaN without finite values,
    the mean itself for both ends with one value."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return np.nan, np.nan, np.nan
    means = x[rng.integers(0, len(x), size=(n_bootstrap, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def method_pair_tests(per_protein: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Two-sided paired Wilcoxon signed-rank test of each area between every pair of methods,
    over the proteins both scored (rows matched by accession and target); BH q over the pairs
    of one area. p is NaN with fewer than 2 non-zero differences (:data:`PAIR_TEST_COLUMNS`)."""
    from scipy.stats import wilcoxon

    from .significance import bh

    methods = list(dict.fromkeys(per_protein["method"]))
    rows = []
    for area, col in AREAS.items():
        wide = per_protein.pivot_table(index=["accession", "target"], columns="method", values=col,
                                       aggfunc="first", dropna=False)
        for a, b in combinations(methods, 2):
            x, y = wide[a].to_numpy(np.float64), wide[b].to_numpy(np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            d = x[ok] - y[ok]
            nz = int((d != 0).sum())
            stat, p = np.nan, np.nan
            if nz >= 2:
                res = wilcoxon(d, alternative="two-sided", zero_method="wilcox")
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append({"area": area, "method_a": a, "method_b": b, "n_proteins": int(ok.sum()),
                         "n_nonzero": nz, "mean_a": float(x[ok].mean()) if ok.any() else np.nan,
                         "mean_b": float(y[ok].mean()) if ok.any() else np.nan,
                         "median_difference": float(np.median(d)) if ok.any() else np.nan,
                         "statistic": stat, "p": p, "q": np.nan})
    out = pd.DataFrame(rows, columns=PAIR_TEST_COLUMNS)
    for area in AREAS:
        sel = (out["area"] == area).to_numpy()
        if sel.any():
            out.loc[sel, "q"] = bh(out.loc[sel, "p"].to_numpy(np.float64), alpha)[0]
    return out


def spearman_per_protein(relevance: dict[str, list], keys: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho between two methods' ``relevance[residue]`` of each protein, every pair of
    methods (columns accession, target, method_a, method_b, spearman); NaN where either
    relevance is constant or the protein has fewer than 3 residues."""
    from scipy.stats import rankdata

    rank = {m: [rankdata(r) for r in rel] for m, rel in relevance.items()}
    rows = []
    for a, b in combinations(list(relevance), 2):
        for (acc, tgt), ra, rb in zip(keys.itertuples(index=False), rank[a], rank[b]):
            rho = np.nan
            if len(ra) >= 3 and ra.std() > 0 and rb.std() > 0:
                rho = float(np.corrcoef(ra, rb)[0, 1])
            rows.append({"accession": acc, "target": tgt, "method_a": a, "method_b": b, "spearman": rho})
    return pd.DataFrame(rows, columns=["accession", "target", "method_a", "method_b", "spearman"])


def agreement_summary(per_protein_rho: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range of the per-protein Spearman rho per pair of methods."""
    rows = []
    for (a, b), sub in per_protein_rho.groupby(["method_a", "method_b"], sort=False):
        r = sub["spearman"].to_numpy(np.float64)
        r = r[np.isfinite(r)]
        q25, med, q75 = np.quantile(r, [0.25, 0.5, 0.75]) if len(r) else (np.nan,) * 3
        rows.append({"method_a": a, "method_b": b, "n_proteins": len(r), "spearman_median": float(med),
                     "spearman_q25": float(q25), "spearman_q75": float(q75)})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def head_overlap(head_statistics: dict[str, pd.DataFrame], n_permutations: int,
                 seed: int) -> pd.DataFrame:
    """Jaccard of the significant-head masks between every pair of methods with a head table
    (seqxai.variant_comparison.compare_variants; columns method_a, method_b in place of the
    variants'). Methods whose head statistics have no rows (attention_rollout) are left out."""
    from .variant_comparison import compare_variants

    tabs = {m: t for m, t in head_statistics.items() if len(t)}
    if len(tabs) < 2:
        return compare_variants({}, n_permutations, seed).rename(
            columns={"variant_a": "method_a", "variant_b": "method_b"})
    return compare_variants(tabs, n_permutations, seed).rename(
        columns={"variant_a": "method_a", "variant_b": "method_b"})


def method_table(per_protein: pd.DataFrame, tests: pd.DataFrame, cost: pd.DataFrame | None,
                 n_bootstrap: int, seed: int) -> pd.DataFrame:
    """One row per method (:data:`METHOD_COLUMNS`): each area's mean with its bootstrap
    interval and median over proteins, ``rank`` by the mean MoRF - LeRF area (1 = largest),
    the mean AOPC per order, the within-method one-sided p values and the cost ratios."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, sub in per_protein.groupby("method", sort=False):
        row = {"method": m, "n_proteins": len(sub)}
        for area, col in AREAS.items():
            mean, lo, hi = mean_interval(sub[col], n_bootstrap, rng)
            row.update({f"{area}_mean": mean, f"{area}_low": lo, f"{area}_high": hi,
                        f"{area}_median": float(np.nanmedian(sub[col])) if sub[col].notna().any() else np.nan})
        for o in ("most_relevant", "least_relevant", "random"):
            row[f"aopc_{o}"] = float(sub[f"aopc_{o}"].mean())
        p = dict(zip(tests.loc[tests["method"] == m, "comparison"], tests.loc[tests["method"] == m, "p"]))
        row.update({"p_most_vs_random": p.get("most_relevant vs random", np.nan),
                    "p_least_vs_random": p.get("least_relevant vs random", np.nan),
                    "p_most_vs_least": p.get("most_relevant vs least_relevant", np.nan)})
        c = cost[cost["method"] == m] if cost is not None else pd.DataFrame()
        row["time_ratio"] = float(c["time_ratio"].iloc[0]) if len(c) else np.nan
        row["flop_ratio"] = float(c["flop_ratio"].iloc[0]) if len(c) else np.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=METHOD_COLUMNS)
    out["rank"] = out["morf_minus_lerf_mean"].rank(ascending=False, method="min")
    return out


def pair_table(pair_tests: pd.DataFrame, agreement: pd.DataFrame, overlap: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of methods: the paired tests of both areas (p, q, median difference),
    the Spearman agreement and, over the annotation groups ``all`` of the ``significant`` mask,
    the mean Jaccard of the significant heads beside the mean of its random-mask expectation."""
    out = agreement.copy()
    for area in AREAS:
        t = pair_tests[pair_tests["area"] == area][["method_a", "method_b", "median_difference", "p", "q"]]
        out = out.merge(t.rename(columns={c: f"{area}_{c}" for c in ("median_difference", "p", "q")}),
                        on=["method_a", "method_b"], how="left")
    sig = overlap[(overlap["mask"] == "significant") & (overlap["group"] == "all")] if len(overlap) else overlap
    if len(sig):
        j = sig.groupby(["method_a", "method_b"], sort=False).agg(
            heads_jaccard=("jaccard", "mean"), heads_expected_jaccard=("expected_jaccard", "mean"),
            heads_annotations=("annotation", "nunique")).reset_index()
        out = out.merge(j, on=["method_a", "method_b"], how="left")
    else:
        out["heads_jaccard"], out["heads_expected_jaccard"], out["heads_annotations"] = np.nan, np.nan, 0
    return out


def enrichment_by_method(embedding_statistics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The methods' embedding-level Wenzel statistics (seqxai.head_statistics: median r, p,
    rank accuracy against its chance level, composition-null p per annotation and group),
    stacked with a ``method`` column first: which method finds which planted annotation."""
    keep = ["annotation", "group", "n_proteins", "median_r", "p", "significant", "rank_accuracy",
            "random_rank_accuracy", "p_composition"]
    tabs = []
    for m, t in embedding_statistics.items():
        t = t[[c for c in keep if c in t.columns]].copy()
        t.insert(0, "method", m)
        tabs.append(t)
    return pd.concat(tabs, ignore_index=True) if tabs else pd.DataFrame(columns=["method", *keep])


def run_faithfulness(model_dir, proteins_path, embedding_paths: dict, head_statistics_paths: dict,
                     embedding_statistics_paths: dict, outputs, flipping: dict, faithfulness: dict, ig: dict, alpha: float,
                     n_permutations: int, seed: int, device: str = "auto", batch_size: int = 32,
                     ig_batch_size: int = 16, threads: int = 1) -> pd.DataFrame:
    """Read one task's tables per method, flip, compare, measure the cost; write the tables
    of ``outputs`` (methods, pairs, per_protein, agreement, head_overlap, cost, enrichment).

    ``faithfulness``: cost_proteins, cost_repeats, n_bootstrap; ``ig``: n_steps, conductance,
    layers (the cost of IG and the head tables as the workflow runs them)."""
    import torch

    from .io import DataError, read_table, write_table
    from .method_cost import COST_COLUMNS, method_calls, method_cost
    from .protein_model import load_classifier
    from .residue_flipping import batched_predictor

    torch.set_num_threads(threads)
    methods = list(embedding_paths)
    embeddings = {m: read_table(p) for m, p in embedding_paths.items()}
    try:
        keys = common_targets(embeddings)
    except ValueError as e:
        raise DataError(f"{', '.join(map(str, embedding_paths.values()))}: {e}") from e
    log.info("%d (protein, target) pairs attributed by every method of %s", len(keys), methods)
    seq_of = dict(read_table(proteins_path, "proteins")[["accession", "sequence"]].itertuples(index=False))
    for a, t in keys.itertuples(index=False):
        if a not in seq_of:
            raise DataError(f"{embedding_paths[methods[0]]}: record of accession {a}, target {t}: field "
                            f"accession is not in {proteins_path}")
    model, tok, meta = load_classifier(model_dir, device=device)
    dev = next(model.parameters()).device
    labels = list(meta["labels"])
    for a, t in keys.itertuples(index=False):
        if t not in labels:
            raise DataError(f"{embedding_paths[methods[0]]}: record of accession {a}: field target {t!r} is "
                            f"not a label of the model in {model_dir}")
    rel = {m: relevances(e, keys) for m, e in embeddings.items()}
    sequences = [seq_of[a] for a in keys["accession"]]
    target_index = [labels.index(t) for t in keys["target"]]

    predict = batched_predictor(model, tok, meta["max_length"], dev, batch_size, len(labels))

    per_protein, tests = flipping_by_method(predict, sequences, rel, target_index, meta["task"]["type"],
                                            keys, flipping, seed)
    pair_tests = method_pair_tests(per_protein, alpha)
    rho = spearman_per_protein(rel, keys)
    agreement = agreement_summary(rho)
    overlap = head_overlap({m: read_table(p) for m, p in head_statistics_paths.items()}, n_permutations, seed)
    enrichment = enrichment_by_method({m: read_table(p) for m, p in embedding_statistics_paths.items()})

    n_cost = min(int(faithfulness["cost_proteins"]), len(keys))
    cost = None
    if n_cost:
        calls = [method_calls(model, tok, sequences[p], target_index[p], methods, meta["max_length"],
                              ig["n_steps"], ig_batch_size, ig["layers"], ig["conductance"])
                 for p in range(n_cost)]
        cost = method_cost(calls, int(faithfulness["cost_repeats"]))
    table = method_table(per_protein, tests, cost, int(faithfulness["n_bootstrap"]), seed)
    pairs = pair_table(pair_tests, agreement, overlap)
    for r in table.itertuples():
        log.info("%s: MoRF - LeRF area %.4f [%.4f, %.4f], MoRF - random %.4f [%.4f, %.4f] (%d proteins, "
                 "rank %.0f); cost %.2f x (FLOPs %.2f x) one forward+backward", r.method,
                 r.morf_minus_lerf_mean, r.morf_minus_lerf_low, r.morf_minus_lerf_high,
                 r.morf_minus_random_mean, r.morf_minus_random_low, r.morf_minus_random_high,
                 r.n_proteins, r.rank, r.time_ratio, r.flop_ratio)
    for r in pairs.itertuples():
        log.info("%s vs %s: Spearman median %.3f [IQR %.3f, %.3f]; MoRF - LeRF area q %.3g; heads "
                 "Jaccard %.3f (random masks %.3f)", r.method_a, r.method_b, r.spearman_median,
                 r.spearman_q25, r.spearman_q75, r.morf_minus_lerf_q, r.heads_jaccard,
                 r.heads_expected_jaccard)
    write_table(outputs.methods, table)
    write_table(outputs.pairs, pairs)
    write_table(outputs.per_protein, per_protein)
    write_table(outputs.agreement, rho)
    write_table(outputs.head_overlap, overlap)
    write_table(outputs.cost, cost if cost is not None else pd.DataFrame(columns=COST_COLUMNS))
    write_table(outputs.enrichment, enrichment)
    return table
