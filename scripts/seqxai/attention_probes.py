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

Numbers a reader can judge (docs/vig_probe.md):
- a second denominator, ``share_resolved``: numerator and denominator restricted to pairs whose
  residues are both resolved (for AlphaFold models: pLDDT >= ``data.structures.min_plddt``, which
  the contact map already folds into ``resolved``), with its own background (key properties:
  over resolved residues). ``share`` stays provis's; the columns of the resolved one put
  ``_resolved`` after the stem (``share_resolved_ci_low``, ``p_resolved_bonferroni``);
- a protein-level bootstrap 95% percentile interval of each share (``share_ci_low``,
  ``share_ci_high``): weights within a protein are not independent, so the binomial z-test and
  the Wilson interval (``share_low``, ``share_high``) are too confident; proteins are resampled.

Arrays: ``attn[layer, head, query, key]``; residue indices 0-based inside this module. The
counting, its intervals and tests are in seqxai.high_confidence_attention.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .high_confidence_attention import HighConfidenceCounter
from .share_denominators import select_denominator

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


@torch.no_grad()
def esm_contact_probabilities(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                              n_residues: int) -> np.ndarray:
    """prob[i, j] of contact from an ESM encoder's own contact head (``EsmModel.predict_contacts``:
    APC(A + A^T) of every head, special tokens removed, its trained logistic regression)."""
    prob = encoder.predict_contacts(input_ids[None], attention_mask[None])[0]
    return prob[:n_residues, :n_residues].float().cpu().numpy()


def esm_contact_head_problem(encoder, loading_info: dict | None = None) -> str | None:
    """Why the encoder's own contact head cannot be scored (None when it can)."""
    if not hasattr(encoder, "predict_contacts") or getattr(encoder, "contact_head", None) is None:
        return (f"{type(encoder).__name__} has no contact head (predict_contacts exists only on ESM "
                f"models); the rows of method esm_contact_head are absent")
    missing = [k for k in (loading_info or {}).get("missing_keys", []) if "contact_head" in k]
    if missing:
        return (f"the checkpoint holds no contact-head weights ({', '.join(sorted(missing))} were "
                f"initialised at random, not loaded); the rows of method esm_contact_head are absent")
    return None


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


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


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
    Rao et al. contact regression is fitted on ``vig["contacts"]["n_train"]`` proteins of the
    train split (seeded choice, streamed first) and scored on the test split's proteins (a
    homology split keeps clusters apart: never the same family); an ESM encoder's own contact
    head (``predict_contacts``) is scored on the same test proteins as rows of method
    ``esm_contact_head``. The probe itself counts the ``vig["split"]`` proteins. ``outputs``: probe, trend, aa,
    blosum, contacts, summary (paths). With ``secondary_path`` (accession, ss) the DSSP classes
    ``ss:H``, ``ss:E``, ``ss:-`` are key properties too, their background over residues with a
    known class. The probe table has both denominators and protein-level bootstrap intervals
    (``vig["bootstrap"]["draws"]`` draws seeded by ``seed``); ``vig["share_denominator"]``
    (provis | resolved) picks the one the layer trend, the best heads and the example use.
    """
    import logging

    from .annotation_scores import annotation_masks
    from .attention_contacts import ContactRegression, contact_rate, precision_at, precision_table
    from .devices import pick_device
    from .io import Progress, read_table, write_json, write_table
    from .protein_model import encode, load_encoder, load_tokenizer

    log = logging.getLogger("seqxai.attention_probes")
    torch.set_num_threads(threads)
    dev = pick_device(device)
    encoder, loading = load_encoder(encoder_path, loading_info=True)
    encoder = encoder.to(dev).eval()
    tok = load_tokenizer(encoder_path)
    proteins = read_table(proteins_path, "proteins")
    splits = read_table(splits_path, "splits")
    split_of = dict(zip(splits["accession"], splits["split"]))
    probe_set = set(proteins["accession"] if vig["split"] == "all"
                    else splits.loc[splits["split"] == vig["split"], "accession"])
    contacts = read_table(contacts_path, "contact_maps").set_index("accession")
    annotations = read_table(annotations_path, "residue_annotations")
    absent = [t for t in types if t not in set(annotations["type"])]
    if absent:  # e.g. PDB chains without a SIFTS mapping (data.structures.sifts.enabled: false)
        log.warning("%s has no residue of type %s: the probe has no rows for them (not 0%% shares)",
                    annotations_path, ", ".join(absent))
        types = [t for t in types if t not in absent]
    secondary = (read_table(secondary_path).set_index("accession")["ss"].to_dict()
                 if secondary_path else None)
    cfg = encoder.config
    counter = HighConfidenceCounter(cfg.num_hidden_layers, cfg.num_attention_heads, vig["theta"])
    with_map = proteins[proteins["accession"].isin(contacts.index)].sort_values("accession")
    ccfg = {"n_train": 20, "C": 0.15, **vig.get("contacts", {})}
    rng = np.random.default_rng(seed)
    # contacts from attention: fitted on train-split proteins, scored on test-split proteins
    pool = with_map.loc[with_map["accession"].map(split_of) == "train", "accession"].to_numpy()
    test = set(with_map.loc[with_map["accession"].map(split_of) == "test", "accession"])
    n_train = min(ccfg["n_train"], len(pool)) if test else 0
    train = set(rng.permutation(pool)[:n_train].tolist())
    if not train or not test:
        log.warning("no contact regression: %d train-split and %d test-split proteins have a contact "
                    "map (both are needed; the regression never trains and tests on one split)",
                    len(pool), len(test))
    head_problem = esm_contact_head_problem(encoder, loading)
    if head_problem:
        log.info("no ESM contact-head rows in %s: %s", outputs["contacts"], head_problem)
    todo = with_map[with_map["accession"].isin(probe_set | train | test)]
    # training proteins first: the regression is fitted before any test protein arrives
    todo = todo.assign(is_train=todo["accession"].isin(train), is_test=todo["accession"].isin(test),
                       in_probe=todo["accession"].isin(probe_set)).sort_values(
        ["is_train", "accession"], ascending=[False, True])
    regression = ContactRegression(C=ccfg["C"], seed=seed)
    prec_rows, bg, n_heldout = [], np.zeros(2, dtype=np.int64), 0
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
        if r.in_probe:
            counter.add(attn, {"contact": contact}, masks, resolved, structural_keys=ss_masks, known=known)
        if r.is_train:
            regression.add_training(attn, contact, resolved)
        elif r.is_test:
            if regression.model is None and regression.n_training:
                try:
                    regression.fit()
                except ValueError as exc:  # e.g. no contact among the training pairs
                    log.warning("no contact regression: %s", exc)
                    regression = ContactRegression(C=ccfg["C"], seed=seed)
            row = {"accession": r.accession, "length": n, "split": "test"}
            if regression.model is not None:
                n_heldout += 1
                prec_rows.append({**row, "method": "attention_regression", "n_train": n_train,
                                  **precision_at(regression.predict(attn), contact, resolved)})
            if head_problem is None:
                prob = esm_contact_probabilities(encoder, enc["input_ids"][0].to(dev),
                                                 enc["attention_mask"][0].to(dev), n)
                prec_rows.append({**row, "method": "esm_contact_head", "n_train": 0,
                                  **precision_at(prob, contact, resolved)})
            if regression.model is not None or head_problem is None:
                bg += contact_rate(contact, resolved)
        progress.update()
    n_bootstrap = vig.get("bootstrap", {}).get("draws", 1000)
    table = counter.table(vig["min_high_confidence"], n_bootstrap=n_bootstrap, seed=seed)
    is_aa = table["property"].str.startswith(AA_PREFIX)
    write_table(outputs["probe"], table[~is_aa].reset_index(drop=True))
    # both denominators stay in the table; the configured one feeds the trend and the example
    denominator = vig.get("share_denominator", "provis")
    chosen = select_denominator(table, denominator)
    write_table(outputs["trend"], layer_trend(chosen[~is_aa]))
    write_table(outputs["aa"], table[is_aa].reset_index(drop=True))
    share, letters = amino_acid_profiles(table)
    pairs, r_blosum, n_heads = blosum_correlation(share, letters)
    pairs["r_blosum"], pairs["n_heads"] = r_blosum, n_heads
    write_table(outputs["blosum"], pairs)
    prec = precision_table(prec_rows)
    write_table(outputs["contacts"], prec)
    best = chosen[chosen["included"] & ~is_aa].sort_values("share", ascending=False).groupby("property").head(1)
    best_heads = {}
    for b in table.loc[best.index].itertuples():
        log.info("best head for %s (%s denominator): layer %d head %d; share %.3f (bootstrap 95%% "
                 "%.3f-%.3f, %d weights) against %.4f; resolved pairs only %.3f (%.3f-%.3f, %d weights) "
                 "against %.4f", b.property, denominator, b.layer, b.head, b.share, b.share_ci_low,
                 b.share_ci_high, b.n_high_confidence, b.background, b.share_resolved,
                 b.share_resolved_ci_low, b.share_resolved_ci_high, b.n_high_confidence_resolved,
                 b.background_resolved)
        best_heads[b.property] = {
            "layer": int(b.layer), "head": int(b.head),
            **{k: _finite(getattr(b, k)) for k in (
                "share", "share_ci_low", "share_ci_high", "background", "z", "p",
                "share_resolved", "share_resolved_ci_low", "share_resolved_ci_high",
                "background_resolved", "z_resolved", "p_resolved")},
            "n_high_confidence": int(b.n_high_confidence),
            "n_high_confidence_resolved": int(b.n_high_confidence_resolved)}
    log.info("BLOSUM62 correlation of amino-acid attention profiles: r = %.3f over %d heads",
             r_blosum, n_heads)
    summary = {"n_proteins": counter.n_proteins, "n_train": n_train, "share_denominator": denominator,
               "n_bootstrap": int(n_bootstrap), "best_heads": best_heads,
               "regression_fitted": regression.model is not None, "regression_split": "train -> test",
               "n_heldout": n_heldout, "r_blosum": r_blosum, "n_heads_blosum": n_heads,
               "esm_contact_head": head_problem or "scored on the test split",
               "long_range_background": float(bg[0] / bg[1]) if bg[1] else None}
    for method, key in (("attention_regression", "precision"), ("esm_contact_head", "precision_esm_contact_head")):
        mean = prec[(prec["accession"] == "mean") & (prec["method"] == method)] if len(prec) else prec
        if len(mean):
            summary[key] = {k: float(v) for k, v in mean.iloc[0].items()
                            if k not in ("accession", "length", "split", "method", "n_train")}
            log.info("%s on %d test-split proteins: long P@L/5 %.3f, P@L %.3f (long-range contact rate "
                     "%.4f)", method, int((prec["method"] == method).sum() - 1), summary[key]["long P@L/5"],
                     summary[key]["long P@L"], summary["long_range_background"] or float("nan"))
    # the example for the figures: the longest test (else probe) protein, best contact head
    c = best[best["property"] == "contact"]
    held = todo[todo["is_test"]] if todo["is_test"].any() else todo[todo["in_probe"]]
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
