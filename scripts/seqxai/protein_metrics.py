"""Metrics of the protein tasks on one split: accuracy and macro-F1 (single_label, EC);
Fmax, micro AUPR, per-term macro ROC/PR AUC and per-decision accuracy (multi_label, GO).

Shapes: ``y[protein]`` class indices (single_label) or ``y[protein, term]`` in {0, 1};
``logits``/``scores`` have the same axes, scores in [0, 1].
"""
from __future__ import annotations

import numpy as np


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), over the
    classes that occur in ``y_true`` or ``y_pred`` (sklearn's ``f1_score(average="macro")``)."""
    classes = np.union1d(y_true, y_pred)
    tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in classes])
    fp = np.array([np.sum((y_true != c) & (y_pred == c)) for c in classes])
    fn = np.array([np.sum((y_true == c) & (y_pred != c)) for c in classes])
    return float(np.mean(2 * tp / np.maximum(2 * tp + fp + fn, 1)))


FMAX_THRESHOLDS = np.round(np.arange(1, 101) / 100, 2)  # 0.01, 0.02, ..., 1.00


def fmax(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray = FMAX_THRESHOLDS) -> dict:
    """Protein-centric Fmax (CAFA; Radivojac et al. 2013) of ``scores[protein, term]`` in [0, 1].

    At threshold t, P_i(t) = {terms with score >= t}, T_i = true terms of protein i; over the
    proteins with at least one true term (the benchmark set), precision pr(t) is the mean of
    |P_i ∩ T_i| / |P_i| over the m(t) proteins with P_i non-empty, recall rc(t) the mean of
    |P_i ∩ T_i| / |T_i| over all of them; Fmax = max_t 2 pr rc / (pr + rc).
    Returns {"fmax", "threshold", "n_proteins"}; fmax None when no protein has a true term.
    """
    truth = y > 0.5
    keep = truth.any(1)
    truth, scores = truth[keep], scores[keep]
    if not len(truth):
        return {"fmax": None, "threshold": None, "n_proteins": 0}
    pred = scores[None, :, :] >= np.asarray(thresholds)[:, None, None]   # [t, protein, term]
    n_pred = pred.sum(2)
    tp = (pred & truth[None]).sum(2)
    covered = n_pred > 0
    m = covered.sum(1)
    prec = (tp / np.maximum(n_pred, 1)).sum(1) / np.maximum(m, 1)   # 0 where m(t) = 0
    rec = (tp / truth.sum(1)[None]).mean(1)
    denom = prec + rec
    f = np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1), 0.0)
    best = int(np.argmax(f))
    return {"fmax": float(f[best]), "threshold": float(thresholds[best]), "n_proteins": int(len(truth))}


def micro_aupr(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Micro-averaged area under the precision-recall curve: every (protein, term) pair is
    one binary decision, AUPR = average precision sum_k (R_k - R_{k-1}) P_k over the pooled
    pairs ranked by score. None when the pairs hold no positive or no negative."""
    from sklearn.metrics import average_precision_score

    flat = (y > 0.5).ravel()
    if flat.all() or not flat.any():
        return None
    return float(average_precision_score(flat, scores.ravel()))


def split_metrics(task_type: str, logits: np.ndarray, y: np.ndarray) -> dict:
    """Per-split metrics: single_label accuracy and macro-F1; multi_label per-term macro ROC
    and PR AUC, Fmax and micro AUPR on sigmoid scores, and per-decision accuracy."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if task_type == "single_label":
        pred = logits.argmax(1)
        return {"accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred),
                "n": int(len(y))}
    out = {"n": int(len(y))}
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    fm = fmax(y, scores)
    out["fmax"], out["fmax_threshold"], out["fmax_n_proteins"] = fm["fmax"], fm["threshold"], fm["n_proteins"]
    out["micro_aupr"] = micro_aupr(y, scores)
    aucs, aps = [], []
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < len(y):
            aucs.append(roc_auc_score(y[:, k], logits[:, k]))
            aps.append(average_precision_score(y[:, k], logits[:, k]))
    # A term needs positives and negatives for an AUC; none such -> null with the reason,
    # never NaN (metrics.json is strict JSON).
    out["macro_roc_auc"] = float(np.mean(aucs)) if aucs else None
    out["macro_pr_auc"] = float(np.mean(aps)) if aps else None
    out["n_terms_scored"] = len(aucs)
    if not aucs:
        out["auc_note"] = "no term has both positive and negative proteins in this split"
    out["accuracy"] = float(((logits > 0) == (y > 0.5)).mean())
    return out
