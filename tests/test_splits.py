"""Protein splits: seeded random, cluster-respecting homology split, MMseqs2 when installed."""
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from seqxai import splits
from seqxai.io import DataError, read_table, write_table
from seqxai.splits import assign_clusters, homology_split, make_splits, random_split, run_splits


def test_random_split_fractions_and_determinism():
    accs = [f"P{i:05d}" for i in range(1000)]
    a = random_split(accs, seed=7)
    assert a["split"].value_counts().to_dict() == {"train": 800, "valid": 100, "test": 100}
    assert a.equals(random_split(accs, seed=7)) and not a.equals(random_split(accs, seed=8))
    assert (a["cluster"] == a["accession"]).all() and a["accession"].tolist() == accs
    with pytest.raises(DataError, match="sum to 1"):
        random_split(accs, {"train": 0.9, "valid": 0.2, "test": 0.1})
    with pytest.raises(DataError, match="unknown split names"):
        random_split(accs, {"train": 0.8, "dev": 0.2})


def test_clusters_never_straddle_splits():
    # 30 clusters of sizes 1..30 (465 proteins)
    cl = {f"c{c}_{k}": f"c{c}_0" for c in range(1, 31) for k in range(c)}
    df = assign_clusters(cl, {"train": 0.7, "valid": 0.15, "test": 0.15}, seed=1)
    assert df.groupby("cluster")["split"].nunique().max() == 1
    share = df["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.07 and share["valid"] > 0.08 and share["test"] > 0.08
    prot = pd.DataFrame({"accession": list(cl), "sequence": ["M"] * len(cl)})
    assert homology_split(prot, fractions={"train": 0.7, "valid": 0.15, "test": 0.15}, clusters=cl, seed=1).equals(df)


def test_homology_without_mmseqs_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(splits.shutil, "which", lambda name: None)
    prot = pd.DataFrame({"accession": ["A", "B"], "sequence": ["MKV", "MKL"]})
    with pytest.raises(DataError, match="needs MMseqs2 but 'mmseqs' is not on PATH"):
        make_splits(prot, "homology", workdir=tmp_path)
    with pytest.raises(DataError, match="split.method"):
        make_splits(prot, "kmeans")


def test_run_splits_writes_schema(tmp_path):
    prot = pd.DataFrame({"accession": [f"Q{i}" for i in range(20)], "sequence": ["MKV"] * 20, "length": [3] * 20,
                         "ec": [""] * 20, "ec_class": [""] * 20, "go_terms": [[]] * 20, "organism_id": [0] * 20})
    write_table(tmp_path / "p.parquet", prot, table="proteins")
    run_splits(tmp_path / "p.parquet", {"method": "random"}, 3, tmp_path / "s.parquet")
    s = read_table(tmp_path / "s.parquet", table="splits")
    assert sorted(s.accession) == sorted(prot.accession) and set(s.split) <= {"train", "valid", "test"}


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="MMseqs2 binary not installed (bioconda mmseqs2)")
def test_mmseqs_homology_split(tmp_path):
    base = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACRAKALLD"
    other = "GSHMSLFDFFKNKGSAATATDRLKLLLQQGRGQEYLAPLIEALRQRLVEIEHQSEEQ" * 6
    prot = pd.DataFrame({"accession": ["A1", "A2", "B1"], "sequence": [base, base[:-5] + "KKKKK", other]})
    df = make_splits(prot, "homology", identity=0.9, coverage=0.8, workdir=tmp_path, seed=0)
    c = df.set_index("accession")["cluster"]
    assert c["A1"] == c["A2"] != c["B1"]


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="MMseqs2 binary not installed (bioconda mmseqs2)")
def test_mmseqs_split_keeps_real_homologues_together(tmp_path, shared_dir):
    """Real enzymes plus 95 %-identity variants of 20 of them: at 50 % identity every variant
    lands in its parent's cluster and split (no leakage), and unrelated enzymes stay apart."""
    import numpy as np

    clean = pd.read_csv(shared_dir / "data" / "protein" / "clean_split10_ec.csv", sep="\t")
    real = clean[clean["Sequence"].str.len().between(100, 400)].sample(150, random_state=0)
    rng = np.random.default_rng(0)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    rows = []
    for acc, seq in zip(real["Entry"][:20], real["Sequence"][:20]):
        s = np.array(list(seq))
        pos = rng.choice(len(s), size=len(s) // 20, replace=False)
        s[pos] = rng.choice(aa, size=len(pos))
        rows.append({"accession": f"{acc}-var", "sequence": "".join(s)})
    prot = pd.concat([real.rename(columns={"Entry": "accession", "Sequence": "sequence"})[["accession", "sequence"]],
                      pd.DataFrame(rows)], ignore_index=True)
    df = make_splits(prot, "homology", identity=0.5, coverage=0.8, workdir=tmp_path, seed=0).set_index("accession")
    assert len(df) == len(prot)
    for acc in real["Entry"][:20]:
        assert df.loc[f"{acc}-var", "cluster"] == df.loc[acc, "cluster"]
        assert df.loc[f"{acc}-var", "split"] == df.loc[acc, "split"]
    # distinct enzymes of the CLEAN table are not merged: most of them stay singletons
    assert df["cluster"].nunique() >= 0.8 * len(real)
    assert set(df["split"]) == {"train", "valid", "test"}


def test_family_split_keeps_every_demo_family_in_one_split(tmp_path):
    """The demo's split (config/demo.yaml: method family): no family crosses train / valid / test,
    so the contact regression is scored on families it and the MLM never saw."""
    from seqxai.synth_protein import write_demo_proteins

    d = tmp_path
    write_demo_proteins({"n_proteins": 200, "n_families": 20, "deletion_rate": 0.05, "insertion_rate": 0.05},
                        3, d / "p.parquet", d / "a.parquet", d / "c.parquet", d / "r.parquet")
    run_splits(d / "p.parquet", {"method": "family", "fractions": {"train": 0.7, "valid": 0.15, "test": 0.15}},
               1, d / "s.parquet")
    prot = read_table(d / "p.parquet", "proteins").merge(read_table(d / "s.parquet", "splits"), on="accession")
    assert prot["family"].nunique() == 20
    assert (prot.groupby("family")["split"].nunique() == 1).all()
    assert (prot["cluster"] == prot["family"]).all()
    share = prot["split"].value_counts(normalize=True)
    assert set(share.index) == {"train", "valid", "test"} and abs(share["train"] - 0.7) < 0.1
    # the random split, for contrast, puts members of one family on both sides
    rnd = make_splits(prot[["accession"]], "random", seed=1).merge(prot[["accession", "family"]])
    assert (rnd.groupby("family")["split"].nunique() > 1).sum() >= 15


def test_family_split_needs_the_family_column():
    with pytest.raises(DataError, match="needs the proteins table's 'family' column"):
        make_splits(pd.DataFrame({"accession": ["A", "B"]}), "family")
    with pytest.raises(DataError, match="1 proteins have no family, e.g. \\['B'\\]"):
        make_splits(pd.DataFrame({"accession": ["A", "B"], "family": ["f1", ""]}), "family")
