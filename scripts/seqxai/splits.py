"""Train / validation / test splits of the proteins (the ``splits`` table).

- :func:`random_split`: a seeded random assignment (the demo's fallback); ``cluster`` is the
  accession itself.
- :func:`family_split`: whole families (the proteins table's optional ``family`` column, which
  the demo generator writes) are dealt to splits, so no family crosses train / test: the demo's
  held-out contacts then sit in families no model or contact regression has seen.
- :func:`homology_split`: MMseqs2 ``easy-cluster`` at ``identity`` (and ``coverage``), then whole
  clusters are assigned to splits, so no test protein has a training protein above the
  threshold. Needs the ``mmseqs`` binary (bioconda ``mmseqs2``, installed by the rule's env);
  a clear error when it is configured but absent.

Cluster assignment: clusters are shuffled with the seed and dealt greedily to the split that is
furthest below its target share of proteins, so the realised fractions track the targets even
with a few large clusters. Same inputs and seed -> same splits.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from .io import DataError

log = logging.getLogger("seqxai")

DEFAULT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
SPLIT_NAMES = ("train", "valid", "test")


def _check_fractions(fractions: dict) -> dict:
    fr = {k: float(fractions.get(k, 0.0)) for k in SPLIT_NAMES}
    extra = set(fractions) - set(SPLIT_NAMES)
    if extra:
        raise DataError(f"split fractions: unknown split names {sorted(extra)} (use train, valid, test)")
    if any(v < 0 for v in fr.values()) or not np.isclose(sum(fr.values()), 1.0):
        raise DataError(f"split fractions must be >= 0 and sum to 1, got {fr}")
    return fr


def assign_clusters(cluster_of: dict[str, str], fractions: dict, seed: int) -> pd.DataFrame:
    """Deal whole clusters to splits; returns the splits table (accession order kept)."""
    fr = _check_fractions(fractions)
    members: dict[str, list[str]] = {}
    for acc, rep in cluster_of.items():
        members.setdefault(rep, []).append(acc)
    reps = sorted(members)
    rng = np.random.default_rng(seed)
    rng.shuffle(reps)
    total = len(cluster_of)
    count = {k: 0 for k in SPLIT_NAMES}
    split_of_rep = {}
    for rep in reps:
        # the split with the largest deficit w.r.t. its target (ties: train, valid, test)
        deficit = {k: fr[k] * total - count[k] for k in SPLIT_NAMES if fr[k] > 0}
        best = max(deficit, key=lambda k: (deficit[k], -SPLIT_NAMES.index(k)))
        split_of_rep[rep] = best
        count[best] += len(members[rep])
    rows = [{"accession": a, "split": split_of_rep[r], "cluster": r} for a, r in cluster_of.items()]
    log.info("splits: %s proteins in %d clusters", count, len(members))
    return pd.DataFrame(rows, columns=["accession", "split", "cluster"])


def random_split(accessions, fractions: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """Seeded random split; every protein is its own cluster."""
    accessions = list(accessions)
    if len(set(accessions)) != len(accessions):
        raise DataError("random_split: duplicate accessions")
    return assign_clusters({a: a for a in accessions}, fractions or DEFAULT_FRACTIONS, seed)


def family_split(proteins: pd.DataFrame, fractions: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """Seeded split of whole families; ``cluster`` is the family."""
    if "family" not in proteins.columns:
        raise DataError("split.method 'family' needs the proteins table's 'family' column (the demo "
                        "generator writes it; real data: use split.method homology)")
    fam = proteins["family"]
    if fam.isna().any() or (fam.astype(str) == "").any():
        bad = proteins.loc[fam.isna() | (fam.astype(str) == ""), "accession"].tolist()
        raise DataError(f"split.method 'family': {len(bad)} proteins have no family, e.g. {bad[:3]}")
    return assign_clusters(dict(zip(proteins["accession"], fam.astype(str))), fractions or DEFAULT_FRACTIONS,
                           seed)


def mmseqs_binary(name: str = "mmseqs") -> str | None:
    return shutil.which(name)


def mmseqs_clusters(
    sequences: dict[str, str],
    workdir: str | Path,
    identity: float = 0.3,
    coverage: float = 0.8,
    threads: int = 1,
    binary: str = "mmseqs",
) -> dict[str, str]:
    """{accession: cluster representative} from ``mmseqs easy-cluster``."""
    exe = mmseqs_binary(binary)
    if exe is None:
        raise DataError(
            f"homology split needs MMseqs2 but '{binary}' is not on PATH; install bioconda::mmseqs2 "
            "(the rule's conda env does) or set split.method: random"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fasta = workdir / "proteins.fasta"
    fasta.write_text("".join(f">{a}\n{s}\n" for a, s in sequences.items()))
    prefix, tmp = workdir / "clu", workdir / "tmp"
    cmd = [
        exe, "easy-cluster", str(fasta), str(prefix), str(tmp),
        "--min-seq-id", str(identity), "-c", str(coverage), "--cov-mode", "0",
        "--threads", str(threads), "-v", "1",
    ]
    log.info("running %s", " ".join(cmd))
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if res.returncode != 0:
        raise DataError(f"mmseqs easy-cluster failed ({res.returncode}): {res.stderr[-1000:]}")
    table = pd.read_csv(f"{prefix}_cluster.tsv", sep="\t", header=None, names=["rep", "member"], dtype=str)
    cluster_of = dict(zip(table["member"], table["rep"]))
    missing = [a for a in sequences if a not in cluster_of]
    if missing:
        raise DataError(f"mmseqs output lacks {len(missing)} proteins, e.g. {missing[:3]}")
    return {a: cluster_of[a] for a in sequences}


def homology_split(
    proteins: pd.DataFrame,
    identity: float = 0.3,
    coverage: float = 0.8,
    fractions: dict | None = None,
    seed: int = 0,
    workdir: str | Path = "mmseqs_split",
    threads: int = 1,
    clusters: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Cluster at ``identity`` with MMseqs2 (or use given ``clusters``) and split by cluster."""
    if clusters is None:
        seqs = dict(zip(proteins["accession"], proteins["sequence"]))
        clusters = mmseqs_clusters(seqs, workdir, identity, coverage, threads)
    return assign_clusters(clusters, fractions or DEFAULT_FRACTIONS, seed)


def make_splits(
    proteins: pd.DataFrame,
    method: str = "random",
    identity: float = 0.3,
    coverage: float = 0.8,
    fractions: dict | None = None,
    seed: int = 0,
    workdir: str | Path = "mmseqs_split",
    threads: int = 1,
) -> pd.DataFrame:
    """The splits table for ``proteins`` by ``method`` ("random", "family" or "homology")."""
    if method == "random":
        return random_split(proteins["accession"], fractions, seed)
    if method == "family":
        return family_split(proteins, fractions, seed)
    if method == "homology":
        return homology_split(proteins, identity, coverage, fractions, seed, workdir, threads)
    raise DataError(f"split.method must be 'random', 'family' or 'homology', not '{method}'")


def run_splits(proteins_path, split_cfg: dict | None, seed: int, out_splits, workdir=None, threads: int = 1) -> None:
    """Rule entry point: proteins.parquet + the ``split`` config -> splits.parquet."""
    from .io import read_table, write_table

    cfg = dict(split_cfg or {})
    proteins = read_table(proteins_path, table="proteins")
    if proteins.empty:
        raise DataError(f"{proteins_path}: the protein table is empty (0 proteins), nothing to split; "
                        f"check the data.uniprot query or local files and their filters "
                        f"(the data report lists what was dropped and why)")
    df = make_splits(
        proteins,
        method=cfg.get("method", "random"),
        identity=float(cfg.get("identity", 0.3)),
        coverage=float(cfg.get("coverage", 0.8)),
        fractions=cfg.get("fractions"),
        seed=int(seed),
        workdir=workdir or Path(out_splits).parent / "mmseqs_split",
        threads=threads,
    )
    write_table(out_splits, df, table="splits")
