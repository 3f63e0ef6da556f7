"""TF-MoDISco wrapper: a planted motif is recovered and matched to its matrix by Tomtom; empty
results give empty tables with a reason, never a crash."""
import json

import numpy as np
import pandas as pd
import pytest

from seqxai import dna_modisco as dm
from seqxai.io import read_json, read_table, write_table
from seqxai.motifs import counts_from_sequences, write_meme

SIGMA70 = {"sigma70_minus10": counts_from_sequences(["TATAAT"] * 8 + ["TAAAAT", "TATATT"]),
           "sigma70_minus35": counts_from_sequences(["TTGACA"] * 8 + ["TTGAAA", "TTTACA"])}

MOTIF = "GCCGATTTAC"
SMALL = {"sliding_window_size": 10, "flank_size": 5, "min_metacluster_size": 20, "n_leiden_runs": 2,
         "trim_to_window_size": 15, "initial_flank_to_add": 3, "final_min_cluster_size": 20,
         "target_seqlet_fdr": 0.05}


def _planted(n=200, length=60, seed=0):
    """One-hot sequences with MOTIF planted at a random place and hypothetical contributions
    of +1 for the motif's bases there (mean-centred), small noise elsewhere."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 4, (n, length))
    start = rng.integers(5, length - 15, n)
    hyp = rng.normal(0, 0.05, (n, length, 4))
    for i in range(n):
        for j, c in enumerate(MOTIF):
            idx[i, start[i] + j] = "ACGT".index(c)
            hyp[i, start[i] + j, "ACGT".index(c)] += 1.0
    hyp -= hyp.mean(-1, keepdims=True)
    return np.eye(4, dtype=np.float32)[idx], hyp.astype(np.float32)


def _attention_tables():
    """A probe's head_motifs and tomtom tables for two heads (hand-made)."""
    motifs = pd.DataFrame({"layer": [0, 0], "head": [1, 0], "consensus": ["TATAAT", "AAAAAA"],
                           "n_sites": [10, 10]})
    tt = pd.DataFrame({"layer": [0, 0, 0, 0], "head": [0, 0, 1, 1],
                       "target": ["sigma70_minus10", "RepB", "sigma70_minus10", "RepB"],
                       "p": [0.5, 0.4, 0.001, 0.3], "e": [1.0, 0.8, 0.002, 0.6], "q": [0.5, 0.5, 0.004, 0.5],
                       "score": 0.0, "offset": [0, 1, 0, 2], "overlap": 6,
                       "orientation": ["+", "-", "+", "+"]})
    return motifs, tt


def test_trim_by_hand():
    cwm = np.zeros((8, 4))
    cwm[2, 0], cwm[3, 1], cwm[5, 2], cwm[6, 3] = 0.2, 1.0, -0.5, 0.29
    assert dm.trim(None, cwm, 0.3) == (3, 6)         # |.| >= 0.3: positions 3 and 5
    assert dm.trim(None, cwm, 0.1) == (2, 7)


def test_planted_motif_is_recovered_and_matched():
    oh, hyp = _planted()
    patterns, reason = dm.find_patterns(oh, hyp, SMALL)
    assert reason == ""
    top = patterns.sort_values("n_seqlets", ascending=False).iloc[0]
    assert top.metacluster == "pos" and top.n_seqlets >= 100
    # the trimmed pattern is the planted motif (either strand), base by base
    rc = MOTIF[::-1].translate(str.maketrans("ACGT", "TGCA"))
    assert MOTIF in top.consensus or rc in top.consensus
    targets = {"RepB": counts_from_sequences([MOTIF] * 9 + ["GCCGATTTAA"]), **SIGMA70}
    motifs, tt = _attention_tables()
    matches, mtt = dm.side_by_side(motifs, tt, patterns, targets)
    assert set(mtt["query"]) == set(patterns.pattern) and len(mtt) == len(patterns) * 3
    assert matches.source.tolist() == ["attention"] * 2 + ["modisco"] * len(patterns)
    # attention rows: the probe's best match per head, copied (layer, head order)
    att = matches[matches.source == "attention"]
    assert att.motif.tolist() == ["L0H0", "L0H1"] and att.target.tolist() == ["RepB", "sigma70_minus10"]
    assert att.q.tolist() == [0.5, 0.004] and att.significant.tolist() == [False, True]
    best = matches[matches.motif == top.pattern].iloc[0]
    assert best.target == "RepB" and best.q < 0.05 and best.significant


def test_empty_results_have_reasons():
    oh, hyp = _planted(n=20, length=30)
    p, reason = dm.find_patterns(oh, hyp, {"sliding_window_size": 21, "flank_size": 10})
    assert p.empty and "shorter than one seqlet" in reason and list(p.columns) == dm.PATTERN_COLUMNS
    p, reason = dm.find_patterns(oh, np.zeros_like(hyp), SMALL)
    assert p.empty and reason == "all contributions are zero"
    p, reason = dm.find_patterns(oh[:0], hyp[:0], SMALL)
    assert p.empty and reason == "no attributed window"
    with pytest.raises(ValueError, match="must both be"):
        dm.find_patterns(oh, hyp[..., :3], SMALL)


def test_too_few_seqlets_give_an_empty_table_not_a_crash():
    """TFMoDISco itself finds no metacluster large enough on 10 windows."""
    oh, hyp = _planted(n=10, length=60, seed=1)
    p, reason = dm.find_patterns(oh, hyp, {**SMALL, "min_metacluster_size": 50})
    assert p.empty and "no pattern" in reason


def test_run_modisco_writes_empty_outputs_with_the_reason(tmp_path):
    oh, hyp = _planted(n=5, length=25)
    seqs = ["".join("ACGT"[k] for k in row.argmax(1)) for row in oh]
    windows = pd.DataFrame({"window_id": list("abcde"), "kind": "tss", "sequence": seqs,
                            "hypothetical": list(hyp.reshape(5, -1)),
                            "converged": [True, False, True, True, True]})
    write_table(tmp_path / "w.parquet", windows)
    o2, h2 = dm.modisco_inputs(read_table(tmp_path / "w.parquet"))
    np.testing.assert_array_equal(o2, oh)
    np.testing.assert_allclose(h2, hyp)
    write_meme(tmp_path / "tf.meme", {"RepB": counts_from_sequences([MOTIF] * 4)})
    write_meme(tmp_path / "s70.meme", SIGMA70)
    motifs, tt = _attention_tables()
    write_table(tmp_path / "hm.parquet", motifs)
    write_table(tmp_path / "tt.parquet", tt)
    out = {k: tmp_path / f"{k}.out" for k in ("patterns", "meme", "tomtom", "matches", "summary")}
    summary = dm.run_modisco(tmp_path / "w.parquet", tmp_path / "tf.meme", tmp_path / "hm.parquet",
                             tmp_path / "tt.parquet", tmp_path / "s70.meme", out)
    assert summary["n_patterns"] == 0 and "shorter than one seqlet" in summary["empty_reason"]
    assert summary["n_windows"] == 4 and summary["n_windows_not_converged"] == 1
    assert read_table(out["patterns"]).empty and read_table(out["tomtom"]).empty
    m = read_table(out["matches"])
    assert m.source.tolist() == ["attention", "attention"]
    assert read_json(out["summary"])["targets_matched"] == {"attention": ["sigma70_minus10"], "modisco": []}
    assert out["meme"].read_text().startswith("MEME version 4") and "MOTIF" not in out["meme"].read_text()
    json.dumps(summary)  # plain JSON, no NaN
    # no converged window: empty, with the reason (never a fallback to unconverged attributions)
    write_table(tmp_path / "w.parquet", windows.assign(converged=False))
    summary = dm.run_modisco(tmp_path / "w.parquet", tmp_path / "tf.meme", tmp_path / "hm.parquet",
                             tmp_path / "tt.parquet", tmp_path / "s70.meme", out)
    assert summary["n_windows"] == 0 and summary["n_windows_not_converged"] == 5
    assert "none of the 5 TSS windows" in summary["empty_reason"] and read_table(out["patterns"]).empty
