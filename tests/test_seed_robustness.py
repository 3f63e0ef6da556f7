"""The DNA study's per-seed table: rows from the probe's outputs, fractions over seeds."""
import json

import numpy as np
import pandas as pd
import pytest

from seqxai.io import DataError, read_table, write_table
from seqxai.seed_robustness import run_seed_robustness, seed_fractions, seed_row


def _outputs(found10, driven10, found35=False, roc=0.9):
    metrics = {"splits": {"test": {"roc_auc": roc, "pr_auc": roc / 10}}}
    summary = {"tf_control": {"pass": found35, "share_heads_associated": 0.25 if found35 else 0.0},
               "positive_control": {
        "minus10": {"found": found10, "layer": 0, "head": 1, "peak_offset": -10, "consensus": "TATAAT"},
        "minus35": {"found": found35, "layer": 1, "head": 0, "peak_offset": -33, "consensus": "TTGACA"}}}
    motifs = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
                           "sequence_driven": [True, driven10, False, False],
                           "intervention_relative_drop": [0.9, 0.8 if driven10 else 0.1, 0.05, np.nan],
                           "intervention_q": [0.001, 0.002 if driven10 else 0.6, 0.9, np.nan]})
    tomtom = pd.DataFrame({"layer": [0, 0, 1], "head": [1, 1, 0],
                           "target": ["sigma70_minus10", "sigma70_minus35", "sigma70_minus35"],
                           "q": [1e-4, 0.5, 0.03], "decoy_fdr": [0.0, 0.7, 0.2]})
    return metrics, summary, motifs, tomtom


def test_row_reads_the_control_heads_own_statistics():
    row = seed_row(3, *_outputs(True, True, roc=0.95))
    assert row["seed"] == 3 and row["test_roc_auc"] == 0.95
    assert row["minus10_head"] == "L0H1" and row["minus10_found"] and row["minus10_sequence_driven"]
    assert row["minus10_relative_drop"] == 0.8 and row["minus10_tomtom_q"] == 1e-4  # head L0H1, not L0H0
    assert row["minus35_head"] == "L1H0" and row["minus35_tomtom_q"] == 0.03 and row["minus35_decoy_fdr"] == 0.2
    assert not row["minus35_found"] and not row["minus35_sequence_driven"]


def test_fractions_count_found_and_driven_separately():
    rows = [seed_row(1, *_outputs(True, True)), seed_row(2, *_outputs(True, False)),
            seed_row(3, *_outputs(False, True, found35=True)), seed_row(4, *_outputs(True, False, roc=0.7))]
    frac = seed_fractions(pd.DataFrame(rows))
    assert frac["n_seeds"] == 4
    assert frac["minus10"]["found"] == 0.75
    # seed 3's head is sequence-driven but not at the -10 box: it does not count
    assert frac["minus10"]["found_and_sequence_driven"] == 0.25 and frac["minus10"]["seeds_sequence_driven"] == [1]
    assert frac["minus35"]["found"] == 0.25 and frac["minus35"]["found_and_sequence_driven"] == 0.0
    assert frac["test_roc_auc"]["min"] == 0.7 and frac["test_roc_auc"]["max"] == 0.9
    assert frac["tf_control"]["pass"] == 0.25 and frac["tf_control"]["seeds_pass"] == [3]
    rows[0].pop("tf_control_pass"), rows[0].pop("tf_share_heads_associated")  # a probe without it
    frac = seed_fractions(pd.DataFrame(rows))
    assert frac["tf_control"]["n_seeds"] == 3 and frac["tf_control"]["seeds_pass"] == [3]


def test_files_in_table_out_and_bad_input_named(tmp_path):
    runs = []
    for seed, driven in ((1, True), (11, False)):
        metrics, summary, motifs, tomtom = _outputs(True, driven)
        d = tmp_path / str(seed)
        d.mkdir()
        (d / "m.json").write_text(json.dumps(metrics))
        (d / "s.json").write_text(json.dumps(summary))
        write_table(d / "h.parquet", motifs)
        write_table(d / "t.parquet", tomtom)
        runs.append({"seed": seed, "metrics": d / "m.json", "summary": d / "s.json",
                     "head_motifs": d / "h.parquet", "tomtom": d / "t.parquet"})
    res = run_seed_robustness(runs, tmp_path / "table.parquet", tmp_path / "frac.json")
    table = read_table(tmp_path / "table.parquet")
    assert table.seed.tolist() == [1, 11] and table.minus10_sequence_driven.tolist() == [True, False]
    assert json.loads((tmp_path / "frac.json").read_text())["minus10"]["found_and_sequence_driven"] == 0.5
    assert res["n_seeds"] == 2
    with pytest.raises(DataError, match="listed twice"):
        run_seed_robustness(runs + runs[:1], tmp_path / "x.parquet", tmp_path / "x.json")
    (tmp_path / "11" / "s.json").write_text(json.dumps({"positive_control": {}}))
    with pytest.raises(DataError, match=r"11.*positive_control\.minus10"):
        run_seed_robustness(runs, tmp_path / "y.parquet", tmp_path / "y.json")
    assert not (tmp_path / "y.parquet").exists()
