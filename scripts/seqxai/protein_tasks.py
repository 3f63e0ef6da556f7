"""Protein tasks against the data: which labels each split holds, checked before any training.

A task (config ``protein.tasks``) is single_label (EC level 1 in column ``ec_class``, "" when
none) or multi_label (GO ids in the list column ``go_terms``, scored for ``terms``).
Pure pandas, so the check runs in the light data environment.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.protein_tasks")

SPLITS = ("train", "valid", "test")


def label_counts(proteins: pd.DataFrame, splits: pd.DataFrame, tasks: dict) -> tuple[pd.DataFrame, list[str]]:
    """Per task, label and split: proteins with the label (positives) and proteins scored.

    Returns (counts, problems). A problem is a reason the task cannot be trained and tested:
    a missing column, fewer than two classes, a split without labelled proteins, a GO term
    without positives in some split. The message names the task, column, label and split.
    An EC class absent from the training split is only logged as a warning.
    """
    df = proteins.merge(splits[["accession", "split"]], on="accession", how="inner")
    rows, problems = [], []
    for name, task in sorted(tasks.items()):
        col = task["column"]
        if col not in proteins.columns:
            problems.append(f"task '{name}': column '{col}' is not in proteins.parquet "
                            f"(columns: {', '.join(map(str, proteins.columns))})")
            continue
        if task["type"] == "single_label":
            values = df[col].fillna("").astype(str)
            labelled = df[values != ""]
            classes = sorted(set(labelled[col]))
            if len(classes) < 2:
                problems.append(f"task '{name}': column '{col}' has {len(classes)} class(es) "
                                f"{classes}; a classifier needs at least 2")
            for s in SPLITS:
                sub = labelled[labelled["split"] == s]
                if len(sub) == 0:
                    problems.append(f"task '{name}': split '{s}' has no protein with a label in "
                                    f"column '{col}'")
                counts = sub[col].value_counts()
                for c in classes:
                    n = int(counts.get(c, 0))
                    rows.append({"task": name, "label": c, "split": s, "n_positive": n,
                                 "n_proteins": int(len(sub))})
                    if n == 0 and s == "train":
                        # rare classes (EC 7) may fall outside train in a homology split: the
                        # model then never predicts them, which the metrics show; not fatal
                        log.warning("task '%s': class '%s' of column '%s' has no protein in "
                                    "split 'train'", name, c, col)
        else:
            terms_of = df[col].map(lambda v: set(v) if v is not None else set())
            for s in SPLITS:
                in_split = (df["split"] == s).to_numpy()
                if not in_split.any():
                    problems.append(f"task '{name}': split '{s}' is empty")
                for t in task.get("terms", []):
                    n = int(sum(t in terms_of.iloc[i] for i in np.flatnonzero(in_split)))
                    rows.append({"task": name, "label": t, "split": s, "n_positive": n,
                                 "n_proteins": int(in_split.sum())})
                    if in_split.any() and n == 0:
                        problems.append(f"task '{name}': GO term '{t}' (column '{col}') has no "
                                        f"positive protein in split '{s}'")
    cols = ["task", "label", "split", "n_positive", "n_proteins"]
    return pd.DataFrame(rows, columns=cols), problems


def run_label_check(proteins_path, splits_path, tasks: dict, out_counts) -> None:
    """Fail early, naming task, column, label and split, when a task cannot be trained/tested."""
    from .io import DataError, read_table, write_table

    counts, problems = label_counts(read_table(proteins_path, "proteins"),
                                    read_table(splits_path, "splits"), tasks)
    if problems:
        raise DataError(f"{proteins_path} with {splits_path}: the configured protein tasks "
                        "cannot be trained and tested:\n  - " + "\n  - ".join(problems))
    for r in counts.itertuples(index=False):
        log.info("task %s label %s split %s: %d of %d proteins", r.task, r.label, r.split,
                 r.n_positive, r.n_proteins)
    write_table(out_counts, counts)
