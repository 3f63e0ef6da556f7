"""The papers' published numbers beside what a run gives (summary.json ``paper_numbers``).

Published values as stated in METHODS.md (Vig et al. 2021; Rao et al. 2021). A row's
``published`` is the value for the probed encoder when the paper reports that encoder (matched
on the hub id), else the paper's range over the models it reports; ``run`` comes from the run's
own tables (the pretrained encoder's Vig probe and contact regression).
"""
from __future__ import annotations

import math

#: top-head share of high-confidence attention (Vig et al., TapeBert / ProtBert-BFD)
CONTACT_SHARE = {"prot_bert_bfd": 0.632, "tape_bert": 0.447}
CONTACT_SHARE_RANGE = (0.44, 0.63)
CONTACT_BACKGROUND = 0.0127
BINDING_SHARE_RANGE = (0.45, 0.57)
BINDING_BACKGROUND = 0.048
BLOSUM_R_RANGE = (0.60, 0.74)
#: Rao et al. / ESM: long-range precision of the top L contacts (|i-j| >= 24), in %
LONG_RANGE_P_AT_L = {"esm2_t6_8M": 15.9, "esm2_t12_35M": 28.8, "esm2_t30_150M": 42.2,
                     "esm2_t33_650M": 50.1, "prot_bert_bfd": 34.1}


def _model_key(encoder: str | None, table: dict) -> str | None:
    name = (encoder or "").lower().replace("-", "_")
    return next((k for k in table if k.lower() in name), None)


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def paper_numbers(attention: dict, attention_summary: dict | None, encoder: str | None) -> list[dict]:
    """Rows ``quantity, published, published_for, run, run_background`` for the pretrained
    encoder: ``attention`` is summary.json's ``attention["pretrained"]`` (best head per property),
    ``attention_summary`` its probe's ``attention_summary.json``."""
    best = (attention or {}).get("best_head", {})
    summ = attention_summary or {}
    key = _model_key(encoder, CONTACT_SHARE)
    rows = []
    c, b = best.get("contact"), best.get("binding_site")
    rows.append({"quantity": "top contact head share", "unit": "fraction",
                 "published": CONTACT_SHARE[key] if key else list(CONTACT_SHARE_RANGE),
                 "published_for": key or "TapeBert, ProtBert-BFD",
                 "published_background": CONTACT_BACKGROUND,
                 "run": _num(c["share"]) if c else None,
                 "run_background": _num(c["background"]) if c else None})
    rows.append({"quantity": "top binding-site head share", "unit": "fraction",
                 "published": list(BINDING_SHARE_RANGE), "published_for": "TapeBert, ProtBert-BFD",
                 "published_background": BINDING_BACKGROUND,
                 "run": _num(b["share"]) if b else None,
                 "run_background": _num(b["background"]) if b else None})
    rows.append({"quantity": "amino-acid attention vs BLOSUM62 (Pearson r)", "unit": "r",
                 "published": list(BLOSUM_R_RANGE), "published_for": "TapeBert, ProtBert-BFD",
                 "published_background": None, "run": _num(summ.get("r_blosum")), "run_background": None})
    pk = _model_key(encoder, LONG_RANGE_P_AT_L)
    # ESM-2's published numbers come from its own contact head; ProtBert-BFD's from a regression
    # over its attention as in Rao et al.: compare like with like where the run has both
    esm_head = (summ.get("precision_esm_contact_head") or {}).get("long P@L")
    use_head = pk is not None and pk.startswith("esm2") and esm_head is not None
    prec = esm_head if use_head else (summ.get("precision") or {}).get("long P@L")
    rows.append({"quantity": "contacts from attention, long-range P@L", "unit": "%",
                 "run_method": "esm_contact_head" if use_head else "attention_regression",
                 "published": LONG_RANGE_P_AT_L[pk] if pk else sorted(LONG_RANGE_P_AT_L.values()),
                 "published_for": pk or "ESM-2 8M..650M, ProtBert-BFD",
                 "published_background": None,
                 "run": None if prec is None else 100.0 * float(prec),
                 "run_background": None if summ.get("long_range_background") is None
                 else 100.0 * float(summ["long_range_background"])})
    return rows
