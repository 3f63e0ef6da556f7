"""The papers' published numbers beside a run's (summary.json ``paper_numbers``)."""
import pytest

from seqxai.paper_numbers import paper_numbers

ATT = {"best_head": {"contact": {"share": 0.25, "background": 0.015},
                     "binding_site": {"share": 0.3, "background": 0.05}}}
SUMM = {"r_blosum": 0.41, "precision": {"long P@L": 0.12, "long P@L/5": 0.3}, "long_range_background": 0.02}


def test_rows_take_the_encoders_own_published_value_and_the_runs_numbers():
    rows = {r["quantity"]: r for r in paper_numbers(ATT, SUMM, "facebook/esm2_t33_650M_UR50D")}
    p = rows["contacts from attention, long-range P@L"]
    assert p["published"] == 50.1 and p["published_for"] == "esm2_t33_650M"
    assert p["run"] == pytest.approx(12.0) and p["run_background"] == pytest.approx(2.0)
    c = rows["top contact head share"]
    assert c["published"] == [0.44, 0.63] and c["run"] == 0.25 and c["published_background"] == 0.0127
    assert rows["amino-acid attention vs BLOSUM62 (Pearson r)"]["run"] == 0.41
    bert = {r["quantity"]: r for r in paper_numbers(ATT, SUMM, "Rostlab/prot_bert_bfd")}
    assert bert["top contact head share"]["published"] == 0.632
    assert bert["contacts from attention, long-range P@L"]["published"] == 34.1
    # ESM-2 8M is not the 35M model (substring order matters: t6_8M vs t12_35M)
    small = {r["quantity"]: r for r in paper_numbers(ATT, SUMM, "facebook/esm2_t6_8M_UR50D")}
    assert small["contacts from attention, long-range P@L"]["published"] == 15.9
    assert small["contacts from attention, long-range P@L"]["run_method"] == "attention_regression"
    # with the ESM contact head scored, an ESM-2 model is compared through it (as published)
    head = {**SUMM, "precision_esm_contact_head": {"long P@L": 0.2}}
    r = {r["quantity"]: r for r in paper_numbers(ATT, head, "facebook/esm2_t6_8M_UR50D")}
    assert r["contacts from attention, long-range P@L"]["run"] == pytest.approx(20.0)
    assert r["contacts from attention, long-range P@L"]["run_method"] == "esm_contact_head"
    r = {r["quantity"]: r for r in paper_numbers(ATT, head, "Rostlab/prot_bert_bfd")}
    assert r["contacts from attention, long-range P@L"]["run"] == pytest.approx(12.0)


def test_a_run_without_a_probe_or_an_unknown_encoder_gives_ranges_and_nulls():
    rows = {r["quantity"]: r for r in paper_numbers(None, None, "results/demo/models/protein/pretrained")}
    assert all(r["run"] is None for r in rows.values())
    assert rows["contacts from attention, long-range P@L"]["published"] == [15.9, 28.8, 34.1, 42.2, 50.1]
    nan = {r["quantity"]: r for r in paper_numbers(ATT, {"r_blosum": float("nan")}, None)}
    assert nan["amino-acid attention vs BLOSUM62 (Pearson r)"]["run"] is None
