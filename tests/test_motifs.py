import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

import numpy as np
import pytest

from seqxai.io import DataError
from seqxai.motifs import (
    best_match,
    consensus,
    counts_from_sequences,
    information_content,
    read_meme,
    tomtom,
    write_meme,
)
from seqxai.synth_dna import motif_frequencies


def test_counts_and_consensus_by_hand():
    c = counts_from_sequences(["ACGT", "ACGA", "TCGN", "acgt"])
    assert c.tolist() == [[3, 0, 0, 1], [0, 4, 0, 0], [0, 0, 4, 0], [1, 0, 0, 2]]
    assert consensus(c) == "ACGT"
    with pytest.raises(ValueError):
        counts_from_sequences(["ACG", "AC"])


def test_information_content():
    one_hot = np.eye(4)
    assert np.allclose(information_content(one_hot), 2.0)
    assert np.allclose(information_content(np.ones((3, 4))), 0.0)
    half = np.array([[5, 5, 0, 0]])
    assert np.allclose(information_content(half), 1.0)


def test_best_match():
    assert best_match("GGTATAATCC", "TATAAT") == (0, 2)
    assert best_match("GGTATGATCC", "TATAAT") == (1, 2)
    assert best_match("TATA", "TATAAT") == (6, -1)


def test_meme_round_trip(tmp_path):
    pfms = {"m1": np.array([[8, 1, 1, 0], [0, 0, 10, 0], [2.5, 2.5, 2.5, 2.5]]),
            "m2": motif_frequencies("TATAAT", 0.1)}
    write_meme(tmp_path / "x.meme", pfms, nsites=10)
    back = read_meme(tmp_path / "x.meme")
    assert list(back) == ["m1", "m2"]
    assert np.allclose(back["m1"], pfms["m1"] / pfms["m1"].sum(1, keepdims=True), atol=1e-6)
    assert np.allclose(back["m2"], pfms["m2"], atol=1e-6)
    with pytest.raises(DataError):
        write_meme(tmp_path / "y.meme", {"bad": np.ones((3, 5))})
    (tmp_path / "empty.meme").write_text("MEME version 4\n")
    with pytest.raises(DataError, match="empty.meme"):
        read_meme(tmp_path / "empty.meme")


def test_tomtom_matches_tataat_to_minus10_reference():
    query = counts_from_sequences(["GGTATAATGC", "CATATAATAT", "GGTATACTGG", "TTTATAATCA", "ACTAAAATGG"] * 5)
    targets = {"sigma70_minus10": motif_frequencies("TATAAT", 0.1),
               "sigma70_minus35": motif_frequencies("TTGACA", 0.1),
               "PalR": motif_frequencies("ATGTGACGTCACAT", 0.1),
               "RepB": motif_frequencies("GCCGATTTAC", 0.1)}
    res = tomtom({"q": query}, targets)
    assert set(res.columns) >= {"query", "target", "p", "e", "q", "offset", "orientation"}
    best = res.sort_values("p").iloc[0]
    assert best.target == "sigma70_minus10"
    assert best.orientation == "+"
    assert (res.e >= res.p).all()


def test_tomtom_in_chunks_gives_the_one_call_table_and_logs_progress(monkeypatch, caplog):
    """Tomtom's p of a query depends on the targets only: the chunked run (a progress line per
    chunk, with counts) returns what one memelite call over all queries returns."""
    import logging

    from memelite import tomtom as memelite_tomtom

    from seqxai import motifs

    rng = np.random.default_rng(0)
    queries = {f"q{k}": rng.dirichlet(np.ones(4), size=10) for k in range(7)}
    targets = {f"t{k}": rng.dirichlet(np.ones(4), size=int(rng.integers(6, 15))) for k in range(30)}
    monkeypatch.setattr(motifs, "TOMTOM_CHUNK", 3)
    with caplog.at_level(logging.INFO, logger="seqxai.motifs"):
        rows = motifs.tomtom(queries, targets, every=0.0)
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Tomtom query matrices")]
    assert [m.split(" (")[0] for m in done] == [f"Tomtom query matrices: {n}/7" for n in (3, 6, 7)]
    Q = [np.asfortranarray(motifs.frequencies(q, 0.01).T) for q in queries.values()]
    T = [np.ascontiguousarray(motifs.frequencies(t, 0.01).T) for t in targets.values()]
    p = np.clip(np.asarray(memelite_tomtom(Q, T, n_jobs=1)[0], float), 0, 1)
    np.testing.assert_array_equal(rows["p"].to_numpy(), p.ravel())
    assert rows["query"].tolist()[:31] == ["q0"] * 30 + ["q1"]
