"""Protein tasks against the data: labels per protein, and which labels each split holds,
checked before any training.

A task (config ``protein.tasks``) is
- single_label: the class in ``column`` ("" when none; e.g. ``ec_class``, EC level 1), or,
  with ``ec_level`` k (1..4), the EC number cut to its first k fields, derived from the EC
  numbers in ``column`` (``ec``: ";"-joined, e.g. "3.4.21.68;3.4.21.-"). A protein is
  unlabelled (dropped from training and scoring, and counted by reason) when it has no EC
  number, when none of its EC numbers is complete at level k ("3.4.-.-" at level 3), or when
  its complete EC numbers disagree at level k (a single-label target must be unique);
- multi_label: GO ids in the list column ``column`` (``go_terms``), scored for ``terms``, or,
  with ``min_positives`` n, for every term (of ``terms`` when given) with at least n positive
  proteins in the training split. ``aspect`` (F, P or C) keeps the terms of one GO aspect,
  read from the list column ``go_aspects`` aligned with ``go_terms`` that every protein source
  writes (:mod:`seqxai.tables`). A table without that column (an older or hand-made one), or
  with terms of unknown aspect "" (a UniProt TSV with only the "Gene Ontology IDs" column), is
  a clear error for an aspect task naming the file and column; tasks without an aspect do not
  need it.
Pure pandas, so the check runs in the light data environment.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger("seqxai.protein_tasks")

SPLITS = ("train", "valid", "test")
ASPECT_COLUMN = "go_aspects"


def ec_at_level(ec: str | None, level: int) -> tuple[str, str]:
    """(EC number cut to ``level`` fields, "") or ("", reason the protein has no label).

    "3.4.21.68;3.4.21.-" at level 4 -> ("3.4.21.68", ""); "3.4.-.-" at level 3 ->
    ("", "EC incomplete at level 3"); "1.1.1.1;2.7.1.1" at level 1 -> ("", "EC numbers
    disagree at level 1").
    """
    if not 1 <= level <= 4:
        raise ValueError(f"ec_level must be 1..4, not {level}")
    numbers = [e.strip() for e in (ec or "").split(";") if e.strip()]
    if not numbers:
        return "", "no EC number"
    prefixes = set()
    for e in numbers:
        fields = e.split(".")
        head = fields[:level]
        if len(head) == level and all(f and f != "-" for f in head):
            prefixes.add(".".join(head))
    if not prefixes:
        return "", f"EC incomplete at level {level}"
    if len(prefixes) > 1:
        return "", f"EC numbers disagree at level {level}"
    return prefixes.pop(), ""


def single_labels(proteins: pd.DataFrame, task: dict) -> tuple[pd.Series, dict[str, int]]:
    """Class label per protein ("" when none) and the number of unlabelled proteins by reason."""
    values = proteins[task["column"]]
    level = task.get("ec_level")
    if level is None:
        labels = values.fillna("").astype(str)
        n_none = int((labels == "").sum())
        return labels, ({"no label": n_none} if n_none else {})
    cut = [ec_at_level(v if isinstance(v, str) else "", level) for v in values]
    labels = pd.Series([c[0] for c in cut], index=proteins.index, dtype=object)
    reasons = pd.Series([c[1] for c in cut])
    return labels, {str(k): int(v) for k, v in reasons[reasons != ""].value_counts().sort_index().items()}


def _as_list(v) -> list:
    return list(v) if v is not None else []


def go_terms_of(proteins: pd.DataFrame, task: dict, where: str = "proteins.parquet") -> pd.Series:
    """Per protein, the set of its GO terms in ``column``, limited to ``aspect`` when set."""
    col, aspect = task["column"], task.get("aspect")
    if aspect is None:
        return proteins[col].map(lambda v: set(v) if v is not None else set())
    if ASPECT_COLUMN not in proteins.columns:
        raise ValueError(
            f"{where}: task with aspect '{aspect}' needs per-term GO aspects in a column "
            f"'{ASPECT_COLUMN}' aligned with '{col}'; the table has none (columns: "
            f"{', '.join(map(str, proteins.columns))}). The data rules write it: rebuild the "
            "table (rerun download_uniprot or demo_proteins), or restrict aspects at download "
            "(data.uniprot.go_aspects) and drop 'aspect' from the task")
    unknown = [(row.get("accession", "?"), t) for _, row in proteins.iterrows()
               for t, a in zip(_as_list(row[col]), _as_list(row[ASPECT_COLUMN])) if not a]
    if unknown:
        acc, term = unknown[0]
        raise ValueError(
            f"{where}: task with aspect '{aspect}': {len(unknown)} GO terms of column '{col}' have "
            f"no aspect in column '{ASPECT_COLUMN}' (first: protein '{acc}', term '{term}'); the "
            "input gave GO ids without aspects (a UniProt TSV 'Gene Ontology IDs' column): use a "
            "TSV with the go_f/go_p/go_c columns, JSON or a flat file, or drop 'aspect'")

    def pick(row):
        terms, aspects = _as_list(row[col]), _as_list(row[ASPECT_COLUMN])
        if len(terms) != len(aspects):
            raise ValueError(f"{where}: protein '{row.get('accession', '?')}': {len(terms)} "
                             f"'{col}' but {len(aspects)} '{ASPECT_COLUMN}'")
        return {t for t, a in zip(terms, aspects) if a == aspect}

    return proteins.apply(pick, axis=1)


def select_terms(df: pd.DataFrame, task: dict, terms_of: pd.Series | None = None) -> list[str]:
    """The terms a multi_label task scores. ``df`` holds a ``split`` column.

    Without ``min_positives``: ``terms`` as configured. With it: the terms (of ``terms``
    when given, else of the column) with >= ``min_positives`` positive training proteins,
    sorted by id.
    """
    n_min = task.get("min_positives")
    if n_min is None:
        return list(task["terms"])
    terms_of = go_terms_of(df, task) if terms_of is None else terms_of
    counts: dict[str, int] = {}
    for terms in terms_of[(df["split"] == "train").to_numpy()]:
        for t in terms:
            counts[t] = counts.get(t, 0) + 1
    candidates = task.get("terms") or counts
    return sorted(t for t in candidates if counts.get(t, 0) >= n_min)


def label_counts(proteins: pd.DataFrame, splits: pd.DataFrame, tasks: dict,
                 where: str = "proteins.parquet") -> tuple[pd.DataFrame, list[str]]:
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
            problems.append(f"task '{name}': column '{col}' is not in {where} "
                            f"(columns: {', '.join(map(str, proteins.columns))})")
            continue
        if task["type"] == "single_label":
            values, dropped = single_labels(df, task)
            for reason, n in dropped.items():
                log.info("task '%s': %d proteins without a label (%s)", name, n, reason)
            labelled = df.assign(**{col: values})[values != ""]
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
            try:
                terms_of = go_terms_of(df, task, where)
            except ValueError as exc:
                problems.append(f"task '{name}': {exc}")
                continue
            terms = select_terms(df, task, terms_of)
            unscored = sorted(set(task.get("attribute_terms", [])) - set(terms))
            if unscored:
                problems.append(f"task '{name}': attribute_terms {unscored} are not scored (fewer "
                                f"than min_positives {task.get('min_positives')} positive proteins "
                                f"in split 'train', or not in 'terms')")
            if not terms:
                problems.append(f"task '{name}': no GO term (column '{col}') has "
                                f"{task.get('min_positives')} positive proteins in split 'train'")
            for s in SPLITS:
                in_split = (df["split"] == s).to_numpy()
                if not in_split.any():
                    problems.append(f"task '{name}': split '{s}' is empty")
                for t in terms:
                    n = int(sum(t in terms_of.iloc[i] for i in np.flatnonzero(in_split)))
                    rows.append({"task": name, "label": t, "split": s, "n_positive": n,
                                 "n_proteins": int(in_split.sum())})
                    if in_split.any() and n == 0 and task.get("min_positives") is not None:
                        # selected from the training split: a term may be rare elsewhere
                        log.warning("task '%s': GO term '%s' has no positive protein in split '%s'",
                                    name, t, s)
                    elif in_split.any() and n == 0:
                        problems.append(f"task '{name}': GO term '{t}' (column '{col}') has no "
                                        f"positive protein in split '{s}'")
    cols = ["task", "label", "split", "n_positive", "n_proteins"]
    return pd.DataFrame(rows, columns=cols), problems


def check_tasks(proteins_path, splits_path, tasks: dict) -> pd.DataFrame:
    """The label counts of ``tasks``; a DataError naming task, column, label and split when a
    task cannot be trained and tested."""
    from .io import DataError, read_table

    counts, problems = label_counts(read_table(proteins_path, "proteins"),
                                    read_table(splits_path, "splits"), tasks, str(proteins_path))
    if problems:
        raise DataError(f"{proteins_path} with {splits_path}: the configured protein tasks "
                        "cannot be trained and tested:\n  - " + "\n  - ".join(problems))
    return counts


def run_label_check(proteins_path, splits_path, tasks: dict, out_counts) -> None:
    """Fail early, naming task, column, label and split, when a task cannot be trained/tested."""
    from .io import write_table

    counts = check_tasks(proteins_path, splits_path, tasks)
    for r in counts.itertuples(index=False):
        log.info("task %s label %s split %s: %d of %d proteins", r.task, r.label, r.split,
                 r.n_positive, r.n_proteins)
    write_table(out_counts, counts)
